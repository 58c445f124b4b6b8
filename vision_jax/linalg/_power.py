"""Shared engine of the (projected) power methods: one ``lax.while_loop``, vmapped restarts.

Every method here is the iteration

.. math::
  y_t = A x_{t-1}, \\qquad x_t = \\mathcal{P}(y_t) / \\lVert \\mathcal{P}(y_t) \\rVert_2,

with :math:`\\mathcal{P}` the identity (power method), the best rank-:math:`r` approximation of
the matricized vector (LR-PEA) or the top-:math:`k` entries (TPower). Sign is carried over from
step to step so that negative eigenvalues do not make the iterate flip.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from vision_jax.utils.arrays import is_concrete

Project = Callable[[jax.Array, object], tuple[jax.Array, object]]


class ConvergenceWarning(UserWarning):
  """A power-type solver stopped at ``max_iters`` before meeting its tolerance."""


class IndefiniteWarning(UserWarning):
  """A power-type solver returned a negative eigenvalue: the operator is not PSD, and the
  power iteration finds the eigenvalue of largest magnitude, not the maximum of ``x^T A x``."""


class LoopOut(NamedTuple):
  vector: jax.Array  # [p] unit
  eigenvalue: jax.Array  # [] Rayleigh quotient of ``vector``
  num_iters: jax.Array  # [] int32
  converged: jax.Array  # [] bool
  step_size: jax.Array  # [] last ||x_t - s x_{t-1}||
  rayleigh_history: jax.Array  # [max_iters]


def power_loop(
  op, x0: jax.Array, carry0, project: Project, *, max_iters: int, tol: jax.Array
) -> LoopOut:
  """Runs the projected power iteration from one start ``x0`` (unit, already feasible).

  ``rayleigh_history[t]`` is :math:`x_t^\\top A x_t` for ``t < num_iters`` and the final
  eigenvalue afterwards (so the array is fixed-size and jit-friendly).
  """
  dtype = x0.dtype

  def cond(state):
    it, _, _, delta, _ = state
    return (it < max_iters) & (delta > tol)

  def body(state):
    it, x, carry, _, hist = state
    y = op(x)
    hist = hist.at[it].set(jnp.vdot(x, y))
    z, carry = project(y, carry)
    nrm = jnp.linalg.norm(z)
    # A zero image (x in the null space) has nowhere to go: stay put and report the fixed point.
    z = jnp.where(nrm > 0, z / jnp.where(nrm > 0, nrm, 1), x)
    sign = jnp.where(jnp.vdot(z, x) < 0, -1, 1).astype(dtype)
    z = sign * z
    delta = jnp.linalg.norm(z - x)
    return it + 1, z, carry, delta, hist

  state0 = (
    jnp.int32(0),
    x0,
    carry0,
    jnp.asarray(jnp.inf, dtype),
    jnp.zeros((max_iters,), dtype),
  )
  it, x, _, delta, hist = lax.while_loop(cond, body, state0)
  lam = jnp.vdot(x, op(x))
  hist = jnp.where(jnp.arange(max_iters) < it, hist, lam)
  return LoopOut(x, lam, it, delta <= tol, delta, hist)


@functools.partial(jax.jit, static_argnames=("project", "max_iters"))
def run_restarts(
  op, x0s, carry0, tol, *, project: Project, max_iters: int
) -> tuple[LoopOut, LoopOut]:
  """vmaps :func:`power_loop` over starts ``x0s [k, p]``; returns (best, all) by Rayleigh quotient."""
  fn = lambda x0: power_loop(op, x0, carry0, project, max_iters=max_iters, tol=tol)
  outs = jax.vmap(fn)(x0s)
  # Prefer converged restarts; among those the largest Rayleigh quotient.
  score = jnp.where(outs.converged, outs.eigenvalue, -jnp.inf)
  score = jnp.where(jnp.any(outs.converged), score, outs.eigenvalue)
  best = jnp.argmax(score)
  return jax.tree_util.tree_map(lambda a: a[best], outs), outs


def fix_sign(v: jax.Array) -> jax.Array:
  """Makes the entry of largest magnitude positive (a deterministic sign for ``[..., p]``)."""
  idx = jnp.argmax(jnp.abs(v), axis=-1)
  pivot = jnp.take_along_axis(v, idx[..., None], axis=-1)
  return v * jnp.where(pivot < 0, -1, 1).astype(v.dtype)


def check_result(out: LoopOut, *, solver: str, max_iters: int, tol: float, warn: bool) -> None:
  """Raises on non-finite output; warns (never silently) when the loop hit ``max_iters`` and
  when the eigenvalue found is negative (:class:`IndefiniteWarning`)."""
  if not is_concrete(out.eigenvalue):
    return
  if not bool(jnp.isfinite(out.eigenvalue)) or not bool(jnp.all(jnp.isfinite(out.vector))):
    raise ValueError(
      f"{solver}: the operator produced NaN/inf (eigenvalue estimate {float(out.eigenvalue)}); "
      "check the operator / data for non-finite values or overflow"
    )
  lam = float(out.eigenvalue)
  if warn and lam < 0:
    # Free check (the Rayleigh quotient is already computed): a negative value means A has an
    # eigenvalue -|lam| and is not PSD; the iteration then converges to the largest |eigenvalue|.
    warnings.warn(
      f"{solver}: the eigenvalue found is negative (lambda = {lam:.6g}), so the operator is not "
      "positive semi-definite. The power iteration converges to the eigenvalue of largest "
      "magnitude (returned with its sign), which is not the maximum of x^T A x. For the largest "
      f"algebraic eigenvalue, pass the shifted operator A + c I with c >= {-lam:.3g} and "
      "subtract c from the result.",
      IndefiniteWarning,
      stacklevel=3,
    )
  if warn and not bool(out.converged):
    warnings.warn(
      f"{solver} did not converge: max_iters={max_iters} reached with last step "
      f"||x_t - x_(t-1)|| = {float(out.step_size):.3g} > tol={tol:g}; the result is the last "
      "iterate (result.converged is False). Increase max_iters, loosen tol, or use a better init.",
      ConvergenceWarning,
      stacklevel=3,
    )


def validate_iter_args(max_iters, tol, solver: str) -> None:
  if isinstance(max_iters, bool) or not isinstance(max_iters, int) or max_iters < 1:
    raise ValueError(f"{solver}: max_iters must be an int >= 1, got {max_iters!r}")
  try:
    tol_f = float(tol)
  except (TypeError, ValueError):
    raise ValueError(f"{solver}: tol must be a positive float, got {tol!r}") from None
  if not (tol_f > 0 and tol_f < float("inf")):
    raise ValueError(f"{solver}: tol must be a positive finite float, got {tol!r}")


def prepare_init(init, dim: int, dtype, name: str, solver: str) -> jax.Array:
  """Checks a user init array ``[p]`` / ``[k, p]`` (or matrix forms, reshaped by the caller)."""
  x = jnp.asarray(init)
  if x.ndim == 1:
    x = x[None, :]
  if x.ndim != 2 or x.shape[1] != dim:
    raise ValueError(
      f"{solver}: {name} must have shape [{dim}] or [k, {dim}], got {jnp.shape(init)}"
    )
  x = x.astype(dtype)
  if is_concrete(x):
    if not bool(jnp.all(jnp.isfinite(x))):
      raise ValueError(f"{solver}: {name} contains NaN or inf")
    if bool(jnp.any(jnp.linalg.norm(x, axis=1) == 0)):
      raise ValueError(f"{solver}: {name} has a zero start vector; pass a nonzero vector")
  return x / jnp.linalg.norm(x, axis=1)[:, None]
