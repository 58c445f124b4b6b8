"""LR-PEA and baselines reject bad input with messages naming the argument and value."""

import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax import linalg as L


def _spd(p, seed=0):
  g = np.random.default_rng(seed).normal(size=(p, p))
  return (g @ g.T / p + np.eye(p)).astype(np.float32)


def test_shape_mismatch_dense():
  with pytest.raises(ValueError, match=r"dimension 12 but shape implies p1\*p2 = 15"):
    L.matricized_power_method(_spd(12), (3, 5), 1)


def test_shape_mismatch_covariance_and_callable():
  x = np.ones((4, 12), np.float32)
  with pytest.raises(ValueError, match="12 columns but shape implies p1\\*p2 = 16"):
    L.matricized_power_method(L.covariance_operator(x), (4, 4), 1)
  a = jnp.asarray(_spd(12))
  with pytest.raises(ValueError, match="p1\\*p2 = 16"):
    L.matricized_power_method(lambda v: a @ v, (4, 4), 1)


def test_bad_shape_argument():
  with pytest.raises(ValueError, match="shape must be a pair of positive ints"):
    L.matricized_power_method(_spd(12), (12,), 1)
  with pytest.raises(ValueError, match="shape must be a pair"):
    L.matricized_power_method(_spd(12), (0, 12), 1)


@pytest.mark.parametrize("rank", [0, -1, 4, 2.0, True])
def test_rank_out_of_range(rank):
  with pytest.raises(
    ValueError, match=r"1 <= rank <= min\(p1, p2\) = 3 .*got " + repr(rank).replace(".", r"\.")
  ):
    L.matricized_power_method(_spd(12), (3, 4), rank)


def test_non_symmetric_matrix():
  a = _spd(12)
  a[0, 5] += 1.0
  with pytest.raises(ValueError, match=r"not symmetric: max\|A - A\^T\| = 1"):
    L.matricized_power_method(a, (3, 4), 1)
  with pytest.raises(ValueError, match="square"):
    L.matricized_power_method(np.ones((12, 11), np.float32), (3, 4), 1)


def test_nan_inputs():
  a = _spd(12)
  a[2, 2] = np.nan
  with pytest.raises(ValueError, match="NaN or inf"):
    L.matricized_power_method(a, (3, 4), 1)
  x = np.ones((5, 12), np.float32)
  x[1, 1] = np.inf
  with pytest.raises(ValueError, match="x \\(shape \\(5, 12\\)\\) contains NaN or inf"):
    L.covariance_operator(x)
  with pytest.raises(ValueError, match="init contains NaN"):
    L.matricized_power_method(_spd(12), (3, 4), 1, init=np.full(12, np.nan, np.float32))
  # A matvec that itself produces NaN is caught after the solve, never returned silently.
  with pytest.raises(ValueError, match="operator produced NaN/inf"):
    L.matricized_power_method(lambda v: v * jnp.nan, (3, 4), 1)


def test_non_convergence_flag_and_warning():
  # Two nearly equal top eigenvalues: the power iteration crawls, max_iters=3 cannot converge.
  p = 12
  q = np.linalg.qr(np.random.default_rng(1).normal(size=(p, p)))[0]
  lam = np.ones(p)
  lam[0], lam[1] = 2.0, 1.999
  a = ((q * lam[None, :]) @ q.T).astype(np.float32)
  with pytest.warns(L.ConvergenceWarning, match="max_iters=3 reached"):
    res = L.matricized_power_method(a, (3, 4), 3, max_iters=3)
  assert not bool(res.converged) and int(res.num_iters) == 3
  assert float(res.step_size) > 1e-5
  with pytest.warns(L.ConvergenceWarning, match="power_method did not converge"):
    pm = L.power_method(a, max_iters=3)
  assert not bool(pm.converged)


def test_bad_iteration_and_init_arguments():
  a = _spd(12)
  with pytest.raises(ValueError, match="max_iters must be an int >= 1, got 0"):
    L.matricized_power_method(a, (3, 4), 1, max_iters=0)
  with pytest.raises(ValueError, match="tol must be a positive finite float, got -1"):
    L.matricized_power_method(a, (3, 4), 1, tol=-1)
  with pytest.raises(ValueError, match=r"init must have shape \[12\] or \[k, 12\], got \(7,\)"):
    L.matricized_power_method(a, (3, 4), 1, init=np.ones(7, np.float32))
  with pytest.raises(ValueError, match="zero start vector"):
    L.matricized_power_method(a, (3, 4), 1, init=np.zeros(12, np.float32))
  with pytest.raises(ValueError, match="init must be 'random', 'kronecker' or an array, got 'pca'"):
    L.matricized_power_method(a, (3, 4), 1, init="pca")
  with pytest.raises(ValueError, match="svd must be 'auto', 'full' or 'randomized', got 'lanczos'"):
    L.matricized_power_method(a, (3, 4), 1, svd="lanczos")
  with pytest.raises(ValueError, match="init='kronecker' needs the operator's partial traces"):
    L.matricized_power_method(lambda v: v, (3, 4), 1, init="kronecker")
  with pytest.raises(ValueError, match=r"cardinality must be an int in \[1, p = 12\], got 13"):
    L.truncated_power_method(a, 13)
  with pytest.raises(ValueError, match=r"k must be an int in \[1, p1\*p2 = 12\], got 0"):
    L.top_k_eigenmatrices(a, (3, 4), 1, 0)


