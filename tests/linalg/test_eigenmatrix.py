"""LR-PEA solver: known-answer tests against NumPy eigendecompositions and hand constructions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax import linalg as L


def _sin(vhat, v):
  vhat = np.asarray(vhat, np.float64).ravel()
  v = np.asarray(v, np.float64).ravel()
  c = abs(vhat @ v) / (np.linalg.norm(vhat) * np.linalg.norm(v))
  return float(np.sqrt(max(0.0, 1.0 - c * c)))


def _dist(vhat, v):
  """||vhat - s v|| for the best sign s: about the sine, accurate down to 1e-8."""
  vhat = np.asarray(vhat, np.float64).ravel()
  v = np.asarray(v, np.float64).ravel()
  return float(min(np.linalg.norm(vhat - v), np.linalg.norm(vhat + v)))


def _lowrank_unit(rng, p1, p2, r):
  u = np.linalg.qr(rng.normal(size=(p1, r)))[0]
  w = np.linalg.qr(rng.normal(size=(p2, r)))[0]
  m = u @ np.diag(np.linspace(1.0, 0.5, r)) @ w.T
  return m / np.linalg.norm(m)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_noiseless_spike_recovered(rank):
  rng = np.random.default_rng(rank)
  p1, p2 = 7, 5
  vmat = _lowrank_unit(rng, p1, p2, rank)
  v = vmat.ravel()
  a = 4.0 * np.outer(v, v) + np.eye(p1 * p2)
  res = L.matricized_power_method(a.astype(np.float32), (p1, p2), rank, tol=1e-6)
  assert bool(res.converged)
  assert _dist(res.vector, v) < 1e-6
  np.testing.assert_allclose(float(res.eigenvalue), 5.0, rtol=1e-6)
  # The estimate is a rank-r matrix with unit Frobenius norm and a positive largest entry.
  sv = np.linalg.svd(np.asarray(res.eigenmatrix, np.float64), compute_uv=False)
  assert np.all(sv[rank:] < 1e-6) and abs(np.sum(sv**2) - 1) < 1e-5
  em = np.asarray(res.eigenmatrix)
  assert em.ravel()[np.argmax(np.abs(em))] > 0


def test_circulant_top_eigenvector_is_constant_rank1():
  # Symmetric circulant with positive first row: top eigenvector is the constant (DFT k=0) vector.
  p1, p2 = 4, 6
  d = p1 * p2
  dist = np.minimum(np.arange(d), d - np.arange(d))
  row = 0.6**dist + 0.05
  c = np.stack([np.roll(row, i) for i in range(d)])
  lam_fft = np.fft.fft(row).real  # eigenvalues of a symmetric circulant
  res = L.matricized_power_method(c.astype(np.float32), (p1, p2), 1, tol=1e-6)
  assert _dist(res.vector, np.ones(d) / np.sqrt(d)) < 1e-5
  np.testing.assert_allclose(float(res.eigenvalue), lam_fft.max(), rtol=1e-5)
  np.testing.assert_allclose(lam_fft[0], lam_fft.max())


def test_circulant_fourier_eigenvector_rank2():
  # Circulant whose spectrum peaks at frequency k0: top eigenspace = span(cos, sin) at k0, every
  # member of which matricizes to rank 2 (cos(a+b) expansion, j = i*p2 + l).
  p1, p2, k0 = 5, 6, 3
  d = p1 * p2
  spec = 1.0 + np.zeros(d)
  spec[k0] = spec[d - k0] = 4.0
  spec[1] = spec[d - 1] = 2.0
  row = np.fft.ifft(spec).real
  c = np.stack([np.roll(row, i) for i in range(d)])
  j = np.arange(d)
  cosv = np.cos(2 * np.pi * k0 * j / d)
  sinv = np.sin(2 * np.pi * k0 * j / d)
  basis = np.linalg.qr(np.stack([cosv, sinv], 1))[0]
  assert np.linalg.matrix_rank(cosv.reshape(p1, p2), tol=1e-9) == 2
  res = L.matricized_power_method(c.astype(np.float32), (p1, p2), 2, tol=1e-6)
  vh = np.asarray(res.vector, np.float64)
  assert np.linalg.norm(basis.T @ vh) > 1 - 1e-6  # lies in the Fourier eigenspace
  np.testing.assert_allclose(float(res.eigenvalue), 4.0, rtol=1e-5)


@pytest.mark.parametrize("rank", [1, 2])
def test_rayleigh_quotient_monotone_psd(rank):
  rng = np.random.default_rng(10 + rank)
  p1, p2 = 6, 6
  x = rng.normal(size=(20, p1 * p2))
  a = (x.T @ x / 20).astype(np.float32)  # PSD, no low-rank structure at all
  res = L.matricized_power_method(a, (p1, p2), rank, tol=1e-6)
  t = int(res.num_iters)
  seq = np.concatenate([np.asarray(res.rayleigh_history)[:t], [float(res.eigenvalue)]])
  assert t >= 3
  assert np.all(np.diff(seq) >= -1e-5 * seq[-1]), seq
  assert seq[-1] > seq[0]


def test_matrix_free_equals_explicit():
  rng = np.random.default_rng(3)
  n, p1, p2 = 30, 5, 4
  x = rng.normal(size=(n, p1 * p2)).astype(np.float32)
  x[:, :] += (
    2.0
    * rng.normal(size=(n, 1)).astype(np.float32)
    * np.kron(rng.normal(size=p1), rng.normal(size=p2)).astype(np.float32)[None, :]
    / 3
  )
  dense = x.T.astype(np.float64) @ x.astype(np.float64) / n
  init = rng.normal(size=(p1 * p2,)).astype(np.float32)
  kw = dict(init=init, tol=1e-6, max_iters=500)
  r_dense = L.matricized_power_method(dense.astype(np.float32), (p1, p2), 2, **kw)
  r_free = L.matricized_power_method(L.covariance_operator(x), (p1, p2), 2, **kw)
  xj = jnp.asarray(x)
  r_call = L.matricized_power_method(lambda v: xj.T @ (xj @ v) / n, (p1, p2), 2, **kw)
  for r in (r_free, r_call):
    assert _dist(r.vector, r_dense.vector) < 1e-4
    np.testing.assert_allclose(float(r.eigenvalue), float(r_dense.eigenvalue), rtol=1e-5)
    assert abs(int(r.num_iters) - int(r_dense.num_iters)) <= 2
  # And the covariance operator is the sample second moment (centred if asked).
  v = rng.normal(size=(p1 * p2,))
  np.testing.assert_allclose(
    np.asarray(L.covariance_operator(x)(v)), dense @ v, rtol=1e-4, atol=1e-5
  )
  cov = np.cov(x.astype(np.float64), rowvar=False, bias=True)
  np.testing.assert_allclose(
    np.asarray(L.covariance_operator(x, center=True)(v)), cov @ v, rtol=1e-4, atol=1e-5
  )


def test_vmap_restarts_equal_sequential():
  rng = np.random.default_rng(4)
  p1, p2 = 5, 5
  x = rng.normal(size=(12, p1 * p2))
  a = (x.T @ x / 12).astype(np.float32)
  inits = rng.normal(size=(4, p1 * p2)).astype(np.float32)
  batched = L.matricized_power_method(a, (p1, p2), 1, init=inits, tol=1e-6, warn=False)
  seq = [L.matricized_power_method(a, (p1, p2), 1, init=i, tol=1e-6, warn=False) for i in inits]
  lams = np.array([float(s.eigenvalue) for s in seq])
  np.testing.assert_allclose(np.asarray(batched.restart_eigenvalues), lams, rtol=1e-5)
  conv = np.array([bool(s.converged) for s in seq])
  score = np.where(conv, lams, -np.inf) if conv.any() else lams
  # Restarts that reach the top eigenvalue tie within float32 rounding (here two of four), and
  # which of them wins the argmax depends on the CPU's SIMD rounding: any of them is correct.
  tol = 1e-5 * abs(score.max())
  ties = [i for i in range(len(seq)) if score[i] >= score.max() - tol]
  assert len(ties) < len(seq), "the test needs a restart that converges elsewhere"
  np.testing.assert_allclose(float(batched.eigenvalue), score.max(), rtol=1e-5)
  m = np.asarray(batched.eigenmatrix)
  # The batched result is one tied restart's result: its eigenmatrix (up to sign) and its
  # iteration count (+-1: the stopping test delta <= tol is itself rounding-dependent).
  assert any(
    _dist(m, seq[i].eigenmatrix) < 1e-5 and abs(int(batched.num_iters) - int(seq[i].num_iters)) <= 1
    for i in ties
  ), (int(batched.num_iters), [(float(seq[i].eigenvalue), int(seq[i].num_iters)) for i in ties])


def test_full_rank_equals_eigh():
  rng = np.random.default_rng(5)
  p1, p2 = 4, 6
  q = np.linalg.qr(rng.normal(size=(p1 * p2, p1 * p2)))[0]
  lam = np.linspace(1.0, 2.0, p1 * p2)
  lam[-1] = 3.0
  a = (q * lam[None, :]) @ q.T
  res = L.matricized_power_method(a.astype(np.float32), (p1, p2), min(p1, p2), tol=1e-6)
  w, v = np.linalg.eigh(a)
  assert _dist(res.vector, v[:, -1]) < 1e-4
  np.testing.assert_allclose(float(res.eigenvalue), w[-1], rtol=1e-6)
  pm = L.power_method(a.astype(np.float32), tol=1e-6)
  assert _dist(pm.eigenvector, v[:, -1]) < 1e-4
  e = L.eigh_top(a.astype(np.float32))
  assert _dist(e.eigenvector, v[:, -1]) < 1e-5


def test_kronecker_covariance_and_init():
  rng = np.random.default_rng(6)
  p1, p2 = 5, 4
  g1 = rng.normal(size=(p1, p1))
  g2 = rng.normal(size=(p2, p2))
  s1 = g1 @ g1.T + np.eye(p1)
  s2 = g2 @ g2.T + np.eye(p2)
  a = np.kron(s1, s2)
  u1 = np.linalg.eigh(s1)[1][:, -1]
  u2 = np.linalg.eigh(s2)[1][:, -1]
  truth = np.kron(u1, u2)
  # Partial traces by explicit loops.
  a4 = a.reshape(p1, p2, p1, p2)
  row = sum(a4[:, j, :, j] for j in range(p2))
  col = sum(a4[i, :, i, :] for i in range(p1))
  pr, pc = L.partial_traces(L.dense_operator(a.astype(np.float32)), (p1, p2))
  np.testing.assert_allclose(np.asarray(pr), row, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(pc), col, rtol=1e-5)
  x0 = L.kronecker_init(L.dense_operator(a.astype(np.float32)), (p1, p2), 1)
  assert _dist(x0, truth) < 1e-5
  res = L.matricized_power_method(a.astype(np.float32), (p1, p2), 1, tol=1e-6)
  assert _dist(res.vector, truth) < 1e-5
  np.testing.assert_allclose(float(res.eigenvalue), np.linalg.eigvalsh(a)[-1], rtol=1e-5)
  # Partial traces of a covariance operator equal those of the formed covariance.
  x = rng.normal(size=(9, p1 * p2)).astype(np.float32)
  fr, fc = L.partial_traces(L.covariance_operator(x), (p1, p2))
  dr, dc = L.partial_traces(L.dense_operator(x.T @ x / 9), (p1, p2))
  np.testing.assert_allclose(np.asarray(fr), np.asarray(dr), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(fc), np.asarray(dc), rtol=1e-4, atol=1e-5)


def test_randomized_svd_matches_full():
  rng = np.random.default_rng(7)
  p1, p2, r = 12, 10, 2
  v = _lowrank_unit(rng, p1, p2, r).ravel()
  x = rng.normal(size=(200, p1 * p2)) + 2.0 * rng.normal(size=(200, 1)) * v[None, :]
  op = L.covariance_operator(x.astype(np.float32))
  full = L.matricized_power_method(op, (p1, p2), r, init="kronecker", tol=1e-6)
  rand = L.matricized_power_method(
    op, (p1, p2), r, init="kronecker", tol=1e-6, svd="randomized", oversample=2
  )
  assert _dist(rand.vector, full.vector) < 1e-4
  assert _sin(full.vector, v) < 0.3


def test_top_k_deflation_recovers_orthogonal_spikes():
  rng = np.random.default_rng(8)
  p1, p2, k = 6, 5, 3
  a_vecs = np.linalg.qr(rng.normal(size=(p1, k)))[0]
  b_vecs = np.linalg.qr(rng.normal(size=(p2, k)))[0]
  spikes = [np.kron(a_vecs[:, i], b_vecs[:, i]) for i in range(k)]  # orthonormal, rank-1 each
  lams = [6.0, 4.0, 2.5]
  a = np.eye(p1 * p2) + sum(lam * np.outer(s, s) for lam, s in zip(lams, spikes))
  # Each spike is a fixed point of the rank-1 iteration (the problem is nonconvex), so a single
  # random start may stop at a lower spike; the partial-trace start picks the top one exactly.
  res = L.top_k_eigenmatrices(a.astype(np.float32), (p1, p2), 1, k, init="kronecker", tol=1e-6)
  assert res.eigenmatrix.shape == (k, p1, p2)
  for i in range(k):
    assert _dist(res.vector[i], spikes[i]) < 1e-5
  np.testing.assert_allclose(np.asarray(res.eigenvalue), np.array(lams) + 1, rtol=1e-5)
  # Data path: deflated covariance keeps the kronecker init available.
  x = rng.normal(size=(400, p1 * p2)) @ np.linalg.cholesky(a).T
  rd = L.top_k_eigenmatrices(
    L.covariance_operator(x.astype(np.float32)), (p1, p2), 1, 2, init="kronecker"
  )
  assert _sin(rd.vector[0], spikes[0]) < 0.2 and _sin(rd.vector[1], spikes[1]) < 0.3


def test_truncated_power_method_sparse_spike():
  rng = np.random.default_rng(9)
  p, k = 40, 5
  s = np.zeros(p)
  s[rng.choice(p, k, replace=False)] = rng.normal(size=k) + np.sign(rng.normal(size=k))
  s /= np.linalg.norm(s)
  a = 3.0 * np.outer(s, s) + np.eye(p)
  # Y&Z start: the largest diagonal entries (a random start can sit on a disjoint support).
  res = L.truncated_power_method(
    a.astype(np.float32), k, init=np.diag(a).astype(np.float32), tol=1e-6
  )
  assert _dist(res.eigenvector, s) < 1e-6
  assert int(np.sum(np.asarray(res.eigenvector) != 0)) == k
  np.testing.assert_allclose(float(res.eigenvalue), 4.0, rtol=1e-6)


def test_solver_traces_under_jit():
  rng = np.random.default_rng(11)
  p1, p2 = 4, 4
  x = rng.normal(size=(10, p1 * p2)).astype(np.float32)
  kw = dict(init=np.ones(p1 * p2, np.float32), tol=1e-6)
  f = jax.jit(
    lambda x: L.matricized_power_method(L.covariance_operator(x), (p1, p2), 1, **kw).eigenvalue
  )
  eager = L.matricized_power_method(L.covariance_operator(x), (p1, p2), 1, **kw).eigenvalue
  np.testing.assert_allclose(float(f(x)), float(eager), rtol=1e-6)
