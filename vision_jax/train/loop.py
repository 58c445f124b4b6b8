"""The one train loop every experiment uses.

``train_and_evaluate(cfg, workdir, task, train_data, eval_data)``:

- builds the mesh (``cfg.mesh.model``; ``data`` takes the rest, or ``cfg.mesh.data`` > 0 of them,
  single-process, e.g. 1 device for a smoke run), the optimizer (``cfg.optim``, or
  one section per update of a multi-update task: :func:`~vision_jax.train.make_task_optimizers`)
  and the state, born sharded;
- resumes from the latest readable checkpoint in ``workdir/checkpoints`` (data position included:
  batch ``t`` is ``train_data[t]``, a pure function of the seed and ``t``, so resuming at step ``t``
  replays exactly the batches an uninterrupted run would have seen — bitwise-identical params);
- runs the jitted step with a background prefetch thread, a progress bar (steps, examples/s, ETA;
  plain lines every 10 % when stderr is not a terminal),
  ``metrics.jsonl`` + TensorBoard, eval every ``eval_every`` steps, async checkpoints every
  ``checkpoint_every`` steps (keep ``keep_checkpoints``);
- stops with :class:`NonFiniteError` naming the step, the update and the metric if a loss or
  gradient is not finite (the whole step is reverted, and no checkpoint is written after it);
- logs a multi-update task's metrics per update (``d/loss``, ``g/lr``); an update that did not
  run at a step (cadence) logs nothing for that step;
- on SIGTERM/SIGINT (:mod:`vision_jax.train.preemption`, installed on entry) stops at the next
  safe point and returns ``{"preempted": True, "step": s}`` without writing ``summary.json``: a
  request seen before the first step returns at once (the state is the restored checkpoint, or
  a fresh init: nothing to save); one seen after step ``s`` (or after the last step, before the
  final save and eval) saves the checkpoint of step ``s`` and waits for it;
- after the final save and eval, adds ``task.finalize(state)`` (end-of-run metrics) to the
  summary;
- writes ``config.json``, ``versions.json``, ``summary.json`` and ``curves.png`` in ``workdir``
  (``summary.json`` only for a finished run: the sweep harness reads it as "done");
- before any work (:func:`vision_jax.train.workdir.guard_run`): validates the config, locks
  ``workdir`` against a second run, and on resume refuses a changed config (unless
  ``allow_config_change``) before ``config.json`` is rewritten.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import jax
import ml_collections
import numpy as np

from vision_jax.train import mesh as mesh_lib
from vision_jax.train import preemption
from vision_jax.train.checkpoint import Checkpointer, abstract_with_shardings
from vision_jax.train.step import (
  Task,
  batch_shardings,
  cached_steps,
  create_train_state,
  make_task_optimizers,
  split_update_metrics,
)
from vision_jax.train.workdir import guard_run
from vision_jax.train.writers import MetricWriter, plot_curves
from vision_jax.utils.progress import progress_bar
from vision_jax.utils.runinfo import package_versions, save_json


class NonFiniteError(FloatingPointError):
  """Raised when a train step produced a non-finite loss or gradient."""


def setup_runtime(
  *,
  distributed: bool = False,
  compilation_cache: str | None = None,
  host_allocator: str = "default",
) -> None:
  """Process-level JAX setup: ``jax.distributed.initialize()`` (multi-host, behind a flag), the
  persistent compilation cache, and the host allocator policy (``"tuned"``:
  ``vision_jax.utils.host_memory.keep_freed_host_memory``; ``"default"``: leave glibc alone)."""
  if host_allocator not in ("tuned", "default"):
    raise ValueError(f"host_allocator={host_allocator!r}; expected 'tuned' or 'default'.")
  if host_allocator == "tuned":
    from vision_jax.utils.host_memory import keep_freed_host_memory

    keep_freed_host_memory()
  if distributed:
    jax.distributed.initialize()
  if compilation_cache:
    os.makedirs(compilation_cache, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", compilation_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


class _Prefetcher:
  """Produces ``data[t]`` for ``t = start, start+1, ...`` in a background thread."""

  def __init__(self, data, start: int, stop: int, buffer: int = 2):
    self._q: queue.Queue = queue.Queue(maxsize=max(buffer, 1))
    self._stop = threading.Event()

    def work():
      try:
        for t in range(start, stop):
          if self._stop.is_set():
            return
          item = data[t]
          while not self._stop.is_set():
            try:
              self._q.put((t, item, None), timeout=0.1)
              break
            except queue.Full:
              continue
      except BaseException as e:  # surfaced in the main thread
        self._q.put((None, None, e))

    self._thread = threading.Thread(target=work, daemon=True)
    self._thread.start()

  def get(self):
    t, item, err = self._q.get()
    if err is not None:
      raise err
    return t, item

  def close(self):
    self._stop.set()


def _to_host(x):
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))


def _jsonable(x, name: str):
  """``task.finalize`` output -> JSON-able Python (arrays become nested lists)."""
  if isinstance(x, dict):
    return {str(k): _jsonable(v, f"{name}[{k!r}]") for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v, f"{name}[{i}]") for i, v in enumerate(x)]
  if isinstance(x, jax.Array):
    return (np.asarray(jax.device_get(x)) if x.is_fully_addressable else _to_host(x)).tolist()
  if isinstance(x, (np.ndarray, np.generic)):
    return np.asarray(x).tolist()
  if x is None or isinstance(x, (bool, int, float, str)):
    return x
  raise TypeError(
    f"task.finalize returned {name} of type {type(x).__name__}; expected arrays, numbers, "
    "strings, or dicts/lists of them"
  )


def _last_train_row(workdir: str, step: int) -> dict[str, float] | None:
  """The train metrics logged at ``step`` in ``metrics.jsonl`` (a run resumed at its end)."""
  from vision_jax.train.writers import read_metrics

  rows = [r for r in read_metrics(os.path.join(workdir, "metrics.jsonl")) if r["step"] == step]
  rows = [r for r in rows if r.get("split") == "train"]
  if not rows:
    return None
  return {k: v for k, v in rows[-1].items() if k not in ("step", "split")}


def _postfix(host: dict[str, float]) -> str:
  """``loss=… lr=…`` for the progress bar (every update's loss for a multi-update task)."""
  keys = [k for k in host if k == "loss" or k.endswith("/loss")]
  keys += [k for k in host if k == "lr" or k.endswith("/lr")][:1]
  return ", ".join(f"{k}={host[k]:.4g}" for k in keys)


def evaluate(eval_step, state, eval_data: Iterable, mesh, summarize) -> dict[str, float]:
  """Runs ``eval_step`` over padded batches, drops padding via ``mask`` and summarizes on host."""
  chunks: dict[str, list[np.ndarray]] = {}
  for local in eval_data:
    batch = mesh_lib.to_global_batch(local, mesh)
    out = eval_step(state, batch)
    out = dict(out, mask=batch["mask"])
    for k, v in out.items():
      chunks.setdefault(k, []).append(_to_host(v))
  if not chunks:
    raise ValueError("eval_data yielded no batches")
  outputs = {k: np.concatenate(v) for k, v in chunks.items()}
  mask = outputs.pop("mask").astype(bool)
  outputs = {k: v[mask] for k, v in outputs.items()}
  return summarize(outputs) if summarize is not None else {}


@guard_run
def train_and_evaluate(
  cfg: ml_collections.ConfigDict,
  workdir: str,
  task: Task,
  train_data,
  eval_data: Callable[[], Iterable] | None = None,
  *,
  mesh=None,
  global_batch_size: int | None = None,
  progress: bool = True,
  return_state: bool = False,
  allow_config_change: bool | None = None,
):
  """Trains ``task`` for ``cfg.train.num_steps`` steps; see the module docstring.

  Args:
    cfg: config with ``seed``, ``train`` (num_steps, log_every, eval_every, checkpoint_every,
      keep_checkpoints, prefetch) and ``optim`` (see :func:`make_optimizer`); optional
      ``mesh.model`` and ``mesh.data`` (-1: all devices not used by ``model``).
    workdir: output directory (created); re-running with the same workdir resumes.
    task: the method (:class:`Task`).
    train_data: random access ``train_data[t]`` -> this process's numpy batch for step ``t``.
    eval_data: ``eval_data()`` -> iterable of padded numpy batches with a boolean ``mask``.
    mesh: optional mesh (default ``make_mesh(data=cfg.mesh.data, model=cfg.mesh.model)``).
    global_batch_size: for the examples/s readout (default: inferred from the first batch).
    progress: show a tqdm bar (process 0 only).
    return_state: also return the final :class:`TrainState`.
    allow_config_change: resume even though config keys outside
      :data:`vision_jax.train.workdir.SAFE_TO_CHANGE` differ from ``workdir/config.json``
      (``None``: the launcher's ``--allow_config_change``, default false). Consumed by
      :func:`~vision_jax.train.workdir.guard_run`, like the validation and the workdir lock.

  Returns:
    The summary dict (also written to ``workdir/summary.json``), or ``(summary, state)`` with
    ``return_state=True``.

  Raises:
    vision_jax.utils.config.ConfigError: an invalid config value, or a changed config on resume.
    vision_jax.train.workdir.WorkdirLockedError: another run holds ``workdir``.
    vision_jax.train.checkpoint.CheckpointMismatchError: the checkpoints hold a state of
      another structure (model or optimiser changed).
    NonFiniteError: a non-finite loss or gradient.
  """
  preemption.install_handlers()
  tcfg = cfg.train
  num_steps = int(tcfg.num_steps)
  is_main = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)  # config.json / versions.json: written by guard_run

  if mesh is None:
    mcfg = cfg.mesh if "mesh" in cfg else {}
    model_axis, data_axis = int(mcfg.get("model", 1)), int(mcfg.get("data", -1))
    devices = None
    if data_axis > 0:  # a mesh on the first data * model devices (e.g. 1 for a smoke run)
      if jax.process_count() > 1:
        raise ValueError(
          f"config.mesh.data={data_axis}: a partial mesh is single-process only; use -1 (all "
          f"devices) with {jax.process_count()} processes"
        )
      devices = jax.devices()[: data_axis * model_axis]
    mesh = mesh_lib.make_mesh(data=data_axis, model=model_axis, devices=devices)
  tx, schedule = make_task_optimizers(task, cfg, num_steps)
  rng = jax.random.PRNGKey(int(cfg.seed))

  first_local = train_data[0]
  batch_sh = batch_shardings(task, first_local, mesh)
  example = mesh_lib.to_global_batch(first_local, mesh, batch_sh)
  if global_batch_size is None:
    global_batch_size = int(jax.tree.leaves(example)[0].shape[0])

  state, shardings = create_train_state(task, tx, rng, example, mesh)
  ckpt = Checkpointer(
    os.path.join(workdir, "checkpoints"), keep=int(tcfg.get("keep_checkpoints", 3))
  )
  abstract = abstract_with_shardings(jax.eval_shape(lambda s: s, state), shardings)
  restored = ckpt.restore_latest(abstract)
  if restored is not None:
    state, _, _ = restored
    if is_main:
      print(f"Resumed from {ckpt.directory} at step {int(state.step)}")
  start = int(state.step)

  train_step, eval_step = cached_steps(
    task, tx, schedule, cfg, num_steps, mesh, shardings, batch_sh
  )
  writer = MetricWriter(workdir, resume_step=start, enabled=is_main)
  log_every = int(tcfg.get("log_every", 50))
  eval_every = int(tcfg.get("eval_every", 0))
  ckpt_every = int(tcfg.get("checkpoint_every", 0))
  meta = {"config": cfg.to_dict(), "versions": package_versions()}

  def do_eval(step):
    if eval_step is None or eval_data is None:
      return {}
    t0 = time.perf_counter()
    res = evaluate(eval_step, state, eval_data(), mesh, task.summarize)
    res = {k: float(v) for k, v in res.items()}
    writer.write(step, dict(res, eval_seconds=time.perf_counter() - t0), split="eval")
    return res

  bar = progress_bar(num_steps, initial=start, unit="step", disable=not (progress and is_main))
  summary: dict[str, Any] = {"preempted": False}
  last_eval: dict[str, float] = {}
  pending = None  # (step, metrics) of the previous step, read one step late to keep dispatch async
  t_last, n_last = time.perf_counter(), 0
  shown = {"loss": "", "rate": ""}  # the progress line's postfix
  prefetch = _Prefetcher(train_data, start, num_steps, buffer=int(tcfg.get("prefetch", 2)))

  def check(step, metrics):
    host = {k: float(v) for k, v in jax.device_get(metrics).items()}
    if host.get("nonfinite", 0.0) > 0:
      if task.multi_update:
        failed = [u for u in task.updates if host.get(f"{u.name}/nonfinite", 0.0) > 0]
        where = [(f"{u.name}/", f" in update {u.name!r} (optimiser cfg.{u.optim})") for u in failed]
      else:
        where = [("", "")]
      parts = []
      for prefix, name in where:
        vals = {k: host.get(prefix + k) for k in ("loss", "grad_norm")}
        bad = [prefix + k for k, v in vals.items() if v is not None and not np.isfinite(v)]
        parts.append(
          f"non-finite {' and '.join(bad) or 'value'}{name} at step {step} "
          f"({prefix}loss={vals['loss']}, {prefix}grad_norm={vals['grad_norm']})"
        )
      raise NonFiniteError(
        "; ".join(parts) + f"; the step was not applied and the last good checkpoint in "
        f"{ckpt.directory} is intact. Lower the learning rate, enable grad_clip, or check the data."
      )
    return split_update_metrics(host, task)

  def flush():
    """Checks the pending step's metrics and writes its row when due; ``None`` if none pends.

    Called before any checkpoint, eval or stop, so a checkpoint at step ``s`` is never on disk
    without the train row of step ``s`` (a kill right after it would otherwise lose the row:
    the resumed run starts after ``s``).
    """
    nonlocal pending
    if pending is None:
      return None
    prev_step, prev_metrics = pending
    pending = None
    host = check(prev_step, prev_metrics)
    last = prev_step + 1
    if last % log_every == 0 or prev_step == start or last == num_steps:
      writer.write(last, host)
      shown["loss"] = _postfix(host)
      bar.set_postfix_str(", ".join(v for v in shown.values() if v), refresh=False)
    return host

  def preempt(step, *, save):
    if save:
      ckpt.save(step, state, meta)
      ckpt.wait()
      bar.write(f"Signal received: checkpoint saved at step {step} in {ckpt.directory}; exiting.")
    else:
      bar.write(f"Signal received before the first step (state of step {step}); nothing to save.")
    preemption.clear()
    summary.update(preempted=True, step=step)
    return (summary, state) if return_state else summary

  try:
    if preemption.requested_everywhere():
      return preempt(start, save=False)
    step = start
    while step < num_steps:
      t, local = prefetch.get()
      assert t == step, (t, step)
      batch = mesh_lib.to_global_batch(local, mesh, batch_sh)
      state, metrics = train_step(state, batch)
      flush()
      pending = (step, metrics)
      step += 1
      n_last += 1
      bar.update(1)
      now = time.perf_counter()
      if now - t_last > 5.0:
        shown["rate"] = f"{global_batch_size * n_last / (now - t_last):.0f} ex/s"
        bar.set_postfix_str(", ".join(v for v in shown.values() if v), refresh=False)
        t_last, n_last = now, 0
      ckpt_due = bool(ckpt_every) and step % ckpt_every == 0 and step < num_steps
      stop = preemption.requested_everywhere()
      if eval_every and step % eval_every == 0 and step < num_steps:
        flush()  # eval (and its row) before the checkpoint: a resumed run starts after it
        last_eval = do_eval(step)
        bar.write(f"step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in last_eval.items()))
      if ckpt_due and not stop:
        flush()  # never checkpoint a state whose last step is unchecked or whose row is unwritten
        ckpt.save(step, state, meta)
      if stop:
        flush()
        return preempt(step, save=True)
    host = flush()
    if host is not None:
      summary["final_train"] = host
    elif start == num_steps and is_main:
      last = _last_train_row(workdir, num_steps)  # resumed at the end: same summary
      if last is not None:
        summary["final_train"] = last
    if preemption.requested_everywhere():
      return preempt(num_steps, save=True)
    ckpt.save(num_steps, state, meta)
    last_eval = do_eval(num_steps) if eval_step is not None else {}
    summary.update(step=num_steps, eval=last_eval, seconds=bar.format_dict.get("elapsed", 0.0))
    if task.finalize is not None:
      summary.update(_jsonable(task.finalize(state), "finalize(state)"))
    if is_main:
      save_json(os.path.join(workdir, "summary.json"), summary)
      plot_curves(workdir)
    return (summary, state) if return_state else summary
  finally:
    prefetch.close()
    bar.close()
    writer.close()
    ckpt.close()