def test_negative_definite_warns_and_returns_signed_largest_magnitude():
  # A = -S with S SPD: every eigenvalue negative. The power iteration converges to the one of
  # largest magnitude, -lambda_max(S), which is the *minimum* of x^T A x, not its maximum.
  s = _spd(12, seed=3)
  a = -s
  lam = np.linalg.eigvalsh(a.astype(np.float64))
  with pytest.warns(L.IndefiniteWarning, match=r"eigenvalue found is negative \(lambda = -"):
    res = L.matricized_power_method(a, (3, 4), 3, max_iters=2000, tol=1e-6)
  assert bool(res.converged)
  np.testing.assert_allclose(float(res.eigenvalue), lam[0], rtol=1e-4)  # most negative
  assert float(res.eigenvalue) < lam[-1]  # not the argmax of x^T A x
  with pytest.warns(L.IndefiniteWarning, match="power_method"):
    pm = L.power_method(a, max_iters=2000, tol=1e-6)
  np.testing.assert_allclose(float(pm.eigenvalue), lam[0], rtol=1e-4)
  # The documented fix: shift by c >= |lambda| to get the largest algebraic eigenvalue.
  c = float(-res.eigenvalue)
  shifted = L.matricized_power_method(
    a + c * np.eye(12, dtype=np.float32), (3, 4), 3, max_iters=20000, tol=1e-5
  )
  np.testing.assert_allclose(float(shifted.eigenvalue) - c, lam[-1], rtol=1e-3, atol=1e-3)


def test_psd_and_indefinite_with_positive_dominant_do_not_warn():
  import warnings

  q = np.linalg.qr(np.random.default_rng(2).normal(size=(12, 12)))[0]
  lam = np.linspace(-1.0, 3.0, 12)  # indefinite, dominant eigenvalue positive
  a = ((q * lam[None, :]) @ q.T).astype(np.float32)
  with warnings.catch_warnings():
    warnings.simplefilter("error", L.IndefiniteWarning)
    res = L.matricized_power_method(a, (3, 4), 3, max_iters=3000, tol=1e-6)
  np.testing.assert_allclose(float(res.eigenvalue), 3.0, rtol=1e-3)


def test_negative_warning_follows_warn_flag():
  import warnings

  with warnings.catch_warnings():
    warnings.simplefilter("error")
    L.matricized_power_method(-_spd(12), (3, 4), 3, max_iters=2000, warn=False)


@pytest.mark.parametrize("rank", [4, 0, 2.0])
def test_kronecker_init_rank_out_of_range(rank):
  op = L.dense_operator(_spd(12))
  with pytest.raises(
    ValueError,
    match=r"kronecker_init: rank must be an int with 1 <= rank <= "
    r"min\(p1, p2\) = 3 for shape \(3, 4\), got " + repr(rank).replace(".", r"\."),
  ):
    L.kronecker_init(op, (3, 4), rank)


def test_kronecker_init_shape_and_operator():
  with pytest.raises(
    ValueError,
    match=r"kronecker_init: op has dimension 12 but shape implies "
    r"p1\*p2 = 16",
  ):
    L.kronecker_init(_spd(12), (4, 4), 1)
  with pytest.raises(ValueError, match="kronecker_init: shape must be a pair"):
    L.kronecker_init(_spd(12), (12,), 1)
  with pytest.raises(ValueError, match="needs the operator's partial traces"):
    L.kronecker_init(lambda v: v, (3, 4), 1)
  x0 = L.kronecker_init(_spd(12), (3, 4), 2)  # a plain matrix is accepted too
  assert x0.shape == (12,) and abs(float(jnp.linalg.norm(x0)) - 1) < 1e-5


def test_deflated_operator_basis_dimension():
  a = _spd(12)
  for op in (L.dense_operator(a), L.covariance_operator(np.ones((5, 12), np.float32))):
    with pytest.raises(
      ValueError,
      match=r"basis has shape \(2, 10\) \(p = 10\) but the operator "
      r"has dimension p = 12",
    ):
      L.deflated_operator(op, np.zeros((2, 10), np.float32))
  aj = jnp.asarray(a)
  with pytest.raises(ValueError, match=r"basis .*\(10,\)"):
    L.deflated_operator(lambda v: aj @ v, np.zeros((2, 10), np.float32))
  with pytest.raises(ValueError, match=r"basis must be \[k, p\] rows, got shape \(1, 2, 12\)"):
    L.deflated_operator(L.dense_operator(a), np.zeros((1, 2, 12), np.float32))
