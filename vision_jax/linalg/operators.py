"""Symmetric linear operators for the power-method family: dense matrices and data covariances.

An operator is a :class:`jax.tree_util.Partial` whose array arguments are pytree leaves, so a
jitted solver takes it as an ordinary (traced) argument: a new data matrix of the same shape
reuses the compiled program instead of baking ``X`` into the executable as a constant.

Vec convention (used by every function in :mod:`vision_jax.linalg`): a vector
:math:`v \\in \\mathbb{R}^{p_1 p_2}` and a matrix :math:`V \\in \\mathbb{R}^{p_1 \\times p_2}` are
related by row-major reshaping, :math:`v_{i p_2 + j} = V_{ij}`, i.e. ``v = V.reshape(-1)``. Under
it :math:`\\mathrm{vec}(a b^\\top) = a \\otimes b`, so the top eigenvector
:math:`u_1 \\otimes w_1` of a Kronecker covariance :math:`\\Sigma_1 \\otimes \\Sigma_2` is the
rank-1 matrix :math:`u_1 w_1^\\top`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from vision_jax.utils.arrays import is_concrete

Operator = Partial


def _dense_matvec(a: jax.Array, v: jax.Array) -> jax.Array:
  return a @ v


def _covariance_matvec(x: jax.Array, v: jax.Array) -> jax.Array:
  # Two thin products, O(n p), never the p x p covariance.
  return (x.T @ (x @ v)) / x.shape[0]


def _deflated_matvec(base: Partial, basis: jax.Array, v: jax.Array) -> jax.Array:
  # (I - B^T B) A (I - B^T B) v; zero rows of B are no-ops, so B can be padded to a fixed size.
  v = v - basis.T @ (basis @ v)
  y = base(v)
  return y - basis.T @ (basis @ y)


def dense_operator(matrix: jax.typing.ArrayLike) -> Operator:
  """Wraps an explicit symmetric matrix :math:`A` as the operator :math:`v \\mapsto A v`.

  Args:
    matrix: ``[p, p]`` symmetric matrix (not checked here; the solvers check it).

  Returns:
    A :class:`jax.tree_util.Partial` operator with the matrix as its pytree leaf.
  """
  return Partial(_dense_matvec, jnp.asarray(matrix))


def covariance_operator(x: jax.typing.ArrayLike, *, center: bool = False) -> Operator:
  """Matrix-free sample covariance :math:`v \\mapsto X^\\top (X v) / n` from data ``x``.

  Forms neither :math:`X^\\top X` nor any ``[p, p]`` array: each application costs two
  ``[n, p]`` matrix–vector products, :math:`O(np)` time and no extra memory, which is what makes
  :math:`p = 10^4`–:math:`10^6` feasible.

  Args:
    x: ``[n, p]`` data matrix, one sample per row.
    center: subtract the column means first (sample covariance with divisor ``n``). The spiked
      models of the LR-PEA experiment have mean zero, so the default uses the raw second moment.

  Returns:
    A :class:`jax.tree_util.Partial` operator holding ``x`` as its pytree leaf.

  Raises:
    ValueError: if ``x`` is not 2-D, has no rows, or contains NaN/inf.
  """
  x = jnp.asarray(x)
  if x.ndim != 2 or x.shape[0] < 1:
    raise ValueError(
      f"covariance_operator: x must be a [n, p] data matrix with n >= 1, got shape {x.shape}; "
      "pass one sample per row"
    )
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  if is_concrete(x) and not bool(jnp.all(jnp.isfinite(x))):
    raise ValueError(
      f"covariance_operator: x (shape {x.shape}) contains NaN or inf; clean or impute the data"
    )
  if center:
    x = x - jnp.mean(x, axis=0)[None, :]
  return Partial(_covariance_matvec, x)


def deflated_operator(operator: Operator, basis: jax.typing.ArrayLike) -> Operator:
  """Projection deflation :math:`(I - B^\\top B) A (I - B^\\top B)`.

  Args:
    operator: the operator :math:`A`.
    basis: ``[k, p]`` rows with orthonormal (or zero) rows :math:`B` to project out.

  Returns:
    The deflated operator. For a covariance operator the result is again a covariance operator
    (of the projected data :math:`X (I - B^\\top B)`), and for a dense operator a dense one, so
    structure-aware initialisations keep working after deflation.

  Raises:
    ValueError: ``basis`` not ``[k, p]`` (or ``[p]``) with ``p`` the operator's dimension.

  References:
    Mackey, "Deflation Methods for Sparse PCA", NeurIPS 2008.
  """
  basis = jnp.asarray(basis)
  if basis.ndim == 1:
    basis = basis[None, :]
  if basis.ndim != 2:
    raise ValueError(f"deflated_operator: basis must be [k, p] rows, got shape {basis.shape}")
  if is_covariance_operator(operator):
    dim = operator.args[0].shape[1]
  elif is_dense_operator(operator):
    dim = operator.args[0].shape[0]
  else:
    dim = None
    try:
      out = jax.eval_shape(operator, jax.ShapeDtypeStruct(basis.shape[1:], jnp.float32))
    except Exception as e:  # noqa: BLE001 - re-raised with context
      raise ValueError(
        f"deflated_operator: the operator cannot be applied to a basis row of shape "
        f"{basis.shape[1:]} ({type(e).__name__}: {e}); basis must be [k, p] with p the "
        "operator's dimension"
      ) from e
    if getattr(out, "shape", None) != basis.shape[1:]:
      dim = getattr(out, "shape", (None,))[0]
  if dim is not None and basis.shape[1] != dim:
    raise ValueError(
      f"deflated_operator: basis has shape {basis.shape} (p = {basis.shape[1]}) but the operator "
      f"has dimension p = {dim}; pass [k, {dim}] rows"
    )
  if is_covariance_operator(operator):
    (x,) = operator.args
    return Partial(_covariance_matvec, x - (x @ basis.T) @ basis)
  if is_dense_operator(operator):
    (a,) = operator.args
    proj = jnp.eye(a.shape[0], dtype=a.dtype) - basis.T @ basis
    return Partial(_dense_matvec, proj @ a @ proj)
  return Partial(_deflated_matvec, operator, basis)


def is_dense_operator(op) -> bool:
  return isinstance(op, Partial) and op.func is _dense_matvec


def is_covariance_operator(op) -> bool:
  return isinstance(op, Partial) and op.func is _covariance_matvec


def as_operator(
  operator: jax.typing.ArrayLike | Callable[[jax.Array], jax.Array],
  dim: int,
  *,
  name: str = "operator",
  symmetry_rtol: float = 1e-4,
) -> Operator:
  """Validates ``operator`` eagerly and returns it as a :class:`Partial`.

  Args:
    operator: an explicit ``[dim, dim]`` symmetric matrix, an operator from this module, or any
      callable ``v -> A v`` mapping ``[dim]`` to ``[dim]`` (a plain closure is wrapped as a
      static part of the jit cache key, so its captured arrays become compile-time constants;
      prefer :func:`covariance_operator` or a :class:`Partial` with array arguments).
    dim: the expected dimension :math:`p = p_1 p_2`.
    name: argument name used in error messages.
    symmetry_rtol: an explicit matrix must satisfy
      :math:`\\max|A - A^\\top| \\le \\mathrm{rtol} \\cdot \\max|A|`.

  Raises:
    ValueError: wrong shape, non-symmetric or non-finite explicit matrix, or a callable whose
      output shape is not ``[dim]``.
    TypeError: anything else.
  """
  if isinstance(operator, Partial) and (
    is_dense_operator(operator) or is_covariance_operator(operator)
  ):
    arr = operator.args[0]
    if is_dense_operator(operator):
      return as_operator(arr, dim, name=name, symmetry_rtol=symmetry_rtol)
    if arr.shape[1] != dim:
      raise ValueError(
        f"{name}: covariance data has {arr.shape[1]} columns but shape implies p1*p2 = {dim}; "
        "choose shape with p1*p2 equal to the number of features"
      )
    return operator
  if callable(operator):
    op = operator if isinstance(operator, Partial) else Partial(operator)
    try:
      out = jax.eval_shape(op, jax.ShapeDtypeStruct((dim,), jnp.float32))
    except Exception as e:  # noqa: BLE001 - re-raised with context
      raise ValueError(
        f"{name}: calling the matvec on a [{dim}] vector failed ({type(e).__name__}: {e}); "
        f"shape implies p1*p2 = {dim}, check that it matches the operator's dimension"
      ) from e
    if getattr(out, "shape", None) != (dim,):
      raise ValueError(
        f"{name}: matvec maps a [{dim}] vector to shape {getattr(out, 'shape', out)}, expected "
        f"({dim},); shape must satisfy p1*p2 = operator dimension"
      )
    return op
  try:
    a = jnp.asarray(operator)
  except TypeError:
    raise TypeError(
      f"{name} must be a [p, p] symmetric array or a callable v -> A v, got {type(operator).__name__}"
    ) from None
  if a.ndim != 2 or a.shape[0] != a.shape[1]:
    raise ValueError(f"{name} must be a square [p, p] matrix, got shape {a.shape}")
  if a.shape[0] != dim:
    raise ValueError(
      f"{name} has dimension {a.shape[0]} but shape implies p1*p2 = {dim}; "
      f"choose shape with p1*p2 == {a.shape[0]}"
    )
  if not jnp.issubdtype(a.dtype, jnp.floating):
    a = a.astype(jnp.float32)
  if is_concrete(a):
    an = np.asarray(a)
    if not np.all(np.isfinite(an)):
      raise ValueError(f"{name} contains NaN or inf ({int(np.sum(~np.isfinite(an)))} entries)")
    scale = float(np.max(np.abs(an))) if an.size else 0.0
    asym = float(np.max(np.abs(an - an.T))) if an.size else 0.0
    if asym > symmetry_rtol * scale + 1e-30:
      raise ValueError(
        f"{name} is not symmetric: max|A - A^T| = {asym:.3g} > {symmetry_rtol:g} * max|A| "
        f"(= {symmetry_rtol * scale:.3g}); pass (A + A.T) / 2 or a symmetric matrix"
      )
  return Partial(_dense_matvec, a)


def operator_dtype(op: Operator, default=jnp.float32):
  """The floating dtype the solver iterates in (float32 unless the operator holds float64)."""
  leaves = [x for x in jax.tree_util.tree_leaves(op) if hasattr(x, "dtype")]
  if not leaves:
    return jnp.dtype(default)
  return jnp.result_type(*[jnp.promote_types(x.dtype, jnp.float32) for x in leaves])
