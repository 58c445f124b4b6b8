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
