"""Hashing losses: hand-computed values, reductions, gradients."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from vision_jax.hashing import losses as hl

LOG2 = math.log(2.0)


def _softplus(x):
  return math.log1p(math.exp(x))


def _dpsh_ref(h, sim, partners, eta, exclude_self):
  out = []
  for i in range(len(h)):
    terms = []
    for j in range(len(partners)):
      if exclude_self and i == j:
        continue
      t = 0.5 * float(np.dot(h[i], partners[j]))
      terms.append(_softplus(t) - sim[i][j] * t)
    q = np.mean((h[i] - np.sign(h[i])) ** 2)
    out.append(np.mean(terms) + eta * q)
  return np.array(out)


def test_pairwise_similarity():
  np.testing.assert_array_equal(
    hl.pairwise_similarity(np.array([0, 1, 0]), np.array([0, 2])), [[1, 0], [0, 0], [1, 0]]
  )
  a = np.array([[1, 0, 1], [0, 1, 0]])
  b = np.array([[0, 0, 1], [1, 1, 0], [0, 0, 0]])
  np.testing.assert_array_equal(hl.pairwise_similarity(a, b), [[1, 1, 0], [0, 1, 0]])
  with pytest.raises(ValueError, match="both be int ids"):
    hl.pairwise_similarity(np.array([0, 1]), a)


def test_dpsh_hand_computed():
  # Theta_12 = 1/2 (1 + 1) = 1. Similar pair: log(1+e) - 1; dissimilar: log(1+e).
  h = np.array([[1.0, 1.0], [1.0, 1.0]])
  np.testing.assert_allclose(hl.dpsh_loss(h, np.array([3, 3])), [_softplus(1) - 1] * 2, rtol=1e-6)
  np.testing.assert_allclose(hl.dpsh_loss(h, np.array([3, 4])), [_softplus(1)] * 2, rtol=1e-6)
  # Orthogonal codes: Theta = 0 -> log 2 whatever s.
  h = np.array([[1.0, 1.0], [1.0, -1.0]])
  np.testing.assert_allclose(hl.dpsh_loss(h, np.array([0, 0])), [LOG2, LOG2], rtol=1e-6)
  # Quantisation: (0.5-1)^2 + (-0.25+1)^2 = 0.8125 -> mean over 2 bits 0.40625, times eta.
  h = np.array([[0.5, -0.25], [0.0, 0.0]])
  q = hl.dpsh_loss(h, np.array([0, 1]), quantization_weight=0.1) - hl.dpsh_loss(
    h, np.array([0, 1]), quantization_weight=0.0
  )
  np.testing.assert_allclose(q, [0.040625, 0.0], rtol=1e-5)


def test_dpsh_matches_reference_batch_bank_and_mask():
  rng = np.random.default_rng(0)
  h = np.tanh(rng.normal(size=(5, 6))).astype(np.float32)
  y = rng.integers(0, 3, 5)
  sim = (y[:, None] == y[None, :]).astype(float)
  np.testing.assert_allclose(
    hl.dpsh_loss(h, y, quantization_weight=0.3), _dpsh_ref(h, sim, h, 0.3, True), rtol=1e-5
  )
  bank = np.tanh(rng.normal(size=(9, 6))).astype(np.float32)
  yb = rng.integers(0, 3, 9)
  simb = (y[:, None] == yb[None, :]).astype(float)
  np.testing.assert_allclose(
    hl.dpsh_loss(h, y, bank_h=bank, bank_labels=yb),
    _dpsh_ref(h, simb, bank, 0.1, False),
    rtol=1e-5,
  )
  where = np.array([True, False, True, True, False])
  sub = hl.dpsh_loss(h[where], y[where])
  got = hl.dpsh_loss(h, y, where=where)
  np.testing.assert_allclose(got[where], sub, rtol=1e-6)
  np.testing.assert_array_equal(got[~where], 0.0)
  with pytest.raises(ValueError, match="bank_labels"):
    hl.dpsh_loss(h, y, bank_h=bank)


def test_update_memory_bank():
  bank = jnp.zeros((4, 2))
  new = hl.update_memory_bank(bank, jnp.ones((2, 2)), jnp.array([3, 1]))
  np.testing.assert_array_equal(new, [[0, 0], [1, 1], [0, 0], [1, 1]])


@pytest.mark.parametrize("bits", [4, 16, 64])
def test_hadamard_centers_distances(bits):
  c = hl.hadamard_centers(bits)
  assert c.shape == (2 * bits, bits)
  d = 0.5 * (bits - c @ c.T)
  for i in range(2 * bits):
    for j in range(2 * bits):
      expect = 0 if i == j else (bits if abs(i - j) == bits else bits / 2)
      assert d[i, j] == expect
  with pytest.raises(ValueError, match="power of two"):
    hl.hadamard_centers(48)


def test_csq_hash_centers_extra_and_non_power_of_two():
  c = hl.csq_hash_centers(20, 8, seed=0)
  assert c.shape == (20, 8)
  np.testing.assert_array_equal(c[:16], hl.hadamard_centers(8))
  np.testing.assert_array_equal(c[16:].sum(axis=1), 0)  # balanced random centres
  c48 = hl.csq_hash_centers(10, 48, seed=1)
  assert c48.shape == (10, 48) and set(np.unique(c48)) == {-1.0, 1.0}
  np.testing.assert_array_equal(c48.sum(axis=1), 0)
  d = 0.5 * (48 - c48 @ c48.T)[np.triu_indices(10, 1)]
  assert d.min() > 12 and d.mean() >= 24  # the resampling criterion
  np.testing.assert_array_equal(hl.csq_hash_centers(10, 32), hl.hadamard_centers(32)[:10])


def test_label_centers():
  centers = np.array([[1, 1, 1, -1], [1, -1, 1, 1], [-1, -1, 1, 1]], np.float32)
  np.testing.assert_array_equal(hl.label_centers(np.array([2, 0]), centers), centers[[2, 0]])
  # Classes 0+1: sum = [2, 0, 2, 0] -> [1, tb, 1, tb]; classes 0+1+2: [1, -1, 3, 1].
  tb = np.array([-1, 1, -1, 1], np.float32)
  y = np.array([[1, 1, 0], [1, 1, 1]])
  np.testing.assert_array_equal(
    hl.label_centers(y, centers, tie_breaker=tb), [[1, 1, 1, 1], [1, -1, 1, 1]]
  )
  with pytest.raises(ValueError, match="tie_breaker"):
    hl.label_centers(y, centers)


def test_csq_hand_computed():
  # p = [0.5, 0.75], t = [1, 0]: BCE = [log 2, log 4] -> mean 1.5 log 2.
  # quantisation: (0-1)^2 + (0.5-1)^2 = 1.25 -> mean 0.625.
  h = np.array([[0.0, 0.5]])
  c = np.array([[1.0, -1.0]])
  np.testing.assert_allclose(
    hl.csq_loss(h, c, quantization_weight=0.1), [1.5 * LOG2 + 0.0625], rtol=1e-6
  )


def test_csq_saturated_is_finite_with_finite_grads():
  h = jnp.array([[1.0, -1.0, 0.0, 0.999]])
  c = jnp.array([[-1.0, -1.0, 1.0, 1.0]])
  loss = hl.csq_loss(h, c)
  assert np.all(np.isfinite(loss))
  # Wrong-sign saturated bit costs the PyTorch clamp value 100 / L.
  assert float(loss[0]) > 100 / 4
  g = jax.grad(lambda x: hl.csq_loss(x, c).sum())(h)
  assert np.all(np.isfinite(g))


def test_grad_checks():
  rng = np.random.default_rng(1)
  h = jnp.asarray(np.tanh(rng.normal(size=(4, 8))), jnp.float32)
  y = jnp.array([0, 1, 0, 2])
  c = jnp.asarray(hl.csq_hash_centers(3, 8))[y]
  h_ema = h + 0.1
  # eps small enough that no coordinate crosses a sign() kink of the quantisation term.
  kw = dict(modes=["rev"], order=1, atol=3e-2, rtol=3e-2, eps=1e-3)
  check_grads(lambda x: hl.dpsh_loss(x, y).sum(), (h,), **kw)
  check_grads(lambda x: hl.csq_loss(x, c).sum(), (h,), **kw)
  # DMUH weights are stop-gradient constants; keep them fixed under the finite differences by
  # moving h_ema with h (u = |h - h_ema| = 0.1 throughout).
  delta = h - h_ema
  check_grads(lambda x: hl.dmuh_loss(x, x - delta, targets=c).sum(), (h,), **kw)
  check_grads(lambda x: hl.dmuh_loss(x, x - delta, base="pairwise", labels=y).sum(), (h,), **kw)
  for base, kws in (("center", dict(targets=c)), ("pairwise", dict(labels=y))):
    g = jax.grad(lambda x, b=base, k=kws: hl.dmuh_loss(x, h_ema, base=b, **k).sum())(h)
    assert np.all(np.isfinite(g)) and np.any(g != 0)


def test_jit_equals_eager():
  rng = np.random.default_rng(2)
  h = jnp.asarray(np.tanh(rng.normal(size=(4, 8))), jnp.float32)
  h_ema = jnp.asarray(np.tanh(rng.normal(size=(4, 8))), jnp.float32)
  c = jnp.asarray(hl.csq_hash_centers(4, 8))
  f = lambda a, b: hl.dmuh_loss(a, b, targets=c, bit_weight=2.0, image_weight=0.5)
  np.testing.assert_allclose(jax.jit(f)(h, h_ema), f(h, h_ema), rtol=1e-6)


def test_uncertainty():
  h = np.array([[0.5, -0.5, 0.0, 1.0]])
  he = np.array([[0.25, 0.5, 0.0, -1.0]])
  np.testing.assert_allclose(hl.bit_uncertainty(h, he), [[0.25, 1.0, 0.0, 2.0]])
  np.testing.assert_allclose(
    hl.bit_uncertainty(h, he, discrepancy="squared"), [[0.0625, 1.0, 0.0, 4.0]]
  )
  np.testing.assert_allclose(hl.image_uncertainty(hl.bit_uncertainty(h, he)), [0.8125])
  with pytest.raises(ValueError, match="discrepancy"):
    hl.bit_uncertainty(h, he, discrepancy="l1")


def test_dmuh_zero_uncertainty_reduces_to_base():
  rng = np.random.default_rng(3)
  h = np.tanh(rng.normal(size=(6, 8))).astype(np.float32)
  y = rng.integers(0, 3, 6)
  c = hl.csq_hash_centers(3, 8)[y]
  np.testing.assert_allclose(
    hl.dmuh_loss(h, h, targets=c, bit_weight=5.0, image_weight=3.0),
    hl.csq_loss(h, c),
    rtol=1e-6,
  )
  np.testing.assert_allclose(
    hl.dmuh_loss(h, h, base="pairwise", labels=y, bit_weight=5.0, image_weight=3.0),
    hl.dpsh_loss(h, y),
    rtol=1e-6,
  )
  # beta = gamma = 0 also removes the uncertainty whatever h_ema is.
  other = np.zeros_like(h)
  np.testing.assert_allclose(
    hl.dmuh_loss(h, other, targets=c, bit_weight=0.0, image_weight=0.0),
    hl.csq_loss(h, c),
    rtol=1e-6,
  )


def test_dmuh_hand_computed_center_and_pairwise():
  # u = [0.5, 0], U = 0.25, beta = gamma = 1: a = [1.5, 1], b = 1.25.
  h = np.array([[0.0, 0.5]])
  he = np.array([[0.5, 0.5]])
  c = np.array([[1.0, -1.0]])
  lam = 0.1
  per_bit = np.array([LOG2 + lam * 1.0, 2 * LOG2 + lam * 0.25])
  expect = 1.25 * np.mean(np.array([1.5, 1.0]) * per_bit)
  np.testing.assert_allclose(
    hl.dmuh_loss(h, he, targets=c, quantization_weight=lam), [expect], rtol=1e-6
  )
  # Pairwise: two images, h2 = h_ema2 (no uncertainty); Theta = 1/2 (0 + 0.25) = 0.125, s = 1.
  h = np.array([[0.0, 0.5], [1.0, 0.5]])
  he = np.array([[0.5, 0.5], [1.0, 0.5]])
  y = np.array([7, 7])
  nll = _softplus(0.125) - 0.125
  q1 = np.mean(np.array([1.5, 1.0]) * np.array([0.0, 0.25]))  # sign(0) = 0
  q2 = np.mean(np.array([0.0, 0.25]))
  got = hl.dmuh_loss(h, he, base="pairwise", labels=y, quantization_weight=lam)
  np.testing.assert_allclose(got, [1.25 * (nll + lam * q1), nll + lam * q2], rtol=1e-6)


def test_dmuh_no_gradient_to_ema_and_weights_uncertain_more():
  rng = np.random.default_rng(4)
  h = jnp.asarray(np.tanh(rng.normal(size=(3, 8))), jnp.float32)
  c = jnp.asarray(hl.csq_hash_centers(3, 8))
  g = jax.grad(lambda e: hl.dmuh_loss(h, e, targets=c).sum())(h + 0.2)
  np.testing.assert_array_equal(g, 0.0)
  near = hl.dmuh_loss(h, h + 0.01, targets=c)
  far = hl.dmuh_loss(h, h + 0.5, targets=c)
  assert np.all(np.asarray(far) > np.asarray(near))


def test_dmuh_bad_input():
  h = np.zeros((2, 4))
  with pytest.raises(ValueError, match="targets"):
    hl.dmuh_loss(h, h)
  with pytest.raises(ValueError, match="labels"):
    hl.dmuh_loss(h, h, base="pairwise")
  with pytest.raises(ValueError, match="base"):
    hl.dmuh_loss(h, h, base="hinge", targets=h)
  with pytest.raises(ValueError, match="h_ema shape|must equal"):
    hl.dmuh_loss(h, np.zeros((2, 3)), targets=h)


def test_hashnet_hand_computed_and_reference():
  sp = _softplus(0.2)
  h = np.array([[1.0, 1.0], [1.0, 1.0]])  # alpha h_i.h_j = 0.2 for all pairs
  np.testing.assert_allclose(hl.hashnet_loss(h, np.array([0, 0])), [sp - 0.2] * 2, rtol=1e-6)
  # Different labels: S1 = 2 (diagonal), S0 = 2 -> both weights 4/2 = 2.
  np.testing.assert_allclose(hl.hashnet_loss(h, np.array([0, 1])), [2 * sp - 0.2] * 2, rtol=1e-6)
  rng = np.random.default_rng(5)
  h = np.tanh(rng.normal(size=(6, 8))).astype(np.float32)
  y = rng.integers(0, 3, 6)
  sim = (y[:, None] == y[None, :]).astype(float)
  s1, s0 = sim.sum(), (1 - sim).sum()
  ref = np.zeros(6)
  for i in range(6):
    for j in range(6):
      t = 0.3 * float(h[i] @ h[j])
      w = 36 / s1 if sim[i, j] else 36 / s0
      ref[i] += w * (_softplus(t) - sim[i, j] * t) / 6
  got = hl.hashnet_loss(h, y, alpha=0.3)
  np.testing.assert_allclose(got, ref, rtol=1e-5)
  where = np.array([True, True, False, True, True, False])
  masked = hl.hashnet_loss(h, y, alpha=0.3, where=where)
  np.testing.assert_allclose(
    masked[where], hl.hashnet_loss(h[where], y[where], alpha=0.3), rtol=1e-6
  )
  np.testing.assert_array_equal(masked[~where], 0.0)


def test_hashnet_scale():
  assert float(hl.hashnet_scale(0)) == 1.0
  assert float(hl.hashnet_scale(199)) == 1.0
  np.testing.assert_allclose(float(hl.hashnet_scale(400)), 1.01**0.5, rtol=1e-6)
