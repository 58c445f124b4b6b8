"""The TF-NAS search as one multi-update :class:`~vision_jax.train.Task`.

``Task(updates=(Update("weights", ..., params="net", optim="optim", batch_key="train"),
Update("arch", ..., params="arch", optim="optim_arch", batch_key="val", every=2,
start=warmup_steps)))`` on ``{"train": batch, "val": batch}``:

- ``weights``: bi-sampling, ``CE(path_1) + CE(path_2)`` with ``path_1`` Gumbel-max, ``path_2``
  uniform over the other ops; during warm-up only ``path_1`` (the code's epochs 0-9); depth mixing
  uses ``softmax(beta)`` as a constant.
- ``arch``: all ops mixed with Gumbel-softmax weights at temperature ``tau``, loss

  .. math:: \\mathcal{L} = \\mathrm{CE} + \\lambda\\,\\big|\\mathrm{LAT}(\\alpha, \\beta) / T - 1\\big|,
     \\qquad \\lambda = 0.1;

- ``tau = tau_0 \\cdot 0.96^{\\max(0, e - e_w)}`` at epoch ``e = step // steps_per_epoch``
  (``e_w`` warm-up epochs), computed from the step inside the losses;
- ``post_update``: ``log alpha <- log_softmax(log alpha)`` after every step, and elasticity
  scaling (:mod:`vision_jax.nas.elastic`) after every epoch ``e >= e_w`` (masks re-ranked by
  depthwise L1 norm where a width moved).

Choice: the code re-creates both optimisers every epoch (moments reset, learning rate from its
epoch scheduler); here each optimiser keeps its moments for the whole search and its schedule
spans its own applications.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vision_jax.data.transforms import image_to_float
from vision_jax.nas import supernet as sn
from vision_jax.nas.elastic import elastic_scale
from vision_jax.nas.layers import fast_init
from vision_jax.nas.space import SearchSpace
from vision_jax.train import Task, Update
from vision_jax.utils.arrays import masked_mean


def temperature(step, *, tau0: float, decay: float, warmup_epochs: int, steps_per_epoch: int):
  """``tau0 * decay ** max(0, step // steps_per_epoch - warmup_epochs)`` (traceable)."""
  epoch = jnp.asarray(step) // steps_per_epoch
  return tau0 * decay ** jnp.maximum(epoch - warmup_epochs, 0).astype(jnp.float32)


def search_task(
  space: SearchSpace,
  base_ms: float,
  curve: np.ndarray,
  *,
  target_ms: float,
  steps_per_epoch: int,
  warmup_epochs: int,
  lat_weight: float = 0.1,
  tau0: float = 5.0,
  tau_decay: float = 0.96,
  arch_every: int = 2,
  elastic: bool = True,
  dw_impl: str = "taps",
  preprocess: Callable[[jax.Array], jax.Array] = image_to_float,
  phase: str = "search",
) -> Task:
  """The search Task (see the module docstring).

  Args:
    space: the search space.
    base_ms, curve: the latency table's dense form (:meth:`LatencyTable.dense`).
    target_ms: target latency ``T``.
    steps_per_epoch: steps that make one epoch (temperature decay and elasticity cadence).
    warmup_epochs: epochs of single-path weight training before the architecture update starts.
    lat_weight: ``lambda``.
    tau0, tau_decay: Gumbel temperature schedule.
    arch_every: the architecture update runs every ``arch_every``-th step.
    elastic: run elasticity scaling after every post-warm-up epoch.
    dw_impl: the supernet's depthwise convolution, ``"taps"`` or ``"xla"`` (see
      :class:`~vision_jax.nas.supernet.Supernet`).
    preprocess: uint8 images -> float input.
    phase: ``"search"`` (both updates, the whole search) or ``"warmup"``: the warm-up epochs
      alone, the ``weights`` update on the Gumbel-max path (no second path, no architecture
      update, no elasticity), a smaller program to compile. Its state is the search's without
      ``opt_state["arch"]`` (the architecture optimiser has not run yet), so a search can start
      from it at step ``warmup_epochs * steps_per_epoch`` (:func:`search_from_warmup`).

  Returns:
    A :class:`~vision_jax.train.Task`; ``params = {"net", "arch"}``, ``extra = {"widths",
    "masks", "target_ms"}``. The target is state, not a compile-time constant, so searches for
    different targets lower to the same program; its ``program_key`` names everything else the
    steps read, so in one process the trainer compiles the search step once for all targets.

  Raises:
    ValueError: non-positive target, steps or weights.
  """
  if not target_ms > 0:
    raise ValueError(f"search_task: target_ms={target_ms!r} must be > 0")
  if not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
    raise ValueError(f"search_task: steps_per_epoch={steps_per_epoch!r} must be an int >= 1")
  if not isinstance(warmup_epochs, int) or warmup_epochs < 0:
    raise ValueError(f"search_task: warmup_epochs={warmup_epochs!r} must be an int >= 0")
  n_ops = sn.num_ops(space)
  if curve.shape[:2] != (space.num_blocks, n_ops):
    raise ValueError(
      f"search_task: curve has shape {curve.shape}; expected ({space.num_blocks}, "
      f"{n_ops}, W + 1) for this search space ({n_ops} ops)"
    )
  if dw_impl not in ("taps", "xla"):
    raise ValueError(f"search_task: dw_impl={dw_impl!r}; expected 'taps' or 'xla'")
  if phase not in ("search", "warmup"):
    raise ValueError(f"search_task: phase={phase!r}; expected 'search' or 'warmup'")
  net = sn.Supernet(space, dw_impl)
  lo, hi = sn.width_bounds(space)
  curve_j = jnp.asarray(curve, jnp.float32)
  warmup_steps = warmup_epochs * steps_per_epoch
  tau_of = lambda step: temperature(  # noqa: E731
    step, tau0=tau0, decay=tau_decay, warmup_epochs=warmup_epochs, steps_per_epoch=steps_per_epoch
  )

  def init(rng, batch):
    x = preprocess(batch["train"]["image"])
    arch = sn.init_arch(space)
    widths = sn.nominal_widths(space)
    masks = sn.prefix_masks(space, widths)
    w = jnp.full((space.num_blocks, n_ops), 1.0 / n_ops)
    p = fast_init(net, rng, x, masks, sn.depth_weights(arch, space), op_weights=w)["params"]
    extra = {
      "widths": jnp.asarray(widths),
      "masks": masks,
      "target_ms": jnp.asarray(target_ms, jnp.float32),
    }
    return {"net": p, "arch": arch}, {}, extra

  def ce(logits, labels, mask):
    per = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    acc = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return masked_mean(per, mask), masked_mean(acc, mask)

  def weight_loss(params, model_state, extra, batch, rng, step):
    x, y, mask = preprocess(batch["image"]), batch["label"], batch.get("mask")
    arch = jax.lax.stop_gradient(params["arch"])
    dw = sn.depth_weights(arch, space)
    first, second = sn.bi_sample(arch["alpha"], rng)

    def path(idx):
      logits = net.apply({"params": params["net"]}, x, extra["masks"], dw, op_index=idx)
      return ce(logits, y, mask)

    ce1, acc1 = path(first)
    if phase == "warmup":
      ce2 = acc2 = jnp.zeros(())
    else:
      ce2, acc2 = jax.lax.cond(
        step >= warmup_steps, lambda: path(second), lambda: (jnp.zeros(()), jnp.zeros(()))
      )
    return ce1 + ce2, {
      "model_state": model_state,
      "extra": extra,
      "metrics": {"ce_path1": ce1, "ce_path2": ce2, "acc_path1": acc1, "acc_path2": acc2},
    }

  def arch_loss(params, model_state, extra, batch, rng, step):
    x, y, mask = preprocess(batch["image"]), batch["label"], batch.get("mask")
    arch = params["arch"]
    tau = tau_of(step)
    w = sn.gumbel_weights(arch["alpha"], rng, tau)
    dw = sn.depth_weights(arch, space)
    logits = net.apply({"params": params["net"]}, x, extra["masks"], dw, op_weights=w)
    ce_v, acc = ce(logits, y, mask)
    lat = sn.expected_latency(space, w, dw, sn.block_latencies(curve_j, extra["widths"]), base_ms)
    lat_loss = lat_weight * jnp.abs(lat / extra["target_ms"] - 1.0)
    return ce_v + lat_loss, {
      "model_state": model_state,
      "extra": extra,
      "metrics": {"ce": ce_v, "acc": acc, "latency_ms": lat, "lat_loss": lat_loss, "tau": tau},
    }

  n_stages = len(space.stages)

  def rescale(params, extra):
    arch = params["arch"]
    ops = jnp.argmax(arch["alpha"], -1)
    depths = jnp.stack([jnp.argmax(arch["beta"][f"s{i}"]) + 1 for i in range(n_stages)])
    new_w = elastic_scale(
      space, extra["widths"], ops, depths, curve_j, base_ms, extra["target_ms"], lo, hi
    )
    changed = new_w != extra["widths"]
    masks = sn.ranked_masks(space, params["net"], new_w, extra["masks"], changed)
    return {**extra, "widths": new_w, "masks": masks}

  def post_update(state):
    arch = state.params["arch"]
    params = {**state.params, "arch": {**arch, "alpha": jax.nn.log_softmax(arch["alpha"], -1)}}
    extra = state.extra
    if elastic and phase == "search":
      step = state.step  # already counts this step
      do = (step % steps_per_epoch == 0) & (step >= (warmup_epochs + 1) * steps_per_epoch)
      extra = jax.lax.cond(do, rescale, lambda p, e: e, params, extra)
    return state.replace(params=params, extra=extra)

  # Everything the steps read besides the state: searches for different targets share one step.
  program_key = (
    "vision_jax.nas.search_task",
    space,
    float(base_ms),
    curve.shape,
    hashlib.sha1(np.ascontiguousarray(curve, np.float32).tobytes()).hexdigest(),
    steps_per_epoch,
    warmup_epochs,
    float(lat_weight),
    float(tau0),
    float(tau_decay),
    arch_every,
    bool(elastic),
    dw_impl,
    preprocess,
    phase,
  )
  weights = Update("weights", weight_loss, params="net", optim="optim", batch_key="train")
  if phase == "warmup":
    return Task(init=init, updates=(weights,), post_update=post_update, program_key=program_key)
  return Task(
    init=init,
    program_key=program_key,
    updates=(
      weights,
      Update(
        "arch",
        arch_loss,
        params="arch",
        optim="optim_arch",
        batch_key="val",
        every=arch_every,
        start=warmup_steps,
      ),  # fmt: skip
    ),
    post_update=post_update,
  )


def search_from_warmup(warm, fresh, target_ms: float):
  """The search state that continues a warm-up (``phase="warmup"``) state.

  Step, parameters, model state, the ``weights`` optimiser state, the rng and ``extra`` are the
  warm-up's (its steps are exactly the search's first ``warmup_epochs`` epochs for any target:
  they read neither the target nor the architecture update); ``opt_state["arch"]`` is the fresh
  search state's (the architecture optimiser starts after the warm-up), and
  ``extra["target_ms"]`` is set to ``target_ms``.

  Args:
    warm: the warm-up run's final :class:`~vision_jax.train.TrainState`.
    fresh: a freshly initialised state of the search Task (same space and settings).
    target_ms: this search's target latency.
  """
  if set(warm.opt_state) != {"weights"} or "arch" not in fresh.opt_state:
    raise ValueError(
      f"search_from_warmup: expected a warm-up state (opt_state keys ['weights']) and a search "
      f"state (with 'arch'); got {sorted(warm.opt_state)} and {sorted(fresh.opt_state)}"
    )
  if not target_ms > 0:
    raise ValueError(f"search_from_warmup: target_ms={target_ms!r} must be > 0")
  target = jnp.asarray(target_ms, jnp.float32)
  target = jax.device_put(target, fresh.extra["target_ms"].sharding)
  return fresh.replace(
    step=warm.step,
    params=warm.params,
    model_state=warm.model_state,
    opt_state={**fresh.opt_state, "weights": warm.opt_state["weights"]},
    rng=warm.rng,
    extra={**warm.extra, "target_ms": target},
  )
