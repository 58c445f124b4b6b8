"""Shared utilities: config presets + overrides, run metadata."""

from vision_jax.utils.config import (
  ConfigError,
  apply_overrides,
  load_config,
  parse_launch_args,
)
from vision_jax.utils.launch import launch
from vision_jax.utils.runinfo import package_versions, save_json

__all__ = [
  "ConfigError",
  "apply_overrides",
  "launch",
  "load_config",
  "package_versions",
  "parse_launch_args",
  "save_json",
]
