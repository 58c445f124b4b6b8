"""Run metadata: package versions, device description, JSON helpers."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from typing import Any

_PACKAGES = (
  "jax",
  "jaxlib",
  "flax",
  "optax",
  "orbax-checkpoint",
  "chex",
  "tensorflow-datasets",
  "grain",
  "ml_collections",
  "numpy",
)


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
  """Versions of the core packages (and ``extra``), plus Python and the JAX devices."""
  out = {"python": platform.python_version()}
  for name in _PACKAGES + tuple(extra):
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = "not installed"
  try:
    import jax

    devs = jax.devices()
    out["devices"] = f"{len(devs)} x {devs[0].device_kind} ({devs[0].platform})"
    out["process_count"] = str(jax.process_count())
  except Exception as e:  # pragma: no cover - reporting only
    out["devices"] = f"unavailable: {e}"
  return out


def _default(o: Any):
  try:
    import numpy as np

    if isinstance(o, np.generic):
      return o.item()
    if isinstance(o, np.ndarray):
      return o.tolist()
  except ImportError:  # pragma: no cover
    pass
  if hasattr(o, "to_dict"):
    return o.to_dict()
  return str(o)


def save_json(path: str, obj: Any) -> None:
  """Writes ``obj`` as indented JSON atomically (tmp file + rename)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, default=_default, sort_keys=True)
  os.replace(tmp, path)
