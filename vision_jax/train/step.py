"""The jitted train and eval steps.

A method plugs in through a :class:`Task`: how to initialise its state, its loss (or its ordered
sequence of :class:`Update`\\ s), and what its eval step returns. The step itself is shared by every
paper::

    state, metrics = train_step(state, batch)     # one jax.jit, state donated

Single-update task (``Task(loss_fn=...)``): per-step rng ``fold_in(state.rng, state.step)``;
``value_and_grad`` of ``task.loss_fn`` over all params; one optax update (``cfg.optim``); grad /
param / update global norms; metrics ``loss``, ``lr``, ``grad_norm``, ``param_norm``,
``update_norm``, ``nonfinite`` plus the task's own, unprefixed.

Multi-update task (``Task(updates=(Update(...), ...))``) — a GAN's D then G, a bi-level NAS's weight
step then architecture step — runs the updates in order inside the same jitted step. Update ``i``:

- reads ``batch[u.batch_key]`` (or the whole batch), with rng ``fold_in(fold_in(rng, step), i)``;
- differentiates only its parameter group ``u.params`` (top-level keys of ``params``; the rest are
  constants of its loss, so they receive exactly zero gradient and are left untouched);
- applies its own optimiser (config section ``cfg.<u.optim>``), whose state is
  ``state.opt_state[u.name]`` and whose schedule follows this update's own count;
- sees the params, model state and ``extra`` that the updates before it wrote;
- runs on steps ``step >= u.start`` with ``(step - u.start) % u.every == 0`` (``every=5``: every
  5th step, e.g. a generator updated once per 5 critic steps; ``start``: an architecture update
  that begins after warm-up epochs); on other steps it is skipped by ``lax.cond`` (no compute).

Its metrics are prefixed ``<name>/`` (``d/loss``, ``g/grad_norm``, ``arch/lr``) plus
``<name>/applied``; ``param_norm`` and ``nonfinite`` stay global.

Non-finite guard: if the loss or the gradient of any update of a step is not finite, the *whole*
step is reverted — every array of the state, step counter included, stays the last good one — and
``nonfinite`` (and ``<name>/nonfinite`` of the failing update) is set, so the host loop stops with
an error naming the update and the step.

Under jit with the batch sharded over ``data``, BatchNorm's batch mean/var are global means, i.e.
this is sync-BN across devices and hosts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from vision_jax.train import mesh as mesh_lib
from vision_jax.train.optim import make_optimizer
from vision_jax.train.state import TrainState

# loss_fn(params, model_state, extra, batch, rng, step) -> (loss, aux) with
# aux = {"model_state": ..., "extra": ..., "metrics": {name: scalar}}
LossFn = Callable[..., tuple[jax.Array, dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class Update:
  """One gradient update of a multi-update step (see the module docstring).

  Attributes:
    name: metric prefix and key of its optimiser state in ``TrainState.opt_state`` (``"d"``,
      ``"g"``, ``"weights"``, ``"arch"``); letters, digits and ``_``.
    loss_fn: ``loss_fn(params, model_state, extra, batch, rng, step) -> (loss, aux)``, the same
      signature as :attr:`Task.loss_fn`; ``params`` is the full tree, ``batch`` the selected one.
    params: the top-level key(s) of ``params`` this update differentiates; ``None`` = all.
    optim: name of the optimiser config section (``cfg.optim``, ``cfg.optim_d``, ...).
    batch_key: key of the batch this update reads (``"train"`` / ``"val"``); ``None`` = all.
    every: cadence; the update runs on steps ``(step - start) % every == 0``.
    start: first step at which the update runs (earlier steps skip it).
  """

  name: str
  loss_fn: LossFn
  params: str | tuple[str, ...] | None = None
  optim: str = "optim"
  batch_key: str | None = None
  every: int = 1
  start: int = 0

  def __post_init__(self):
    if not (isinstance(self.name, str) and self.name and self.name.replace("_", "a").isalnum()):
      raise ValueError(f"Update.name={self.name!r}: use letters, digits and '_' (a metric prefix)")
    if not isinstance(self.every, int) or isinstance(self.every, bool) or self.every < 1:
      raise ValueError(f"Update {self.name!r}: every={self.every!r} must be an int >= 1")
    if not isinstance(self.start, int) or isinstance(self.start, bool) or self.start < 0:
      raise ValueError(f"Update {self.name!r}: start={self.start!r} must be an int >= 0")
    if isinstance(self.params, list):
      object.__setattr__(self, "params", tuple(self.params))

  @property
  def group(self) -> tuple[str, ...] | None:
    return (self.params,) if isinstance(self.params, str) else self.params


@dataclasses.dataclass(frozen=True)
class Task:
  """What a method supplies to the shared trainer.

  Give exactly one of ``loss_fn`` (one update over all params with ``cfg.optim``; metrics
  unprefixed) or ``updates`` (an ordered sequence of :class:`Update`).

  Attributes:
    init: ``init(rng, batch) -> (params, model_state, extra)``; ``batch`` is a global example batch
      (used for shapes only).
    loss_fn: ``loss_fn(params, model_state, extra, batch, rng, step) -> (loss, aux)``, where ``aux``
      has ``"model_state"``, ``"extra"`` (updated non-gradient state, e.g. class centres) and
      ``"metrics"`` (dict of scalars to log). ``batch`` may carry a ``"mask"``.
    eval_fn: ``eval_fn(params, model_state, extra, batch) -> dict`` of per-example arrays
      ``[B, ...]`` (predictions, embeddings, correctness). Gathered to the host, padded rows
      dropped via ``batch["mask"]``, then passed to ``summarize``.
    summarize: ``summarize(outputs: dict[str, np.ndarray]) -> dict[str, float]`` host-side metrics.
    post_update: optional ``post_update(state) -> state`` after the optimizer step(s) (EMA
      networks).
    state_partition: optional ``state_partition(abstract_state) -> PartitionSpec pytree``; default
      replicates everything (data parallel). Class-parallel heads return ``P("model")`` leaves.
    updates: the multi-update form (GAN, bi-level search); see the module docstring.
    batch_partition: optional ``batch_partition(example_batch) -> PartitionSpec pytree`` for the
      train batch (a prefix tree is fine); default shards every leaf's leading axis over
      ``data``. Return ``P()`` for a leaf to replicate it (one few-shot episode is smaller than the
      device count).
    finalize: optional ``finalize(state) -> dict`` of end-of-run results (arrays allowed), merged
      by the loop into ``summary.json`` (e.g. IR-Softmax's weight–centre angles).
    program_key: optional hashable promise that every Task with this key has the same train and
      eval steps up to state: the same functions of ``(params, model_state, extra, batch, rng,
      step)`` — whatever differs between them (a NAS search's target latency) lives in the state
      that ``init`` returns. Runs of such Tasks in one process with equal optimiser sections,
      ``train.num_steps``, mesh and shardings reuse one jitted step
      (:func:`cached_steps`): no second trace, lowering or compile. ``None``: a new step per run.
  """

  init: Callable[..., Any]
  loss_fn: LossFn | None = None
  eval_fn: Callable[..., dict[str, jax.Array]] | None = None
  summarize: Callable[[dict[str, Any]], dict[str, float]] | None = None
  post_update: Callable[[TrainState], TrainState] | None = None
  state_partition: Callable[[TrainState], Any] | None = None
  updates: tuple[Update, ...] = ()
  batch_partition: Callable[[Any], Any] | None = None
  finalize: Callable[[TrainState], dict[str, Any]] | None = None
  program_key: Any = None

  def __post_init__(self):
    if self.program_key is not None:
      try:
        hash(self.program_key)
      except TypeError:
        raise TypeError(
          f"Task.program_key={self.program_key!r} must be hashable (a tuple of plain values)"
        ) from None
    updates = tuple(self.updates or ())
    object.__setattr__(self, "updates", updates)
    if (self.loss_fn is None) == (not updates):
      raise ValueError("Task needs exactly one of loss_fn= (one update) or updates= (several)")
    names = [u.name for u in updates]
    if len(set(names)) != len(names):
      raise ValueError(f"Task.updates has duplicate names {names}; each needs its own name")
    for u in updates:
      if not isinstance(u, Update):
        raise TypeError(f"Task.updates must hold Update objects, got {type(u).__name__}")

  @property
  def multi_update(self) -> bool:
    return bool(self.updates)


Optimizers = optax.GradientTransformation | Mapping[str, optax.GradientTransformation]
Schedules = optax.Schedule | Mapping[str, optax.Schedule] | None


def make_task_optimizers(
  task: Task, cfg: ml_collections.ConfigDict, num_steps: int
) -> tuple[Optimizers, Schedules]:
  """``(tx, schedule)`` for ``task`` from ``cfg``: one pair from ``cfg.optim`` for a single-update
  task, else ``({name: tx}, {name: schedule})`` from each update's section, whose schedule spans
  that update's own number of applications, ``ceil((num_steps - start) / every)``.

  Raises:
    KeyError: an update names an optimiser section that ``cfg`` does not have.
  """
  if not task.multi_update:
    return make_optimizer(cfg.optim, num_steps)
  txs, scheds = {}, {}
  for u in task.updates:
    if u.optim not in cfg:
      have = sorted(k for k in cfg.keys() if k.startswith("optim"))
      raise KeyError(
        f"update {u.name!r} uses optimiser section cfg.{u.optim}, which the config lacks "
        f"(optimiser sections present: {', '.join(have) or 'none'})"
      )
    txs[u.name], scheds[u.name] = make_optimizer(cfg[u.optim], _applications(u, num_steps))
  return txs, scheds


def _applications(u: Update, steps):
  """How many times ``u`` runs in steps ``0 .. steps - 1`` (python int or traced)."""
  if isinstance(steps, int):
    return max(-(-(steps - u.start) // u.every), 0)
  return jnp.maximum((steps - u.start + u.every - 1) // u.every, 0)


def _global_norm(tree) -> jax.Array:
  leaves = [jnp.asarray(x, jnp.float32) for x in jax.tree.leaves(tree)]
  if not leaves:
    return jnp.zeros((), jnp.float32)
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in leaves))


def _select(params, group):
  if group is None:
    return params
  return {k: params[k] for k in group}


def _merge(params, sub, group):
  if group is None:
    return sub
  return {**params, **sub}


def _check_groups(task: Task, params) -> None:
  for u in task.updates:
    if u.group is None:
      continue
    if not isinstance(params, Mapping):
      raise TypeError(
        f"update {u.name!r} differentiates params[{u.params!r}] but params is a "
        f"{type(params).__name__}, not a dict of parameter groups"
      )
    missing = [k for k in u.group if k not in params]
    if missing:
      raise KeyError(
        f"update {u.name!r}: parameter group(s) {missing} not in params; top-level keys are "
        f"{sorted(params)}"
      )


def state_shardings(task: Task, abstract_state: TrainState, mesh: Mesh):
  """NamedShardings for every leaf of the state (replicated unless the task says otherwise)."""
  if task.state_partition is None:
    specs = jax.tree.map(lambda _: P(), abstract_state)
  else:
    specs = task.state_partition(abstract_state)
  return jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda x: isinstance(x, P))


def batch_shardings(task: Task, example_batch, mesh: Mesh):
  """The train batch's shardings: ``task.batch_partition`` or every leaf over ``data``."""
  if task.batch_partition is None:
    return mesh_lib.batch_sharding(mesh)
  specs = task.batch_partition(example_batch)
  return jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda x: isinstance(x, P))


def create_train_state(
  task: Task,
  tx: Optimizers,
  rng: jax.Array,
  example_batch,
  mesh: Mesh,
) -> tuple[TrainState, Any]:
  """Initialises the state directly with its final shardings (never materialised unsharded).

  ``tx`` is one optax transformation (single-update task: ``opt_state`` is its state) or a
  ``{update name: tx}`` mapping (multi-update task: ``opt_state`` is ``{name: state of that
  update's parameter group}``).

  Returns:
    ``(state, shardings)``.
  """
  init_rng, state_rng = jax.random.split(rng)
  if task.multi_update:
    missing = [u.name for u in task.updates if u.name not in tx]
    if missing:
      raise KeyError(f"no optimiser for update(s) {missing}; make_task_optimizers builds them")

  def init_fn(init_rng, batch):
    params, model_state, extra = task.init(init_rng, batch)
    if task.multi_update:
      _check_groups(task, params)
      opt_state = {u.name: tx[u.name].init(_select(params, u.group)) for u in task.updates}
    else:
      opt_state = tx.init(params)
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      model_state=model_state,
      opt_state=opt_state,
      rng=state_rng,
      extra=extra,
    )

  abstract = jax.eval_shape(init_fn, init_rng, example_batch)
  shardings = state_shardings(task, abstract, mesh)
  state = jax.jit(init_fn, out_shardings=shardings)(init_rng, example_batch)
  return state, shardings


