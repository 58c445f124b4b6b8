"""Experiment configs: ``experiments/<slug>/config.py`` presets plus ``--config.a.b=value`` overrides.

Every experiment module ``experiments/<slug>/config.py`` defines::

    PRESETS = ("smoke", "default", "paper")
    def get_config(preset: str) -> ml_collections.ConfigDict

and optionally ``validate(cfg)`` (raising :class:`ConfigError` that names the key; helpers in
:mod:`vision_jax.utils.config_checks`), and every launcher is ``python -m experiments.<slug>
--preset=P --workdir=DIR [--config.a.b=v ...]`` (see :func:`parse_launch_args`). Unknown presets
and unknown override keys raise :class:`ConfigError` listing the valid choices.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib
import os
from collections.abc import Sequence

import ml_collections


class ConfigError(ValueError):
  """A config, preset or override is invalid; the message says what and how to fix it."""


def _flat_keys(cfg: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  keys = []
  for k, v in cfg.items():
    name = f"{prefix}{k}"
    if isinstance(v, ml_collections.ConfigDict):
      keys.extend(_flat_keys(v, name + "."))
    else:
      keys.append(name)
  return keys


def _parse_value(raw: str, old):
  """Parses ``raw`` to the type of the existing value ``old``."""
  if isinstance(old, bool):
    low = raw.lower()
    if low in ("1", "true", "yes", "on"):
      return True
    if low in ("0", "false", "no", "off"):
      return False
    raise ConfigError(f"expected a boolean (true/false), got {raw!r}")
  if isinstance(old, str):
    return raw
  try:
    value = ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    if old is None:
      return raw
    raise ConfigError(f"could not parse {raw!r} as a {type(old).__name__}") from None
  if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if isinstance(old, tuple) and isinstance(value, list):
    value = tuple(value)
  if isinstance(old, list) and isinstance(value, tuple):
    value = list(value)
  if old is not None and not isinstance(value, type(old)):
    raise ConfigError(f"expected a {type(old).__name__}, got {raw!r} ({type(value).__name__})")
  return value


def apply_overrides(
  cfg: ml_collections.ConfigDict, overrides: dict[str, str]
) -> ml_collections.ConfigDict:
  """Applies ``{"a.b": "value"}`` string overrides, typed like the existing fields.

  Raises:
    ConfigError: for an unknown key (listing close matches and all valid keys) or a value that
      does not parse to the field's type.
  """
  valid = _flat_keys(cfg)
  for key, raw in overrides.items():
    if key not in valid:
      close = difflib.get_close_matches(key, valid, n=3)
      hint = f" Did you mean {', '.join(close)}?" if close else ""
      raise ConfigError(f"unknown config key {key!r}.{hint} Valid keys: {', '.join(sorted(valid))}")
    *parents, leaf = key.split(".")
    node = cfg
    for p in parents:
      node = node[p]
    try:
      value = _parse_value(raw, node[leaf])
    except ConfigError as e:
      raise ConfigError(f"--config.{key}={raw}: {e}") from None
    with cfg.unlocked():
      node[leaf] = value
  return cfg


def load_config(slug: str, preset: str, overrides: dict[str, str] | None = None):
  """Loads ``experiments/<slug>/config.py`` preset ``preset``, applies overrides, validates.

  When the config module defines ``validate(cfg)``, it runs on the resolved config before the
  experiment does any work, so a bad value of an experiment's own field fails at launch.

  Raises:
    ConfigError: unknown experiment / preset / key, an unparsable override, or a value that the
      experiment's ``validate`` rejects (the message names ``--config.<key>`` and its value).
  """
  try:
    mod = importlib.import_module(f"experiments.{slug}.config")
  except ModuleNotFoundError as e:
    raise ConfigError(f"no experiment {slug!r}: {e}") from None
  presets = tuple(getattr(mod, "PRESETS", ("smoke", "default", "paper")))
  if preset not in presets:
    raise ConfigError(
      f"unknown preset {preset!r} for experiment {slug!r}; valid presets: {', '.join(presets)}"
    )
  cfg = mod.get_config(preset)
  with cfg.unlocked():
    cfg.preset = preset
  cfg = apply_overrides(cfg, overrides or {})
  validate = getattr(mod, "validate", None)
  if validate is not None:
    validate(cfg)
  return cfg


def parse_launch_args(slug: str, argv: Sequence[str] | None = None):
  """Parses ``--preset --workdir [--config.k=v ...] [--distributed] [--compilation_cache DIR]
  [--host_allocator tuned|default] [--allow_config_change]``.

  Returns:
    ``(config, args)`` where ``args`` has ``workdir``, ``preset``, ``distributed``,
    ``compilation_cache``, ``host_allocator`` and ``allow_config_change``. The resolved preset
    name is stored in ``config.preset``.
  """
  parser = argparse.ArgumentParser(prog=f"python -m experiments.{slug}")
  parser.add_argument("--preset", default="default", help="smoke | default | paper")
  parser.add_argument("--workdir", default=None, help=f"output dir (default runs/{slug}/<preset>)")
  parser.add_argument(
    "--distributed",
    action="store_true",
    default=os.environ.get("VISION_JAX_DISTRIBUTED", "") == "1",
    help="call jax.distributed.initialize() first (multi-host TPU/GPU); env VISION_JAX_DISTRIBUTED=1",
  )
  parser.add_argument(
    "--compilation_cache",
    default=os.environ.get("VISION_JAX_COMPILATION_CACHE"),
    help="persistent XLA compilation cache dir (env VISION_JAX_COMPILATION_CACHE)",
  )
  parser.add_argument(
    "--host_allocator",
    choices=("tuned", "default"),
    default=os.environ.get("VISION_JAX_HOST_ALLOCATOR", "tuned"),
    help="tuned: keep freed host memory for reuse (vision_jax.utils.host_memory; avoids "
    "re-page-faulting XLA:CPU buffers every step); default: glibc's own policy. "
    "Env VISION_JAX_HOST_ALLOCATOR",
  )
  parser.add_argument(
    "--allow_config_change",
    action="store_true",
    default=os.environ.get("VISION_JAX_ALLOW_CONFIG_CHANGE", "") == "1",
    help="resume a workdir whose checkpoints were written with another config (keys other than "
    "vision_jax.train.workdir.SAFE_TO_CHANGE, e.g. optim.lr or seed); a change of the model or "
    "optimiser that alters the train state still cannot resume. Env "
    "VISION_JAX_ALLOW_CONFIG_CHANGE=1",
  )
  args, rest = parser.parse_known_args(argv)
  overrides = {}
  for item in rest:
    if not item.startswith("--config."):
      parser.error(f"unrecognised argument {item!r}; overrides look like --config.a.b=value")
    body = item[len("--config.") :]
    if "=" not in body:
      parser.error(f"override {item!r} needs a value: --config.{body}=VALUE")
    k, v = body.split("=", 1)
    overrides[k] = v
  cfg = load_config(slug, args.preset, overrides)
  if args.workdir is None:
    args.workdir = os.path.join("runs", slug, args.preset)
  return cfg, args
