"""Frontalization losses against hand-written NumPy formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax import frontalization as fr

RNG = np.random.default_rng(0)


def test_total_variation_and_symmetry_match_numpy():
  x = RNG.random((3, 5, 6, 2)).astype(np.float32)
  tv = np.abs(x[:, 1:] - x[:, :-1]).mean((1, 2, 3)) + np.abs(x[:, :, 1:] - x[:, :, :-1]).mean(
    (1, 2, 3)
  )
  np.testing.assert_allclose(np.asarray(fr.total_variation(jnp.asarray(x))), tv, rtol=1e-5)
  sym = np.abs(x - x[:, :, ::-1]).mean((1, 2, 3))
  np.testing.assert_allclose(np.asarray(fr.symmetry(jnp.asarray(x))), sym, rtol=1e-5)
  mirrored = np.concatenate([x[:, :, :3], x[:, :, :3][:, :, ::-1]], 2)
  np.testing.assert_allclose(np.asarray(fr.symmetry(jnp.asarray(mirrored))), 0.0, atol=1e-7)
  np.testing.assert_allclose(
    np.asarray(fr.pixel_l1(jnp.asarray(x), jnp.zeros_like(x))), x.mean((1, 2, 3)), rtol=1e-5
  )


def test_identity_distance_is_one_minus_cosine():
  a, b = RNG.normal(size=(4, 7)), RNG.normal(size=(4, 7))
  cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
  got = fr.identity_distance(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
  np.testing.assert_allclose(np.asarray(got), 1 - cos, rtol=1e-5, atol=1e-6)


def test_adversarial_pairs_match_their_formulas():
  a, b = RNG.normal(size=5).astype(np.float32), RNG.normal(size=5).astype(np.float32)
  sp = lambda v: np.log1p(np.exp(v))  # noqa: E731
  np.testing.assert_allclose(np.asarray(fr.d_adversarial(a, b)), sp(-a) + sp(b), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(fr.g_adversarial(b)), sp(-b), rtol=1e-5)
  hinge = np.maximum(0, 1 - a) + np.maximum(0, 1 + b)
  np.testing.assert_allclose(np.asarray(fr.d_adversarial(a, b, "hinge")), hinge, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(fr.g_adversarial(b, "hinge")), -b, rtol=1e-6)
  with pytest.raises(ValueError, match="adversarial='wgan'"):
    fr.d_adversarial(a, b, "wgan")


def test_region_losses_average_only_present_images():
  real, fake = RNG.normal(size=(3, 4)), RNG.normal(size=(3, 4))
  present = np.array([[1, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]], bool)
  sp = lambda v: np.log1p(np.exp(v))  # noqa: E731
  want_d = sum((sp(-real[r]) + sp(fake[r]))[present[r]].mean() for r in (0, 2))
  want_g = sum(sp(-fake[r])[present[r]].mean() for r in (0, 2))
  got_d = fr.region_d_loss(jnp.asarray(real), jnp.asarray(fake), jnp.asarray(present))
  got_g = fr.region_g_loss(jnp.asarray(fake), jnp.asarray(present))
  np.testing.assert_allclose(float(got_d), want_d, rtol=1e-5)
  np.testing.assert_allclose(float(got_g), want_g, rtol=1e-5)


def test_generator_total_is_the_weighted_sum():
  w = fr.FrontalizationWeights(pixel=2.0, identity=0.5, adv=0.1, parsing_adv=0.2, tv=0.01, sym=0.3)
  t = dict(pixel=1.0, identity=2.0, adv=3.0, parsing_adv=4.0, tv=5.0, sym=6.0)
  want = 2 * 1 + 0.5 * 2 + 0.1 * 3 + 0.2 * 4 + 0.01 * 5 + 0.3 * 6
  np.testing.assert_allclose(
    float(fr.generator_total({k: jnp.asarray(v) for k, v in t.items()}, w)), want, rtol=1e-6
  )
  del t["parsing_adv"]  # the baseline has no parsing term
  np.testing.assert_allclose(float(fr.generator_total(t, w)), want - 0.8, rtol=1e-6)
  with pytest.raises(ValueError, match="FrontalizationWeights.tv=-1.0"):
    fr.FrontalizationWeights(tv=-1.0)


def test_losses_have_finite_gradients_at_a_constant_image():
  x = jnp.full((2, 8, 8, 1), 0.5)
  g = jax.grad(lambda v: jnp.sum(fr.total_variation(v) + fr.symmetry(v)))(x)
  assert np.all(np.isfinite(np.asarray(g)))
