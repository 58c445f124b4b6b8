"""Optimizer and learning-rate schedule from a config (optax)."""

from __future__ import annotations

import ml_collections
import optax

_OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
_SCHEDULES = ("constant", "cosine", "step", "linear")


def make_schedule(cfg: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
  """``cfg.lr`` with linear warm-up (``cfg.warmup_steps``) then ``cfg.schedule``.

  Schedules: ``constant``; ``cosine`` (to 0 at ``num_steps``); ``linear`` (to 0); ``step``
  (multiply by ``cfg.decay_factor`` at each of ``cfg.decay_steps``).
  """
  lr = float(cfg.lr)
  warmup = int(cfg.get("warmup_steps", 0))
  name = cfg.get("schedule", "constant")
  decay_steps = max(num_steps - warmup, 1)
  if name == "constant":
    main = optax.constant_schedule(lr)
  elif name == "cosine":
    main = optax.cosine_decay_schedule(lr, decay_steps)
  elif name == "linear":
    main = optax.linear_schedule(lr, 0.0, decay_steps)
  elif name == "step":
    bounds = {int(s) - warmup: float(cfg.get("decay_factor", 0.1)) for s in cfg.decay_steps}
    main = optax.piecewise_constant_schedule(lr, bounds)
  else:
    raise ValueError(f"unknown schedule {name!r}; valid: {', '.join(_SCHEDULES)}")
  if warmup <= 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def make_optimizer(
  cfg: ml_collections.ConfigDict, num_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Builds ``(tx, schedule)`` from ``cfg`` (fields: name, lr, momentum, nesterov, weight_decay,
  grad_clip, schedule, warmup_steps, decay_steps, decay_factor).

  Choice: for ``sgd``/``adam``/``rmsprop`` weight decay is L2-style (added to the gradient before
  momentum, as in PyTorch's SGD); ``adamw`` uses decoupled decay.
  """
  schedule = make_schedule(cfg, num_steps)
  name = cfg.get("name", "sgd")
  wd = float(cfg.get("weight_decay", 0.0))
  chain = []
  clip = float(cfg.get("grad_clip", 0.0))
  if clip > 0:
    chain.append(optax.clip_by_global_norm(clip))
  if name == "adamw":
    chain.append(optax.adamw(schedule, weight_decay=wd))
    return optax.chain(*chain), schedule
  if wd > 0:
    chain.append(optax.add_decayed_weights(wd))
  if name == "sgd":
    m = float(cfg.get("momentum", 0.9))
    chain.append(optax.sgd(schedule, momentum=m or None, nesterov=bool(cfg.get("nesterov", False))))
  elif name == "adam":
    chain.append(optax.adam(schedule, b1=float(cfg.get("b1", 0.9))))
  elif name == "rmsprop":
    chain.append(optax.rmsprop(schedule))
  else:
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(_OPTIMIZERS)}")
  return optax.chain(*chain), schedule
