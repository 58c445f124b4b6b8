"""The jitted train and eval steps.

A method plugs in through a :class:`Task`: how to initialise its state, its loss, and what its
eval step returns. The step itself is shared by every paper::

    state, metrics = train_step(state, batch)     # one jax.jit, state donated

Inside: per-step rng ``fold_in(state.rng, state.step)``; ``value_and_grad`` of ``task.loss_fn``;
optax update; grad / param / update global norms; and a non-finite guard — if the loss or the
gradient is not finite the update is *not* applied (the state stays the last good one) and
``metrics["nonfinite"]`` is set, so the host loop can stop with an error naming the step.

Under jit with the batch sharded over ``data``, BatchNorm's batch mean/var are global means, i.e.
this is sync-BN across devices and hosts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from vision_jax.train import mesh as mesh_lib
from vision_jax.train.state import TrainState

# loss_fn(params, model_state, extra, batch, rng, step) -> (loss, aux) with
# aux = {"model_state": ..., "extra": ..., "metrics": {name: scalar}}
LossFn = Callable[..., tuple[jax.Array, dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class Task:
  """What a method supplies to the shared trainer.

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
    post_update: optional ``post_update(state) -> state`` after the optimizer step (EMA networks).
    state_partition: optional ``state_partition(abstract_state) -> PartitionSpec pytree``; default
      replicates everything (data parallel). Class-parallel heads return ``P("model")`` leaves.
    finalize: optional ``finalize(state) -> dict`` of end-of-run metrics (e.g. the angle between
      each class weight and its feature centre), called by the loop on every process after the
      final checkpoint and eval of a finished run; its arrays become nested lists and the dict
      is merged into ``summary.json``. Not called for a preempted run.
  """

  init: Callable[..., Any]
  loss_fn: LossFn
  eval_fn: Callable[..., dict[str, jax.Array]] | None = None
  summarize: Callable[[dict[str, Any]], dict[str, float]] | None = None
  post_update: Callable[[TrainState], TrainState] | None = None
  state_partition: Callable[[TrainState], Any] | None = None
  finalize: Callable[[TrainState], dict[str, Any]] | None = None


def _global_norm(tree) -> jax.Array:
  leaves = [jnp.asarray(x, jnp.float32) for x in jax.tree.leaves(tree)]
  if not leaves:
    return jnp.zeros((), jnp.float32)
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in leaves))


def state_shardings(task: Task, abstract_state: TrainState, mesh: Mesh):
  """NamedShardings for every leaf of the state (replicated unless the task says otherwise)."""
  if task.state_partition is None:
    specs = jax.tree.map(lambda _: P(), abstract_state)
  else:
    specs = task.state_partition(abstract_state)
  return jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda x: isinstance(x, P))


def create_train_state(
  task: Task,
  tx: optax.GradientTransformation,
  rng: jax.Array,
  example_batch,
  mesh: Mesh,
) -> tuple[TrainState, Any]:
  """Initialises the state directly with its final shardings (never materialised unsharded).

  Returns:
    ``(state, shardings)``.
  """
  init_rng, state_rng = jax.random.split(rng)

  def init_fn(init_rng, batch):
    params, model_state, extra = task.init(init_rng, batch)
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      model_state=model_state,
      opt_state=tx.init(params),
      rng=state_rng,
      extra=extra,
    )

  abstract = jax.eval_shape(init_fn, init_rng, example_batch)
  shardings = state_shardings(task, abstract, mesh)
  state = jax.jit(init_fn, out_shardings=shardings)(init_rng, example_batch)
  return state, shardings


def make_train_step(
  task: Task,
  tx: optax.GradientTransformation,
  schedule: optax.Schedule | None,
  mesh: Mesh,
  state_sharding,
):
  """Returns ``train_step(state, batch) -> (state, metrics)``, jitted once, state donated.

  ``metrics`` are replicated scalars: the task's metrics plus ``loss``, ``lr``, ``grad_norm``,
  ``param_norm``, ``update_norm`` and ``nonfinite`` (1.0 when the update was skipped).
  """

  def step_fn(state: TrainState, batch):
    rng = jax.random.fold_in(state.rng, state.step)

    def loss_wrap(params):
      return task.loss_fn(params, state.model_state, state.extra, batch, rng, state.step)

    (loss, aux), grads = jax.value_and_grad(loss_wrap, has_aux=True)(state.params)
    updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    grad_norm = _global_norm(grads)
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    new_state = state.replace(
      step=state.step + 1,
      params=new_params,
      opt_state=new_opt_state,
      model_state=aux.get("model_state", state.model_state),
      extra=aux.get("extra", state.extra),
    )
    if task.post_update is not None:
      new_state = task.post_update(new_state)
    # Non-finite guard: keep every array of the old state (step included) so the host sees the
    # step number that failed and the last good state survives.
    new_state = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new_state, state)
    metrics = dict(aux.get("metrics", {}))
    metrics.update(
      loss=loss.astype(jnp.float32),
      grad_norm=grad_norm,
      param_norm=_global_norm(state.params),
      update_norm=_global_norm(updates),
      nonfinite=(~ok).astype(jnp.float32),
    )
    if schedule is not None:
      metrics["lr"] = jnp.asarray(schedule(state.step), jnp.float32)
    return new_state, metrics

  batch_sh = mesh_lib.batch_sharding(mesh)
  return jax.jit(
    step_fn,
    in_shardings=(state_sharding, batch_sh),
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
