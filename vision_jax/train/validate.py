"""Validation of the trainer's config sections (``seed``, ``train``, ``optim*``, ``data``, ``mesh``).

:func:`validate_config` runs in the launcher right after the flags are parsed (so a bad value
fails before any data is built) and again at the top of ``train_and_evaluate``, where the
device count is known. Every problem is reported at once, each naming the config key and the
value seen. Sections or keys a config does not have are skipped (they take the trainer's
defaults); an experiment's own sections are its own to check.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from vision_jax.train.optim import _OPTIMIZERS, _SCHEDULES
from vision_jax.utils.config import ConfigError


def _is_int(v) -> bool:
  return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
  return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def _get(section, key) -> Any:
  return section.get(key) if hasattr(section, "get") else None


def _sections(cfg, prefix: str):
  for k in cfg.keys() if hasattr(cfg, "keys") else ():
    v = cfg[k]
    if k.startswith(prefix) and hasattr(v, "keys"):
      yield k, v


def validate_config(
  cfg,
  *,
  require_num_steps: bool = True,
  device_count: int | None = None,
  data_axis_size: int | None = None,
  check_batch_split: bool = True,
) -> None:
  """Checks the trainer's config sections before any work.

  Args:
    cfg: the run's ``ml_collections.ConfigDict``.
    require_num_steps: ``train.num_steps`` must be >= 1 (at ``train_and_evaluate``); with
      ``False`` (the launcher) 0 is allowed too, meaning "set by the experiment" (from
      ``train.epochs`` or a per-setting budget).
    device_count: devices of the mesh ``cfg.mesh.model`` will split (checks that it divides).
    data_axis_size: size of the mesh's ``data`` axis if the mesh is given; otherwise derived
      from ``device_count`` and ``mesh.model``.
    check_batch_split: ``data.global_batch_size`` and ``data.eval_batch_size`` must be
      multiples of the ``data`` axis (false for a task with its own ``batch_partition``).

  Raises:
    ConfigError: listing every invalid key with its value and the accepted range.
  """
  errors: list[str] = []

  def bad(key, value, need):
    errors.append(f"{key}={value!r}: {need}")

  def int_at_least(section, name, key, lo, need=None):
    v = _get(section, key)
    if v is None:
      return None
    if not _is_int(v) or v < lo:
      bad(f"{name}.{key}", v, need or f"must be an integer >= {lo}")
      return None
    return int(v)

  def real_in(section, name, key, lo, hi=None, *, hi_open=True, need=None):
    v = _get(section, key)
    if v is None:
      return None
    ok = _is_real(v) and float(v) >= lo
    if ok and hi is not None:
      ok = float(v) < hi if hi_open else float(v) <= hi
    if not ok:
      rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}{')' if hi_open else ']'}"
      bad(f"{name}.{key}", v, need or f"must be a finite number {rng}")
      return None
    return float(v)

  if "seed" in cfg and not _is_int(cfg.seed):
    bad("seed", cfg.seed, "must be an integer")

  num_steps = None
  train = cfg.get("train") if hasattr(cfg, "get") else None
  if train is not None:
    lo = 1 if require_num_steps else 0
    num_steps = int_at_least(
      train,
      "train",
      "num_steps",
      lo,
      "must be an integer >= 1 (the number of optimizer steps)"
      if require_num_steps
      else "must be an integer >= 0 (0 = derived by the experiment)",
    )
    real_in(train, "train", "epochs", 0.0)
    int_at_least(train, "train", "log_every", 1, "must be an integer >= 1 (log every k steps)")
    for key in ("eval_every", "checkpoint_every"):
      int_at_least(train, "train", key, 0, "must be an integer >= 0 (0 = off)")
    int_at_least(
      train,
      "train",
      "keep_checkpoints",
      1,
      "must be an integer >= 1 (how many checkpoints to keep; 0 would delete every one)",
    )
    int_at_least(train, "train", "prefetch", 0)

  for name, opt in _sections(cfg, "optim"):
    opt_name = _get(opt, "name")
    if opt_name is not None and opt_name not in _OPTIMIZERS:
      bad(f"{name}.name", opt_name, f"unknown optimizer; valid: {', '.join(_OPTIMIZERS)}")
    if "lr" not in opt:
      bad(f"{name}.lr", None, "missing: set the learning rate")
    else:
      real_in(opt, name, "lr", 0.0, need="must be a finite number >= 0 (< 0 ascends the loss)")
    schedule = _get(opt, "schedule")
    if schedule is not None and schedule not in _SCHEDULES:
      bad(f"{name}.schedule", schedule, f"unknown schedule; valid: {', '.join(_SCHEDULES)}")
    warmup = int_at_least(opt, name, "warmup_steps", 0)
    if warmup is not None and num_steps and warmup > num_steps:
      bad(
        f"{name}.warmup_steps",
        warmup,
        f"must be <= train.num_steps={num_steps} (the lr would never reach {name}.lr)",
      )
    for key in ("momentum", "b1", "b2"):
      real_in(opt, name, key, 0.0, 1.0)
    for key in ("weight_decay", "grad_clip", "eps"):
      real_in(opt, name, key, 0.0)
    if _get(opt, "nesterov") is not None and not isinstance(opt.nesterov, bool):
      bad(f"{name}.nesterov", opt.nesterov, "must be true or false")
    if schedule == "step":
      factor = _get(opt, "decay_factor")
      if factor is not None and not (_is_real(factor) and factor > 0):
        bad(f"{name}.decay_factor", factor, "must be a finite number > 0")
      steps = _get(opt, "decay_steps")
      if not isinstance(steps, (list, tuple)) or not all(_is_int(s) and s >= 0 for s in steps):
        bad(f"{name}.decay_steps", steps, "schedule 'step' needs a list of integer steps >= 0")

  model_axis = 1
  mesh = cfg.get("mesh") if hasattr(cfg, "get") else None
  if mesh is not None:
    m = int_at_least(mesh, "mesh", "model", 1, "must be an integer >= 1 (model-axis size)")
    if m is not None:
      model_axis = m
      if device_count is not None and device_count % m:
        bad("mesh.model", m, f"must divide the device count {device_count}")
  if data_axis_size is None and device_count is not None and device_count % model_axis == 0:
    data_axis_size = device_count // model_axis

  data = cfg.get("data") if hasattr(cfg, "get") else None
  if data is not None:
    for key in ("global_batch_size", "eval_batch_size"):
      b = int_at_least(data, "data", key, 1)
      if b is not None and check_batch_split and data_axis_size and b % data_axis_size:
        bad(
          f"data.{key}",
          b,
          f"must be a multiple of the {data_axis_size} devices of the mesh's 'data' axis",
        )

  if errors:
    raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
