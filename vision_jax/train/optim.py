"""Optimizer and learning-rate schedule from a config section (optax).

Every key a section may hold (``cfg.optim``, and for multi-update tasks ``cfg.optim_d``,
``cfg.optim_arch``, ...; one section per :class:`~vision_jax.train.Update`):

==========================  ===========================================================  ========
key                         meaning                                                      default
==========================  ===========================================================  ========
``name``                    ``sgd`` | ``adam`` | ``adamw`` | ``rmsprop``                 ``sgd``
``lr``                      peak learning rate                                           required
``schedule``                ``constant`` | ``cosine`` (to 0) | ``linear`` (to 0) |       constant
                            ``step`` (×``decay_factor`` at each of ``decay_steps``)
``warmup_steps``            linear warm-up from 0, in this optimiser's own updates        0
``decay_steps``             ``step`` schedule boundaries (this optimiser's updates)      ()
``decay_factor``            ``step`` schedule factor                                     0.1
``momentum``                SGD momentum (0 = plain SGD)                                 0.9
``nesterov``                SGD Nesterov momentum                                        False
``b1``, ``b2``, ``eps``     Adam / AdamW moments and epsilon (GANs: ``b1=0.5``;          0.9, 0.999,
                            TF-NAS's architecture Adam: ``(0.5, 0.999)``)                1e-8
``weight_decay``            L2 (sgd/adam/rmsprop) or decoupled (adamw) weight decay      0.0
``weight_decay_exclude``    parameter-path substrings that get no weight decay, e.g.     ()
                            ``("bias", "scale")`` for biases and norm scales
``grad_clip``               clip the update's gradient to this global norm (0 = off)     0.0
==========================  ===========================================================  ========

The schedule's step is the optimiser's own update count, so an update that runs every k-th step
(a GAN's ``n_critic`` cadence) anneals over its own ``ceil(num_steps / k)`` applications.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
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


def decay_mask(exclude: Sequence[str]):
  """``mask(params) -> bool tree``: True where weight decay applies, i.e. the leaf's path
  (``"/"``-joined keys, e.g. ``"backbone/conv1/bias"``) contains none of ``exclude``."""
  exclude = tuple(str(s) for s in exclude)

  def mask(params):
    def keep(path, _):
      name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
      return not any(s in name for s in exclude)

    return jax.tree_util.tree_map_with_path(keep, params)

  return mask


def make_optimizer(
  cfg: ml_collections.ConfigDict, num_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Builds ``(tx, schedule)`` from one optimiser section (keys: see the module docstring).

  Choice: for ``sgd``/``adam``/``rmsprop`` weight decay is L2-style (added to the gradient before
  momentum, as in PyTorch's SGD); ``adamw`` uses decoupled decay.
  """
  schedule = make_schedule(cfg, num_steps)
  name = cfg.get("name", "sgd")
  wd = float(cfg.get("weight_decay", 0.0))
  exclude = tuple(cfg.get("weight_decay_exclude", ()) or ())
  mask = decay_mask(exclude) if exclude else None
  b1, b2, eps = float(cfg.get("b1", 0.9)), float(cfg.get("b2", 0.999)), float(cfg.get("eps", 1e-8))
  chain = []
  clip = float(cfg.get("grad_clip", 0.0))
  if clip > 0:
    chain.append(optax.clip_by_global_norm(clip))
  if name == "adamw":
    chain.append(optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=wd, mask=mask))
    return optax.chain(*chain), schedule
  if wd > 0:
    chain.append(optax.add_decayed_weights(wd, mask=mask))
  if name == "sgd":
    m = float(cfg.get("momentum", 0.9))
    chain.append(optax.sgd(schedule, momentum=m or None, nesterov=bool(cfg.get("nesterov", False))))
  elif name == "adam":
    chain.append(optax.adam(schedule, b1=b1, b2=b2, eps=eps))
  elif name == "rmsprop":
    chain.append(optax.rmsprop(schedule))
  else:
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(_OPTIMIZERS)}")
  return optax.chain(*chain), schedule
