"""η, the score-aware loss, anisotropic k-means and anisotropic PQ, against independent references."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from vision_jax.search import quantization as qz


def test_eta_asymptotic_reference_values():
  # ScaNN's ComputeParallelCostMultiplier; paper setting d=100, T=0.2, ||x||=1.
  assert float(qz.anisotropic_eta(0.2, 1.0, 100)) == pytest.approx(4.125, rel=1e-6)
  assert float(qz.anisotropic_eta(0.3, 1.0, 100)) == pytest.approx(99 * 0.09 / 0.91, rel=1e-5)
  # Norm scaling: T / ||x|| is what matters.
  assert float(qz.anisotropic_eta(0.4, 4.0, 100)) == pytest.approx(4.125, rel=1e-6)
  # Clamp at 1 (Theorem 3.3): T=0 is reconstruction loss.
  assert float(qz.anisotropic_eta(0.0, 1.0, 100)) == 1.0
  eta = qz.anisotropic_eta(0.2, jnp.array([1.0, 4.0]), 100)
  assert eta.shape == (2,)


def _exact_eta_scipy(t, d):
  th = np.arccos(t)
  num = (d - 1) * integrate.quad(lambda a: np.sin(a) ** (d - 2) * np.cos(a) ** 2, 0, th)[0]
  den = integrate.quad(lambda a: np.sin(a) ** d, 0, th)[0]
  return num / den


@pytest.mark.parametrize(
  ("d", "t", "ref"), [(100, 0.2, 5.95), (100, 0.3, 11.84), (768, 0.05, 3.56)]
)
def test_eta_exact_matches_scipy_and_table(d, t, ref):
  got = float(qz.anisotropic_eta(t, 1.0, d, exact=True))
  assert got == pytest.approx(_exact_eta_scipy(t, d), rel=1e-3)
  assert got == pytest.approx(ref, abs=0.01)
  assert float(qz.anisotropic_eta(0.0, 1.0, d, exact=True)) == pytest.approx(1.0, abs=1e-4)


def test_eta_exact_matches_monte_carlo():
  # eta = E[w q_par^2] / E[w q_perp^2] over unit queries with w = 1[<q, x> >= T], x = e_1.
  d, t = 100, 0.2
  rng = np.random.default_rng(0)
  num = den = 0.0
  for _ in range(8):
    g = rng.normal(size=(100_000, d))
    q = g / np.linalg.norm(g, axis=1, keepdims=True)
    w = q[:, 0] >= t
    num += np.sum(q[w, 0] ** 2)
    den += np.sum(q[w, 1] ** 2)
  mc = num / den
  assert float(qz.anisotropic_eta(t, 1.0, d, exact=True)) == pytest.approx(mc, rel=0.05)


def test_score_aware_loss_decomposition_vs_monte_carlo():
  # Theorem 3.2: E_q[1[<q,x> >= T] <q, r>^2] ∝ h_par ||r_par||^2 + h_perp ||r_perp||^2.
  d, t = 20, 0.3
  rng = np.random.default_rng(1)
  x = rng.normal(size=d)
  x /= np.linalg.norm(x)
  r = 0.1 * rng.normal(size=d)
  xq = x - r
  g = rng.normal(size=(400_000, d))
  q = g / np.linalg.norm(g, axis=1, keepdims=True)
  w = (q @ x) >= t
  direct = np.mean(w * (q @ r) ** 2)
  # MC h_perp (per unit of ||r_perp||^2) from an orthogonal direction.
  e = rng.normal(size=d)
  e -= (e @ x) * x
  e /= np.linalg.norm(e)
  h_perp = np.mean(w * (q @ e) ** 2)
  loss = float(qz.score_aware_loss(x[None], xq[None], threshold=t, exact=True)[0])
  assert loss * h_perp == pytest.approx(direct, rel=0.05)
  # eta = 1 is the reconstruction loss.
  np.testing.assert_allclose(qz.score_aware_loss(x[None], xq[None])[0], np.sum(r**2), rtol=1e-5)


def test_score_aware_loss_matches_explicit_split():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(5, 8)).astype(np.float32)
  xq = x + 0.3 * rng.normal(size=(5, 8)).astype(np.float32)
  r = x - xq
  par = (np.sum(r * x, 1) / np.sum(x * x, 1))[:, None] * x
  perp = r - par
  eta = 3.5
  ref = eta * np.sum(par**2, 1) + np.sum(perp**2, 1)
  np.testing.assert_allclose(qz.score_aware_loss(x, xq, eta=eta), ref, rtol=1e-5)


def _cluster_loss(c, t, u, eta):
  r = t - c[None, :]
  p = jnp.sum(r * u, -1)
  return jnp.sum((eta - 1.0) * p**2 + jnp.sum(r**2, -1))


def test_closed_form_centroid_is_the_minimiser():
  rng = np.random.default_rng(3)
  n, d = 50, 6
  t = jnp.asarray(rng.normal(size=(n, d)) + 2.0, jnp.float32)
  u = qz.normalize_rows(t)
  eta = jnp.asarray(rng.uniform(1.0, 8.0, size=n), jnp.float32)
  a = jnp.zeros((n,), jnp.int32)
  c = qz.anisotropic_centroids(t, u, eta, a, jnp.zeros((1, d)))[0]
  g = jax.grad(_cluster_loss)(c, t, u, eta)
  assert float(jnp.max(jnp.abs(g))) < 1e-3 * float(jnp.abs(_cluster_loss(c, t, u, eta)))
  base = float(_cluster_loss(c, t, u, eta))
  for _ in range(20):
    pert = c + 0.05 * jnp.asarray(rng.normal(size=d), jnp.float32)
    assert float(_cluster_loss(pert, t, u, eta)) > base
  # eta = 1 reduces to the mean, on both code paths.
  ones = jnp.ones((n,), jnp.float32)
  np.testing.assert_allclose(
    qz.anisotropic_centroids(t, u, ones, a, jnp.zeros((1, d)))[0], jnp.mean(t, 0), atol=1e-5
  )
  np.testing.assert_allclose(
    qz.anisotropic_centroids(t, u, ones, a, jnp.zeros((1, d)), isotropic=True)[0],
    jnp.mean(t, 0),
    atol=1e-5,
  )


def test_centroids_large_path_matches_small_path():
  # k*d^2 > 2^16 selects the chunked segment-sum; compare against the explicit formula.
  rng = np.random.default_rng(4)
  n, d, k = 300, 40, 50
  t = jnp.asarray(rng.normal(size=(n, d)), jnp.float32)
  u = qz.normalize_rows(t)
  eta = jnp.full((n,), 3.0)
  a = jnp.asarray(rng.integers(0, k - 1, size=n), jnp.int32)  # cluster k-1 empty
  old = jnp.asarray(rng.normal(size=(k, d)), jnp.float32)
  got = np.asarray(qz.anisotropic_centroids(t, u, eta, a, old))
  tn, un, an = np.asarray(t, np.float64), np.asarray(u, np.float64), np.asarray(a)
  for j in (0, 7):
    m = an == j
    mat = m.sum() * np.eye(d) + 2.0 * un[m].T @ un[m]
    rhs = (tn[m] + 2.0 * (np.sum(un[m] * tn[m], 1))[:, None] * un[m]).sum(0)
    np.testing.assert_allclose(got[j], np.linalg.solve(mat, rhs), atol=2e-4)
  np.testing.assert_allclose(got[k - 1], old[k - 1])


def test_kmeans_eta1_is_lloyd_and_aniso_lowers_aniso_loss():
  rng = np.random.default_rng(5)
  means = 5.0 * rng.normal(size=(6, 5))
  x = jnp.asarray(means[rng.integers(0, 6, 400)] + rng.normal(size=(400, 5)), jnp.float32)
  key = jax.random.key(0)
  c1, a1 = qz.anisotropic_kmeans(x, num_centers=6, key=key, iterations=30)
  # Lloyd fixed point: each centre is the mean of its points.
  for j in range(6):
    np.testing.assert_allclose(c1[j], jnp.mean(x[a1 == j], 0), atol=1e-4)
  # An array of ones (general path) gives the same clustering.
  c1b, a1b = qz.anisotropic_kmeans(x, num_centers=6, key=key, eta=jnp.ones(400), iterations=30)
  np.testing.assert_allclose(c1b, c1, atol=1e-4)
  u = qz.normalize_rows(x)
  eta = 6.0
  ca, aa = qz.anisotropic_kmeans(x, num_centers=6, key=key, eta=eta, iterations=15, init=c1)
  loss = lambda c, a: float(jnp.sum(qz.anisotropic_cost(x - c[a], u, eta)))
  assert loss(ca, aa) <= loss(c1, a1) + 1e-4


def _setup_pq(n=300, d=12, nb=3, nc=16, seed=6):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=(n, 1)), jnp.float32)
  u = qz.normalize_rows(x)
  cb = qz.train_pq_codebooks(x, num_blocks=nb, num_centers=nc, key=jax.random.key(seed))
  return x, u, cb


def _assert_nearest_codes(codes, x, cb, rtol=1e-5):
  """Every code is a nearest centre of its block. Centres equidistant within float32 rounding
  may swap between formulas (``-2<x,c> + |c|^2`` here, ``|x-c|^2`` in NumPy) or CPUs, so a
  code counts as nearest when its squared distance is within ``rtol`` of the minimum."""
  codes, cbn = np.asarray(codes), np.asarray(cb, np.float64)
  nb, _, db = cbn.shape
  xb = np.asarray(x, np.float64).reshape(len(codes), nb, db)
  for k in range(nb):
    d2 = ((xb[:, k, None, :] - cbn[k][None]) ** 2).sum(-1)
    got = d2[np.arange(len(codes)), codes[:, k]]
    np.testing.assert_array_less(got, d2.min(1) * (1 + rtol) + rtol)


def test_pq_decode_and_nearest_encoding():
  x, u, cb = _setup_pq()
  codes = qz.pq_encode_nearest(x, cb)
  _assert_nearest_codes(codes, x, cb)
  dec = np.asarray(qz.pq_decode(codes, cb))
  cbn = np.asarray(cb)
  for k in range(3):
    np.testing.assert_allclose(
      dec[:, 4 * k : 4 * k + 4], cbn[k][np.asarray(codes)[:, k]], atol=1e-6
    )


def test_anisotropic_encoding_never_increases_loss_and_is_near_optimal():
  x, u, cb = _setup_pq()
  # Cosine threshold T=0.5 at d=12: eta = 11 * 0.25 / 0.75.
  eta = jnp.full((x.shape[0],), float(qz.anisotropic_eta(0.5, 1.0, 12)))
  c0 = qz.pq_encode_nearest(x, cb)
  c1 = qz.pq_encode_anisotropic(x, u, cb, eta)
  l0 = np.asarray(qz.pq_loss(x, u, c0, cb, eta))
  l1 = np.asarray(qz.pq_loss(x, u, c1, cb, eta))
  assert np.all(l1 <= l0 + 1e-5)
  assert l1.mean() < l0.mean()
  # Brute force over all 16^3 code combinations for a few points.
  combos = np.array(list(itertools.product(range(16), repeat=3)))
  optimal = 0
  for i in range(12):
    xs = jnp.broadcast_to(x[i], (len(combos), 12))
    us = jnp.broadcast_to(u[i], (len(combos), 12))
    lb = np.asarray(qz.pq_loss(xs, us, jnp.asarray(combos), cb, eta[i]))
    assert l1[i] >= lb.min() - 1e-5
    optimal += l1[i] <= lb.min() + 1e-5
  assert optimal >= 6  # coordinate descent usually reaches the global optimum


def test_eta1_encoding_is_nearest():
  x, u, cb = _setup_pq()
  _assert_nearest_codes(qz.pq_encode_anisotropic(x, u, cb, jnp.ones((x.shape[0],))), x, cb)


def test_codebook_updates_lower_loss_and_agree():
  x, u, cb = _setup_pq(n=200, nc=4)
  eta = jnp.full((200,), 4.0)
  codes = qz.pq_encode_anisotropic(x, u, cb, eta)
  loss = lambda c: float(jnp.sum(qz.pq_loss(x, u, codes, c, eta)))
  joint = qz.pq_update_codebooks_joint(x, u, codes, cb, eta)
  # Joint LS solution is stationary.
  g = jax.grad(lambda c: jnp.sum(qz.pq_loss(x, u, codes, c, eta)))(joint)
  assert float(jnp.max(jnp.abs(g))) < 1e-3
  blk = cb
  prev = loss(cb)
  for _ in range(30):
    blk = qz.pq_update_codebooks_blockwise(x, u, codes, blk, eta)
    cur = loss(blk)
    assert cur <= prev * (1 + 1e-6)
    prev = cur
  assert loss(joint) <= loss(cb)
  assert prev == pytest.approx(loss(joint), rel=1e-4)
  np.testing.assert_allclose(blk, joint, atol=1e-3)


def test_binary_quantization_variant():
  x, u, _ = _setup_pq(d=8, nb=8)
  cb = qz.train_pq_codebooks(x, num_blocks=8, num_centers=2, key=jax.random.key(0))
  assert cb.shape == (8, 2, 1)
  codes = qz.pq_encode_anisotropic(x, u, cb, jnp.full((x.shape[0],), 3.0))
  assert set(np.unique(np.asarray(codes))) <= {0, 1}


def test_bad_threshold_raises_naming_value():
  with pytest.raises(ValueError, match="threshold=1.5"):
    qz.anisotropic_eta(1.5, 1.0, 100)
  with pytest.raises(ValueError, match="not both"):
    qz.score_aware_loss(np.ones((1, 3)), np.ones((1, 3)), threshold=0.1, eta=2.0)
