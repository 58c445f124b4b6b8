"""Array helpers the whole library shares: concreteness tests for host-side validation, and the
mask-aware mean every task reduces its per-example values with."""

from __future__ import annotations

from typing import Any

import jax


def is_concrete(x: Any) -> bool:
  """True when ``x`` holds a value (not a tracer under jit/grad/vmap).

  Public entries validate values only when this holds, so traced code stays free of host syncs.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> is_concrete(jnp.ones(2)), jax.jit(lambda x: is_concrete(x))(jnp.ones(2))
    (True, False)
  """
  return not isinstance(x, jax.core.Tracer)
