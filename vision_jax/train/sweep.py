"""The one sweep harness: run every (setting, method) of an experiment, resumably.

An experiment that compares methods lists its runs and hands them over::

    runs = [
      SweepRun(key=(setting, method), fn=lambda wd, s=setting, m=method: train(s, m, wd))
      for setting in settings for method in methods
    ]
    results = run_sweep(workdir, runs)   # {setting: {method: summary}}

``fn(run_workdir)`` trains one run, usually ``return train_and_evaluate(cfg, run_workdir, ...)``
(the loop's summary, unmodified: end-of-run metrics belong in ``Task.finalize``), but it can be
any function that returns a JSON-able dict (a quantizer build, a closed-form solve).

Semantics:

- Run ``r`` lives in ``workdir/<r.subdir>`` (default ``workdir/<key[0]>/<key[1]>/...``). It is
  *finished* iff its ``summary.json`` exists, parses, and is not marked ``"preempted": true``.
  The train loop writes ``summary.json`` only for a finished run; for a ``fn`` that does not go
  through the loop, the harness writes ``fn``'s return value there.
- Finished runs are read, not re-run. An unfinished run is re-run by calling ``fn`` again, which
  resumes from the run's latest checkpoint (the loop's resume).
- A stop request (SIGTERM/SIGINT, :mod:`vision_jax.train.preemption`) stops the sweep: inside a
  run the loop saves a checkpoint and returns ``{"preempted": True, "step": s}``, which the
  harness raises as :class:`~vision_jax.train.preemption.Preempted`; a request seen between
  runs raises it before the next run starts. A request that arrives after the last run has
  started lets the sweep finish if that run finishes. Re-running the same sweep resumes the
  interrupted run and goes on; its results equal an uninterrupted sweep's (the loop's resume is
  bitwise, and a run's eval is a function of its final state).
- The value recorded for a run is the content of its ``summary.json`` (so a fresh run and a
  skipped one give the same types: lists, string keys). ``results`` nests the summaries by key
  parts and is written to ``workdir/<results_name>`` after every finished run.
- When the sweep completes, ``workdir/comparison.png`` compares the runs that have a
  ``metrics.jsonl`` (their train-loss curves and final eval metrics,
  :func:`vision_jax.train.writers.plot_comparison`); a sweep without such runs draws nothing.

With several processes (multi-host), every process runs the sweep; process 0 decides which runs
are finished (its view is broadcast) and writes ``summary.json`` / ``results.json``.

Choice: a ``fn`` that does not go through the train loop has no checkpoints; a stop request
during it lets it finish (it is recorded) and stops the sweep before the next run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from vision_jax.train import preemption
from vision_jax.train.preemption import Preempted
from vision_jax.utils.runinfo import _default as _json_default
from vision_jax.utils.runinfo import save_json

SUMMARY = "summary.json"
COMPARISON = "comparison.png"


@dataclasses.dataclass(frozen=True)
class SweepRun:
  """One run of a sweep.

  Attributes:
    key: the run's name parts, e.g. ``("closed_lt10", "ir_am_softmax")``; ``results`` nests by
      them. Non-empty strings without a path separator.
    fn: ``fn(run_workdir) -> summary dict`` trains (or computes) the run; called only if the run
      is not finished, and again after a preemption (then it must resume, as the loop does).
    subdir: the run's directory relative to the sweep's ``workdir`` (default ``"/".join(key)``),
      for experiments whose on-disk layout differs from their result keys.
    config: for a ``fn`` that does not go through the train loop (which stores and checks its
      own ``config.json``): the JSON-able settings its result depends on. The harness writes
      them to the run's ``config.json`` and refuses to reuse a finished run whose stored config
      differs, instead of silently returning a result computed with other settings.
  """

  key: tuple[str, ...]
  fn: Callable[[str], dict[str, Any]]
  subdir: str | None = None
  config: dict[str, Any] | None = None

  @property
  def label(self) -> str:
    return "/".join(self.key)


def read_summary(run_workdir: str) -> dict[str, Any] | None:
  """The run's ``summary.json`` if the run is finished, else ``None`` (absent, torn, preempted)."""
  path = os.path.join(run_workdir, SUMMARY)
  try:
    with open(path) as f:
      out = json.load(f)
  except (OSError, ValueError):
    return None
  if not isinstance(out, dict) or out.get("preempted", False):
    return None
  return out


def _normalised(obj) -> Any:
  return json.loads(json.dumps(obj, default=_json_default))


