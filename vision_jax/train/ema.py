"""Exponential moving average of a pytree: the momentum network of DMUH (and of any method that
keeps a slowly moving copy of its weights in ``TrainState.extra``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def ema_update(ema_params, params, *, momentum: float):
  r"""Momentum (EMA) update of a parameter pytree:

  .. math::
    \tilde\theta \leftarrow m\,\tilde\theta + (1 - m)\,\theta

  Args:
    ema_params: pytree of the moving copy :math:`\tilde\theta` (any float dtypes).
    params: pytree of the trained network :math:`\theta` (same structure and leaf shapes).
    momentum: :math:`m \in [0, 1]`; 1 keeps the EMA frozen, 0 copies ``params``.

  Returns:
    The new EMA pytree (same dtypes as ``ema_params``). No gradient flows into it.

  Raises:
    ValueError: ``momentum`` outside [0, 1] (checked when it is a Python number), or trees of
      different structure / leaf shapes (the message shows both).

  Choice: the blend is computed in float32 and cast back to each EMA leaf's dtype, so a bfloat16
  copy does not lose the small :math:`(1 - m)` steps to rounding in the product. ``optax``'s
  ``incremental_update(new, old, step_size)`` weights the other way round (``step_size`` is
  :math:`1 - m`) and computes in the leaves' dtype; we keep ``momentum`` as the paper writes it.

  Example:
    >>> import jax.numpy as jnp
    >>> ema_update({"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([3.0, 0.0])}, momentum=0.75)
    {'w': Array([1.5, 1.5], dtype=float32)}
  """
  if isinstance(momentum, int | float) and not 0.0 <= momentum <= 1.0:
    raise ValueError(f"momentum must be in [0, 1], got {momentum}.")
  s_ema, s_params = jax.tree.structure(ema_params), jax.tree.structure(params)
  if s_ema != s_params:
    raise ValueError(
      f"ema_params and params must have the same tree structure; got ema_params {s_ema} and "
      f"params {s_params}. Initialise the EMA as a copy of params."
    )
  for path, e, p in zip(
    jax.tree_util.tree_leaves_with_path(ema_params),
    jax.tree.leaves(ema_params),
    jax.tree.leaves(params),
  ):
    if jnp.shape(e) != jnp.shape(p):
      raise ValueError(
        f"ema_params{jax.tree_util.keystr(path[0])} has shape {jnp.shape(e)} but params has "
        f"{jnp.shape(p)}."
      )
  return jax.tree.map(
    lambda e, p: jax.lax.stop_gradient(
      (momentum * e.astype(jnp.float32) + (1.0 - momentum) * p.astype(jnp.float32)).astype(e.dtype)
    ),
    ema_params,
    params,
  )
