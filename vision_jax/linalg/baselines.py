"""Baselines for LR-PEA: plain power method, full ``eigh``, truncated (sparse) power method."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from vision_jax.linalg import _power
from vision_jax.linalg import operators as ops


class EigenvectorResult(NamedTuple):
  """Output of the vector baselines.

  Attributes:
    eigenvector: ``[p]`` unit vector, largest-magnitude entry positive.
    eigenvalue: ``[]`` Rayleigh quotient.
    num_iters: ``[]`` int32 operator applications in the loop (0 for ``eigh``).
    converged: ``[]`` bool.
    step_size: ``[]`` last :math:`\\lVert x_t - x_{t-1} \\rVert_2` (0 for ``eigh``).
    rayleigh_history: ``[max_iters]`` Rayleigh quotients (``[0]`` for ``eigh``).
  """

  eigenvector: jax.Array
  eigenvalue: jax.Array
  num_iters: jax.Array
  converged: jax.Array
  step_size: jax.Array
  rayleigh_history: jax.Array


@dataclasses.dataclass(frozen=True)
class _Identity:
  def __call__(self, y, carry):
    return y, carry


@dataclasses.dataclass(frozen=True)
class TopKTruncation:
  """Keeps the ``k`` entries of largest magnitude (Yuan & Zhang's truncation), zeros the rest."""

  k: int

  def __call__(self, y, carry):
    _, idx = jax.lax.top_k(jnp.abs(y), self.k)
    mask = jnp.zeros(y.shape, bool).at[idx].set(True)
    return jnp.where(mask, y, 0), carry


def _run(op, dim, init, num_restarts, key, max_iters, tol, project, warn, solver, init_project):
  _power.validate_iter_args(max_iters, tol, solver)
  dtype = ops.operator_dtype(op)
  if isinstance(init, str):
    if init != "random":
      raise ValueError(f"{solver}: init must be 'random' or an array, got {init!r}")
    if isinstance(num_restarts, bool) or not isinstance(num_restarts, int) or num_restarts < 1:
      raise ValueError(f"{solver}: num_restarts must be an int >= 1, got {num_restarts!r}")
    key = jax.random.key(0) if key is None else key
    x0s = jax.random.normal(key, (num_restarts, dim), dtype)
  else:
    x0s = _power.prepare_init(init, dim, dtype, "init", solver)
  x0s = jax.vmap(lambda x: init_project(x, None)[0])(x0s)
  x0s = x0s / jnp.linalg.norm(x0s, axis=1)[:, None]
  best, _ = _power.run_restarts(
    op, x0s, jnp.zeros((), dtype), jnp.asarray(tol, dtype), project=project, max_iters=max_iters
  )
  _power.check_result(best, solver=solver, max_iters=max_iters, tol=float(tol), warn=warn)
  return EigenvectorResult(
    _power.fix_sign(best.vector),
    best.eigenvalue,
    best.num_iters,
    best.converged,
    best.step_size,
    best.rayleigh_history,
  )


def _dim_of(operator, dim):
  if dim is not None:
    return int(dim)
  if ops.is_covariance_operator(operator):
    return operator.args[0].shape[1]
  if ops.is_dense_operator(operator):
    return operator.args[0].shape[0]
  if callable(operator):
    raise ValueError("dim is required for a generic callable operator (its input size)")
  return jnp.shape(operator)[0] if jnp.ndim(operator) == 2 else -1


def power_method(
  operator: jax.typing.ArrayLike | Callable[[jax.Array], jax.Array],
  *,
  dim: int | None = None,
  init: str | jax.typing.ArrayLike = "random",
  num_restarts: int = 1,
  key: jax.Array | None = None,
  max_iters: int = 1000,
  tol: float = 1e-5,
  warn: bool = True,
) -> EigenvectorResult:
  """Plain power method :math:`x_t = A x_{t-1} / \\lVert A x_{t-1} \\rVert_2`.

  Converges to the eigenvector of largest :math:`|\\lambda|` at rate
  :math:`|\\lambda_2 / \\lambda_1|` per step; same loop, stopping rule and outputs as
  :func:`~vision_jax.linalg.matricized_power_method` (it is that method with no truncation).
  The eigenvalue is returned with its sign; a negative one (the operator is not PSD, so it is
  not the maximum of :math:`x^\\top A x`) also raises an :class:`IndefiniteWarning`.

  Args:
    operator: ``[p, p]`` symmetric matrix or an operator / callable ``[p] -> [p]``.
    dim: ``p``, required only for a plain callable.
    init: ``"random"`` (Gaussian) or start vector(s) ``[p]`` / ``[k, p]``.
    num_restarts: random restarts (vmapped; best Rayleigh quotient kept).
    key: PRNG key (default ``jax.random.key(0)``).
    max_iters: iteration cap.
    tol: stop when :math:`\\lVert x_t - x_{t-1} \\rVert_2 \\le` tol.
    warn: warn on non-convergence and on a negative eigenvalue.

  Returns:
    :class:`EigenvectorResult`.

  Raises:
    ValueError: bad operator, init or iteration arguments, or NaN/inf produced.
  """
  solver = "power_method"
  p = _dim_of(operator, dim)
  op = ops.as_operator(operator, p)
  return _run(
    op, p, init, num_restarts, key, max_iters, tol, _Identity(), warn, solver, _Identity()
  )


def truncated_power_method(
  operator: jax.typing.ArrayLike | Callable[[jax.Array], jax.Array],
  cardinality: int,
  *,
  dim: int | None = None,
  init: str | jax.typing.ArrayLike = "random",
  num_restarts: int = 1,
  key: jax.Array | None = None,
  max_iters: int = 1000,
  tol: float = 1e-5,
  warn: bool = True,
) -> EigenvectorResult:
  """Truncated power method (TPower) for the :math:`k`-sparse leading eigenvector.

  .. math::
    y_t = A x_{t-1}, \\quad x_t = \\frac{\\mathrm{Truncate}(y_t, F_t)}
      {\\lVert \\mathrm{Truncate}(y_t, F_t) \\rVert_2}, \\quad
    F_t = \\text{indices of the } k \\text{ largest } |y_{t,i}|.

  The sparse-PCA competitor of LR-PEA: it should fail when the true eigenvector is dense.

  Choice: the start is truncated to its top-``k`` entries before the first step (so it is
  feasible, as in Yuan & Zhang); pass the PCA eigenvector as ``init`` for their recommended
  warm start.

  Args:
    operator: as in :func:`power_method`.
    cardinality: ``k``, number of nonzeros kept, ``1 <= k <= p``.
    dim, init, num_restarts, key, max_iters, tol, warn: as in :func:`power_method`.

  Returns:
    :class:`EigenvectorResult` with a ``k``-sparse eigenvector.

  Raises:
    ValueError: bad cardinality or any error of :func:`power_method`.

  References:
    Yuan, Zhang, "Truncated Power Method for Sparse Eigenvalue Problems", JMLR 14:899–925, 2013.
  """
  solver = "truncated_power_method"
  p = _dim_of(operator, dim)
  if isinstance(cardinality, bool) or not isinstance(cardinality, int) or not 1 <= cardinality <= p:
    raise ValueError(f"{solver}: cardinality must be an int in [1, p = {p}], got {cardinality!r}")
  op = ops.as_operator(operator, p)
  trunc = TopKTruncation(cardinality)
  return _run(op, p, init, num_restarts, key, max_iters, tol, trunc, warn, solver, trunc)


def eigh_top(matrix: jax.typing.ArrayLike, *, symmetry_rtol: float = 1e-4) -> EigenvectorResult:
  """Leading eigenpair of an explicit symmetric matrix by a full ``jnp.linalg.eigh``.

  :math:`O(p^3)` time, :math:`O(p^2)` memory — the exact reference for small ``p``.

  Args:
    matrix: ``[p, p]`` symmetric matrix.
    symmetry_rtol: relative asymmetry tolerated.

  Returns:
    :class:`EigenvectorResult` for the largest (algebraic) eigenvalue.

  Raises:
    ValueError: non-square, non-symmetric or non-finite matrix.
  """
  a = jnp.asarray(matrix)
  if a.ndim != 2:
    raise ValueError(f"eigh_top: matrix must be [p, p], got shape {a.shape}")
  op = ops.as_operator(a, a.shape[0], name="matrix", symmetry_rtol=symmetry_rtol)
  a = op.args[0]
  w, v = jnp.linalg.eigh((a + a.T) / 2)
  return EigenvectorResult(
    _power.fix_sign(v[:, -1]),
    w[-1],
    jnp.int32(0),
    jnp.bool_(True),
    jnp.zeros((), w.dtype),
    w[-1:],
  )