def _one_update(u: Update, tx, schedule, *, prefix: str, loss_fn, step, count):
  """Returns ``fn((params, model_state, extra, opt_state), batch, rng) -> (carry, metrics, ok)``."""
  group = None if u is None else u.group

  def fn(carry, batch, rng):
    params, model_state, extra, opt_state = carry
    sub = _select(params, group)

    def loss_wrap(p):
      return loss_fn(_merge(params, p, group), model_state, extra, batch, rng, step)

    (loss, aux), grads = jax.value_and_grad(loss_wrap, has_aux=True)(sub)
    updates, new_opt_state = tx.update(grads, opt_state, sub)
    new_params = _merge(params, optax.apply_updates(sub, updates), group)
    grad_norm = _global_norm(grads)
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    metrics = {f"{prefix}{k}": v for k, v in aux.get("metrics", {}).items()}
    metrics.update(
      {
        f"{prefix}loss": loss.astype(jnp.float32),
        f"{prefix}grad_norm": grad_norm,
        f"{prefix}update_norm": _global_norm(updates),
      }
    )
    if schedule is not None:
      metrics[f"{prefix}lr"] = jnp.asarray(schedule(count), jnp.float32)
    carry = (
      new_params,
      aux.get("model_state", model_state),
      aux.get("extra", extra),
      new_opt_state,
    )
    return carry, metrics, ok

  return fn


