"""Array helpers the whole library shares: concreteness tests for host-side validation, and the
mask-aware mean every task reduces its per-example values with."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def is_concrete(x: Any) -> bool:
  """True when ``x`` holds a value (not a tracer under jit/grad/vmap).

  Public entries validate values only when this holds, so traced code stays free of host syncs.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> is_concrete(jnp.ones(2))
    True
    >>> jax.jit(lambda x: x if is_concrete(x) else -x)(jnp.ones(2))  # traced: not concrete
    Array([-1., -1.], dtype=float32)
  """
  return not isinstance(x, jax.core.Tracer)


def masked_mean(
  x: jax.typing.ArrayLike, mask: jax.typing.ArrayLike | None = None, axis: int | None = None
) -> jax.Array:
  """Mean of ``x`` over the entries where ``mask`` is True (0 where none is).

  .. math::
    \\bar x = \\frac{\\sum_i m_i x_i}{\\max(1, \\sum_i m_i)}

  Args:
    x: values ``[*M, *F]``.
    mask: ``[*M]`` bool (or 0/1) over the leading axes of ``x``, broadcast over its trailing
      ``F`` axes (a ``[B, N]`` node mask for ``[B, N, D]`` features); ``None`` = plain mean.
    axis: the axis (or axes) to reduce; ``None`` reduces all of them.

  Returns:
    float32 (or wider) array: ``x`` reduced over ``axis``.

  Raises:
    ValueError: ``mask`` has more axes than ``x`` or is not a leading-axes prefix of it.

  Example:
    >>> import jax.numpy as jnp
    >>> masked_mean(jnp.array([1.0, 2.0, 9.0]), jnp.array([True, True, False]))
    Array(1.5, dtype=float32)
  """
  x = jnp.asarray(x)
  if mask is None:
    return jnp.mean(x, axis=axis)
  m = jnp.asarray(mask).astype(jnp.float32)
  if m.ndim > x.ndim or x.shape[: m.ndim] != m.shape:
    raise ValueError(
      f"mask shape {m.shape} must be the leading axes of x's shape {x.shape} (e.g. [B] for "
      "per-example values [B], [B, N] for features [B, N, D])."
    )
  m = m.reshape(m.shape + (1,) * (x.ndim - m.ndim))
  return jnp.sum(x * m, axis=axis) / jnp.maximum(jnp.sum(m, axis=axis), 1.0)
