"""DVG-Face losses against NumPy hand computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from vision_jax import hfr


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _rng(seed=0):
  return np.random.default_rng(seed)


def test_orthogonality_and_cosine_match_numpy():
  r = _rng()
  z, f = _unit(r.normal(size=(5, 7))), _unit(r.normal(size=(5, 7)))
  np.testing.assert_allclose(hfr.orthogonality(z, f), np.abs((z * f).sum(-1)), rtol=1e-5)
  a, b = r.normal(size=(5, 7)), r.normal(size=(5, 7))
  ref = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
  np.testing.assert_allclose(hfr.cosine(a, b), ref, rtol=1e-5)
  # orthogonal code -> zero penalty; parallel -> 1
  e = np.eye(7)[:2]
  np.testing.assert_allclose(hfr.orthogonality(e, e[::-1]), [0.0, 0.0], atol=1e-7)
  np.testing.assert_allclose(hfr.orthogonality(e, -e), [1.0, 1.0], rtol=1e-6)
  with pytest.raises(ValueError, match="attr_dim must equal"):
    hfr.orthogonality(z, f[:, :3])


def test_l1_and_kl_match_numpy():
  r = _rng(1)
  x, y = r.random((3, 4, 4, 2)), r.random((3, 4, 4, 2))
  np.testing.assert_allclose(hfr.l1(x, y), np.abs(x - y).reshape(3, -1).mean(1), rtol=1e-5)
  mu, lv = r.normal(size=(4, 6)), r.normal(size=(4, 6)) * 0.5
  ref = 0.5 * (mu**2 + np.exp(lv) - 1 - lv).sum(-1)
  np.testing.assert_allclose(hfr.gaussian_kl(mu, lv), ref, rtol=1e-5)
  np.testing.assert_allclose(hfr.gaussian_kl(np.zeros((2, 3)), np.zeros((2, 3))), 0.0, atol=1e-7)


def test_random_derangement_is_a_fixed_point_free_permutation():
  f = jax.jit(hfr.random_derangement, static_argnums=1)  # one compile per n, not per call
  for n in (2, 3, 8, 33):
    for s in range(5):
      p = np.asarray(f(jax.random.PRNGKey(s), n))
      assert sorted(p) == list(range(n))
      assert np.all(p != np.arange(n))
  np.testing.assert_array_equal(hfr.random_derangement(jax.random.PRNGKey(0), 2), [1, 0])
  # n = 3 has exactly two derangements, both reachable
  seen = {tuple(np.asarray(f(jax.random.PRNGKey(s), 3))) for s in range(40)}
  assert seen == {(1, 2, 0), (2, 0, 1)}
  with pytest.raises(ValueError, match="n >= 2"):
    hfr.random_derangement(jax.random.PRNGKey(0), 1)


def test_hfr_contrastive_matches_hand_computation():
  r = _rng(2)
  fa, fb = r.normal(size=(6, 5)), r.normal(size=(6, 5))
  perm = np.asarray([3, 0, 5, 1, 2, 4])
  ref = []
  for i in range(6):
    cos = lambda u, v: u @ v / np.linalg.norm(u) / np.linalg.norm(v)  # noqa: E731
    ref.append(-cos(fa[i], fb[i]) + 0.1 * max(0.0, cos(fa[i], fb[perm[i]]) - 0.5))
  got = hfr.hfr_contrastive(jnp.asarray(fa), jnp.asarray(fb), jnp.asarray(perm))
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
  # identical pairs with orthogonal negatives: -1 each
  e = np.eye(4)
  np.testing.assert_allclose(hfr.hfr_contrastive(e, e, jnp.asarray([1, 2, 3, 0])), -1.0, rtol=1e-6)
  # a negative above the margin is penalised with weight w
  v = np.asarray([[1.0, 0.0], [1.0, 0.1]])
  c = v[0] @ v[1] / np.linalg.norm(v[1])
  got = hfr.hfr_contrastive(v, v, jnp.asarray([1, 0]), negative_weight=2.0)
  np.testing.assert_allclose(got, -1.0 + 2.0 * (c - 0.5), rtol=1e-5, atol=1e-6)
  check_grads(
    lambda a: jnp.sum(hfr.hfr_contrastive(a, jnp.asarray(fb), jnp.asarray(perm))),
    (jnp.asarray(fa),),
    order=1,
    modes=["rev"],
    atol=1e-2,
    rtol=1e-2,
  )
  with pytest.raises(ValueError, match="must be equal"):
    hfr.hfr_contrastive(fa, fb[:, :3], jnp.asarray(perm))


def test_generator_objective_matches_numpy_with_official_weights():
  r = _rng(3)
  b, d, hw = 4, 6, (4, 4, 1)
  img = lambda: r.random((b, *hw))  # noqa: E731
  vec = lambda: _unit(r.normal(size=(b, d)))  # noqa: E731
  out = dict(
    x_a=img(), x_b=img(), rec_a=img(), rec_b=img(), swap_a=img(), swap_b=img(), fake_a=img(),
    fake_b=img(), z_a=vec(), z_b=vec(), id_real=vec(), id_fake=vec(), f_rec_a=vec(),
    f_rec_b=vec(), f_fake_a=vec(), f_fake_b=vec(),
  )  # fmt: skip
  o = {k: np.asarray(v, np.float64) for k, v in out.items()}
  l1m = lambda u, v: np.abs(u - v).mean()  # noqa: E731
  cm = lambda u, v: (u * v).sum(-1).mean()  # noqa: E731
  ref = (
    50 * (np.abs((o["z_a"] * o["id_real"]).sum(-1)).mean() + np.abs((o["z_b"] * o["id_real"]).sum(-1)).mean())
    + 100
    * (
      l1m(o["rec_a"], o["x_a"]) + l1m(o["rec_b"], o["x_b"])
      + 0.1 * (l1m(o["swap_a"], o["x_a"]) + l1m(o["swap_b"], o["x_b"]))
      + 0.1 * (l1m(o["fake_a"], o["x_a"]) + l1m(o["fake_b"], o["x_b"]))
    )
    - 0.1
    * (
      cm(o["f_rec_a"], o["id_real"]) + cm(o["f_rec_b"], o["id_real"])
      + 0.05 * cm(o["f_rec_a"], o["f_rec_b"])
      + cm(o["f_fake_a"], o["id_fake"]) + cm(o["f_fake_b"], o["id_fake"])
      + 0.05 * cm(o["f_fake_a"], o["f_fake_b"])
    )
  )  # fmt: skip
  jout = {k: jnp.asarray(v, jnp.float32) for k, v in out.items()}
  terms = hfr.generator_terms(jout)
  assert "kl" not in terms and "adv" not in terms
  np.testing.assert_allclose(hfr.generator_total(terms, hfr.GeneratorWeights()), ref, rtol=1e-5)
  # the paper's extra terms switch on with their weights
  mu, lv = r.normal(size=(b, d)), r.normal(size=(b, d)) * 0.3
  dl = r.normal(size=(b,))
  jout.update(mu_a=mu, logvar_a=lv, mu_b=mu[::-1], logvar_b=lv[::-1], d_fake=dl)
  terms = hfr.generator_terms(jout)
  kl = 0.5 * (mu**2 + np.exp(lv) - 1 - lv).sum(-1).mean()  # same value for the reversed copy
  adv = np.log1p(np.exp(-dl)).mean()
  w = hfr.GeneratorWeights(kl=0.5, adv=2.0)
  np.testing.assert_allclose(hfr.generator_total(terms, w), ref + 0.5 * kl + 2.0 * adv, rtol=1e-5)
  with pytest.raises(ValueError, match="GeneratorWeights.pix"):
    hfr.GeneratorWeights(pix=-1.0)


def test_gan_and_sampler_losses():
  real, fake = np.asarray([0.5, -1.0]), np.asarray([2.0, 0.0])
  np.testing.assert_allclose(
    hfr.d_nonsaturating(real, fake), np.log1p(np.exp(-real)) + np.log1p(np.exp(fake)), rtol=1e-6
  )
  np.testing.assert_allclose(hfr.g_nonsaturating(fake), np.log1p(np.exp(-fake)), rtol=1e-6)
  r = _rng(4)
  f, rec = _unit(r.normal(size=(3, 5))), r.normal(size=(3, 5))
  mu, lv = r.normal(size=(3, 2)), r.normal(size=(3, 2))
  cos = (f * _unit(rec)).sum(-1)
  kl = 0.5 * (mu**2 + np.exp(lv) - 1 - lv).sum(-1)
  np.testing.assert_allclose(
    hfr.sampler_loss(f, rec, mu, lv, kl_weight=0.3), 1 - cos + 0.3 * kl, rtol=1e-5
  )