def make_train_step(
  task: Task,
  tx: Optimizers,
  schedule: Schedules,
  mesh: Mesh,
  state_sharding,
  batch_sharding=None,
):
  """Returns ``train_step(state, batch) -> (state, metrics)``, jitted once, state donated.

  ``tx`` / ``schedule`` as from :func:`make_task_optimizers`. ``batch_sharding`` defaults to
  every leaf over ``data`` (see :func:`batch_shardings`). ``metrics`` are replicated scalars; see
  the module docstring for their names.
  """

  def single_step(state: TrainState, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    fn = _one_update(
      None, tx, schedule, prefix="", loss_fn=task.loss_fn, step=state.step, count=state.step
    )
    return fn((state.params, state.model_state, state.extra, state.opt_state), batch, rng)

  def multi_step(state: TrainState, batch):
    base_rng = jax.random.fold_in(state.rng, state.step)
    params, model_state, extra = state.params, state.model_state, state.extra
    opt_states = dict(state.opt_state)
    metrics: dict[str, jax.Array] = {}
    ok = jnp.ones((), bool)
    for i, u in enumerate(task.updates):
      rng = jax.random.fold_in(base_rng, i)
      sub_batch = batch if u.batch_key is None else batch[u.batch_key]
      # Applications before this step; optax's own count agrees.
      count = _applications(u, state.step)
      fn = _one_update(
        u,
        tx[u.name],
        schedule[u.name] if schedule is not None else None,
        prefix=f"{u.name}/",
        loss_fn=u.loss_fn,
        step=state.step,
        count=count,
      )
      carry = (params, model_state, extra, opt_states[u.name])
      if u.every == 1 and u.start == 0:
        carry, m, u_ok = fn(carry, sub_batch, rng)
        applied = jnp.ones((), jnp.float32)
      else:
        out_shape = jax.eval_shape(fn, carry, sub_batch, rng)

        def skip(carry, _batch, _rng, out_shape=out_shape):
          zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), out_shape[1])
          return carry, zeros, jnp.ones((), bool)

        do = (state.step >= u.start) & ((state.step - u.start) % u.every == 0)
        carry, m, u_ok = jax.lax.cond(do, fn, skip, carry, sub_batch, rng)
        applied = do.astype(jnp.float32)
      params, model_state, extra, opt_states[u.name] = carry
      metrics.update(m)
      metrics[f"{u.name}/applied"] = applied
      metrics[f"{u.name}/nonfinite"] = (~u_ok).astype(jnp.float32)
      ok = ok & u_ok
    return (params, model_state, extra, opt_states), metrics, ok

  def step_fn(state: TrainState, batch):
    carry, metrics, ok = (multi_step if task.multi_update else single_step)(state, batch)
    params, model_state, extra, opt_state = carry
    new_state = state.replace(
      step=state.step + 1,
      params=params,
      opt_state=opt_state,
      model_state=model_state,
      extra=extra,
    )
    if task.post_update is not None:
      new_state = task.post_update(new_state)
    # Non-finite guard: keep every array of the old state (step included) so the host sees the
    # step number that failed and the last good state survives.
    new_state = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new_state, state)
    metrics = dict(metrics)
    metrics.update(
      param_norm=_global_norm(state.params),
      nonfinite=(~ok).astype(jnp.float32),
    )
    return new_state, metrics

  if batch_sharding is None:
    batch_sharding = mesh_lib.batch_sharding(mesh)
  return jax.jit(
    step_fn,
    in_shardings=(state_sharding, batch_sharding),
    out_shardings=(state_sharding, mesh_lib.replicated(mesh)),
    donate_argnums=(0,),
  )


