"""Shape and value checks for the detection entry points (static shapes: safe under jit)."""

from __future__ import annotations

import jax.numpy as jnp

from vision_jax.losses._validate import check_scalar

__all__ = ["check_boxes", "check_scalar", "check_shape"]


def check_boxes(name: str, x, *, ndim: int = 2) -> tuple[int, ...]:
  """Raises ValueError unless ``x`` has rank ``ndim`` and a last axis of 4; returns its shape."""
  shape = tuple(jnp.shape(x))
  if len(shape) != ndim or shape[-1] != 4:
    want = "[N, 4]" if ndim == 2 else f"rank {ndim} with last axis 4"
    raise ValueError(f"{name} must have shape {want} (x1, y1, x2, y2); got shape {shape}.")
  if not jnp.issubdtype(jnp.result_type(x), jnp.number):
    raise TypeError(f"{name} must be numeric; got dtype {jnp.result_type(x)}.")
  return shape


def check_shape(name: str, x, expected: tuple[int, ...]) -> None:
  """Raises ValueError unless ``jnp.shape(x) == expected``."""
  if tuple(jnp.shape(x)) != tuple(expected):
    raise ValueError(f"{name} must have shape {tuple(expected)}; got {tuple(jnp.shape(x))}.")