def _flat(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _check_config(run: SweepRun, rdir: str) -> None:
  """Raises if a finished run was computed with another ``run.config``."""
  if run.config is None:
    return
  try:
    with open(os.path.join(rdir, "config.json")) as f:
      old = _flat(json.load(f))
  except (OSError, ValueError):
    old = None
  new = _flat(_normalised(run.config))
  if old == new:
    return
  old_ = old or {}
  missing = object()
  changed = sorted(k for k in set(new) | set(old_) if old_.get(k, missing) != new.get(k, missing))
  what = f"changed keys: {', '.join(changed)}" if old is not None else "no readable config.json"
  raise ValueError(
    f"sweep run {run.label} in {rdir} finished with a different config ({what}); use another "
    "workdir, or delete that run's directory to recompute it"
  )


def _validate(runs: Sequence[SweepRun]) -> None:
  seen: dict[tuple[str, ...], int] = {}
  dirs: dict[str, int] = {}
  for i, r in enumerate(runs):
    if not isinstance(r, SweepRun):
      raise TypeError(f"runs[{i}] is a {type(r).__name__}; expected a SweepRun")
    if (
      not isinstance(r.key, tuple)
      or not r.key
      or not all(isinstance(p, str) and p and os.sep not in p for p in r.key)
    ):
      raise ValueError(
        f"runs[{i}].key={r.key!r}: expected a non-empty tuple of non-empty strings without "
        f"{os.sep!r}"
      )
    if not callable(r.fn):
      raise TypeError(f"runs[{i}].fn (key {r.key!r}) is not callable")
    if r.key in seen:
      raise ValueError(f"runs[{i}].key={r.key!r} repeats runs[{seen[r.key]}].key")
    for other, j in seen.items():
      n = min(len(other), len(r.key))
      if other[:n] == r.key[:n]:
        raise ValueError(
          f"runs[{i}].key={r.key!r} and runs[{j}].key={other!r}: one is a prefix of the other, "
          "so their results cannot both be nested"
        )
    seen[r.key] = i
    sub = os.path.normpath(r.subdir if r.subdir is not None else os.path.join(*r.key))
    if os.path.isabs(sub) or sub.split(os.sep)[0] in (".", ".."):
      raise ValueError(f"runs[{i}].subdir={r.subdir!r} must be a relative path inside workdir")
    if sub in dirs:
      raise ValueError(f"runs[{i}] and runs[{dirs[sub]}] share the directory {sub!r}")
    dirs[sub] = i


def _set(tree: dict, key: tuple[str, ...], value) -> None:
  for part in key[:-1]:
    tree = tree.setdefault(part, {})
  tree[key[-1]] = value


def _is_main() -> bool:
  import jax

  return jax.process_index() == 0


def _agree(summary: dict[str, Any] | None) -> dict[str, Any] | None:
  """Process 0's finished-run summary on every process, so that all skip the same runs (only
  process 0 writes ``summary.json``; other hosts may not share its filesystem)."""
  import jax

  if jax.process_count() == 1:
    return summary
  import numpy as np
  from jax.experimental import multihost_utils

  main = jax.process_index() == 0
  data = json.dumps(summary).encode() if main and summary is not None else b""
  n = int(multihost_utils.broadcast_one_to_all(np.int32(len(data))))
  if n == 0:
    return None
  buf = np.frombuffer(data, np.uint8) if main else np.zeros(n, np.uint8)
  return json.loads(bytes(np.asarray(multihost_utils.broadcast_one_to_all(buf))).decode())


def run_sweep(
  workdir: str,
  runs: Sequence[SweepRun],
  *,
  results_name: str = "results.json",
  on_done: Callable[[tuple[str, ...], dict[str, Any]], None] | None = None,
  comparison: str | None = COMPARISON,
) -> dict[str, Any]:
  """Runs the unfinished runs of ``runs`` in order and collects every run's summary.

  Prints one progress line per run (``[3/8] closed_lt10/ir_am_softmax: running`` or
  ``...: done earlier, skipped``). See the module docstring for what "finished" means and how a
  stop request ends the sweep.

  Args:
    workdir: the sweep's output directory; run ``r`` uses ``workdir/<r.subdir>``.
    runs: the runs, in the order to run them; keys unique, none a prefix of another.
    results_name: file name of the nested results in ``workdir``.
    on_done: optional ``on_done(key, summary)`` after each finished run (skipped ones included),
      e.g. to print a row or refresh a plot.
    comparison: file name of the comparison figure in ``workdir`` (written at the end, from the
      runs with a ``metrics.jsonl``); ``None`` to draw none.

  Returns:
    ``results``: the summaries nested by key parts, ``results[key[0]][key[1]]...``.

  Raises:
    Preempted: on a stop request (SIGTERM/SIGINT) inside a run or between runs; the interrupted
      run's checkpoint is saved and re-running the sweep resumes it.
    TypeError: if a run's ``fn`` returns something other than a dict.
    ValueError: for bad keys or colliding run directories, or a finished run whose stored
      ``config.json`` differs from its ``SweepRun.config``.
  """
  runs = list(runs)
  _validate(runs)
  preemption.install_handlers()
  os.makedirs(workdir, exist_ok=True)
  main = _is_main()
  results: dict[str, Any] = {}
  curves: dict[str, str] = {}
  n = len(runs)
  for i, run in enumerate(runs, 1):
    rdir = os.path.join(workdir, run.subdir if run.subdir is not None else os.path.join(*run.key))
    head = f"[{i}/{n}] {run.label}"
    summary = _agree(read_summary(rdir))
    if summary is not None:
      _check_config(run, rdir)
      print(f"{head}: done earlier, skipped", flush=True)
    else:
      if preemption.requested_everywhere():
        preemption.clear()
        raise Preempted(None, rdir)
      print(f"{head}: running", flush=True)
      t0 = time.perf_counter()
      out = run.fn(rdir)
      if not isinstance(out, dict):
        raise TypeError(
          f"sweep run {run.label}: fn returned a {type(out).__name__}; expected the summary dict"
        )
      if out.get("preempted", False):
        preemption.clear()
        raise Preempted(out.get("step"), rdir)
      summary = read_summary(rdir) if main else None
      if summary is None:  # fn did not go through the train loop (or this is not process 0)
        summary = _normalised(out)
        if main:
          if run.config is not None:
            save_json(os.path.join(rdir, "config.json"), run.config)
          save_json(os.path.join(rdir, SUMMARY), out)
      print(f"{head}: done in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    _set(results, run.key, summary)
    if main:
      save_json(os.path.join(workdir, results_name), results)
    if on_done is not None:
      on_done(run.key, summary)
    if os.path.exists(os.path.join(rdir, "metrics.jsonl")):
      curves[run.label] = rdir
  if main and comparison is not None and curves:
    from vision_jax.train.writers import plot_comparison

    plot_comparison(curves, os.path.join(workdir, comparison))
  return results
