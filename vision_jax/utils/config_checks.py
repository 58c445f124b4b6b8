"""Checks for an experiment's own config fields, used by each ``experiments/<slug>/config.py``
``validate(cfg)`` (which :func:`vision_jax.utils.load_config` calls before any work starts).

Every check reads a dotted key (``"closed.imbalance_ratios"``) and raises :class:`ConfigError`
naming ``--config.<key>``, the value seen and what is expected.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence

from vision_jax.utils.config import ConfigError


def get_key(cfg, key: str):
  """``cfg["a"]["b"]`` for ``key="a.b"``."""
  node = cfg
  for part in key.split("."):
    node = node[part]
  return node


def config_error(key: str, value, expected: str) -> ConfigError:
  """A :class:`ConfigError` that names the key, its value and what it should be."""
  return ConfigError(f"--config.{key}={value!r} is invalid: expected {expected}.")


def _interval(low, high, low_open, high_open) -> str:
  lo = "-inf" if low is None else f"{low:g}"
  hi = "inf" if high is None else f"{high:g}"
  left = "(" if low_open or low is None else "["
  right = ")" if high_open or high is None else "]"
  return f"{left}{lo}, {hi}{right}"


def _number_ok(v, low, high, low_open, high_open, integer) -> bool:
  if isinstance(v, bool) or not isinstance(v, numbers.Real):
    return False
  if integer and not isinstance(v, numbers.Integral):
    return False
  f = float(v)
  if not math.isfinite(f):
    return False
  if low is not None and (f <= low if low_open else f < low):
    return False
  if high is not None and (f >= high if high_open else f > high):
    return False
  return True


def check_number(
  cfg,
  key: str,
  *,
  low=None,
  high=None,
  low_open: bool = False,
  high_open: bool = False,
  integer: bool = False,
):
  """Checks that ``cfg.<key>`` is a finite (integer) number in the interval; returns it."""
  v = get_key(cfg, key)
  if not _number_ok(v, low, high, low_open, high_open, integer):
    kind = "an integer" if integer else "a finite number"
    raise config_error(key, v, f"{kind} in {_interval(low, high, low_open, high_open)}")
  return v


def check_numbers(
  cfg,
  key: str,
  *,
  low=None,
  high=None,
  low_open: bool = False,
  high_open: bool = False,
  integer: bool = False,
  allow_empty: bool = False,
) -> tuple:
  """Checks that ``cfg.<key>`` is a tuple of numbers, each as in :func:`check_number`."""
  v = get_key(cfg, key)
  kind = "integers" if integer else "finite numbers"
  expected = f"a {'' if allow_empty else 'non-empty '}tuple of {kind} in "
  expected += _interval(low, high, low_open, high_open)
  if isinstance(v, str) or not isinstance(v, Sequence) or (not v and not allow_empty):
    raise config_error(key, v, expected)
  for i, x in enumerate(v):
    if not _number_ok(x, low, high, low_open, high_open, integer):
      raise config_error(key, v, f"{expected} (element {i} is {x!r})")
  return tuple(v)


def check_choice(cfg, key: str, choices: Iterable[str]):
  """Checks that ``cfg.<key>`` is one of ``choices``; returns it."""
  choices = tuple(choices)
  v = get_key(cfg, key)
  if v not in choices:
    raise config_error(key, v, f"one of {', '.join(map(repr, choices))}")
  return v


def check_choices(cfg, key: str, choices: Iterable[str]) -> tuple[str, ...]:
  """Checks a non-empty selection (tuple, or comma-separated string) drawn from ``choices``.

  Returns:
    The selected names as a tuple (empty items of a comma string dropped).
  """
  choices = tuple(choices)
  v = get_key(cfg, key)
  items = tuple(s.strip() for s in v.split(",") if s.strip()) if isinstance(v, str) else v
  valid = f"a non-empty selection from {', '.join(map(repr, choices))}"
  if isinstance(items, str) or not isinstance(items, Sequence) or not items:
    raise config_error(key, v, valid)
  unknown = [s for s in items if s not in choices]
  if unknown:
    raise config_error(key, v, f"{valid} (unknown: {', '.join(map(repr, unknown))})")
  if len(set(items)) != len(items):
    raise config_error(key, v, f"{valid}, each at most once")
  return tuple(items)


def check_model(cfg, section: str = "model") -> None:
  """Checks an experiment's ``model`` section: name, and when present dtype, conv_impl, widths,
  hidden and embed_dim (the fields :func:`vision_jax.models.backbone_from_config` reads)."""
  from vision_jax.models import COMPUTE_DTYPES, CONV_IMPLS, MODEL_NAMES

  m = cfg[section]
  name = m.name
  if not isinstance(name, str) or name.lower().replace("-", "").replace("_", "") not in MODEL_NAMES:
    raise config_error(f"{section}.name", name, f"a model name: one of {', '.join(MODEL_NAMES)}")
  if "dtype" in m:
    check_choice(cfg, f"{section}.dtype", COMPUTE_DTYPES)
  if "conv_impl" in m:
    check_choice(cfg, f"{section}.conv_impl", CONV_IMPLS)
  if "widths" in m:
    check_numbers(cfg, f"{section}.widths", low=1, integer=True)
  for key in ("hidden", "embed_dim"):
    if key in m:
      check_number(cfg, f"{section}.{key}", low=1, integer=True)