def make_eval_step(task: Task, mesh: Mesh, state_sharding):
  """Returns ``eval_step(state, batch) -> outputs`` (per-example, batch-sharded), jitted once."""
  if task.eval_fn is None:
    raise ValueError("task.eval_fn is None; this task has no eval step")

  def eval_fn(state: TrainState, batch):
    return task.eval_fn(state.params, state.model_state, state.extra, batch)

  batch_sh = mesh_lib.batch_sharding(mesh)
  return jax.jit(eval_fn, in_shardings=(state_sharding, batch_sh), out_shardings=batch_sh)


def split_update_metrics(host: dict[str, float], task: Task) -> dict[str, float]:
  """Drops the metrics of updates that did not run this step (cadence) and the bookkeeping
  ``<name>/applied`` flags, for logging."""
  if not task.multi_update:
    return host
  out = dict(host)
  for u in task.updates:
    applied = out.pop(f"{u.name}/applied", 1.0)
    if applied == 0.0:
      for k in [k for k in out if k.startswith(f"{u.name}/")]:
        del out[k]
  return out


__all__: Sequence[str] = (
  "LossFn",
  "Task",
  "Update",
  "batch_shardings",
  "cached_steps",
  "create_train_state",
  "make_eval_step",
  "make_task_optimizers",
  "make_train_step",
  "split_update_metrics",
  "state_shardings",
)


# (program_key, optimiser sections, num_steps, mesh, shardings) -> (train_step, eval_step); the
# most recent few, so a process running many Tasks does not keep every executable alive.
_STEP_CACHE: dict[Any, tuple[Callable, Callable | None]] = {}
_STEP_CACHE_SIZE = 4


def _optim_sections(task: Task, cfg: ml_collections.ConfigDict) -> tuple:
  names = ["optim"] if not task.multi_update else sorted({u.optim for u in task.updates})
  out = []
  for n in names:
    section = cfg[n]
    out.append(
      (n, repr(sorted(section.to_dict().items()) if hasattr(section, "to_dict") else section))
    )
  return tuple(out)


def cached_steps(
  task: Task,
  tx: Optimizers,
  schedule: Schedules,
  cfg: ml_collections.ConfigDict,
  num_steps: int,
  mesh: Mesh,
  state_sharding,
  batch_sharding,
) -> tuple[Callable, Callable | None]:
  """``(train_step, eval_step)`` for ``task``; with ``task.program_key`` set, the pair built for
  an earlier Task of the same key and settings is returned (see :attr:`Task.program_key`), so
  its compiled executables serve this run too. ``tx`` / ``schedule`` as built from ``cfg`` by
  :func:`make_task_optimizers` (``cfg``'s optimiser sections are part of the key).
  ``eval_step`` is ``None`` without ``eval_fn``.
  """

  def build():
    train_step = make_train_step(task, tx, schedule, mesh, state_sharding, batch_sharding)
    eval_step = make_eval_step(task, mesh, state_sharding) if task.eval_fn is not None else None
    return train_step, eval_step

  if task.program_key is None:
    return build()
  s_leaves, s_def = jax.tree.flatten(state_sharding)
  b_leaves, b_def = jax.tree.flatten(batch_sharding)
  key = (
    task.program_key,
    _optim_sections(task, cfg),
    int(num_steps),
    mesh,
    s_def,
    tuple(s_leaves),
    b_def,
    tuple(b_leaves),
  )
  hit = _STEP_CACHE.pop(key, None)
  if hit is None:
    hit = build()
  _STEP_CACHE[key] = hit  # most recent last
  while len(_STEP_CACHE) > _STEP_CACHE_SIZE:
    _STEP_CACHE.pop(next(iter(_STEP_CACHE)))
  return hit
