"""DVG-Face networks: shapes, unit codes, AdaIN / instance norm against NumPy, bad sizes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax import hfr


def test_instance_norm_and_adain_match_numpy():
  r = np.random.default_rng(0)
  x = r.normal(size=(2, 5, 4, 3)).astype(np.float32)
  m = x.mean((1, 2), keepdims=True)
  v = x.var((1, 2), keepdims=True)
  ref = (x - m) / np.sqrt(v + 1e-5)
  np.testing.assert_allclose(hfr.instance_norm(x), ref, rtol=1e-4, atol=1e-5)
  mean, std = r.normal(size=(2, 3)), r.random((2, 3))
  np.testing.assert_allclose(
    hfr.adain(x, mean, std), std[:, None, None] * ref + mean[:, None, None], rtol=1e-4, atol=1e-5
  )


@pytest.mark.parametrize("variational", [False, True])
def test_generator_shapes_and_unit_codes(variational):
  s, c = 16, 1
  gen = hfr.DualGenerator(image_size=s, channels=c, attr_dim=12, width=4, style_hidden=(8,),
                          variational=variational)  # fmt: skip
  x = jax.random.uniform(jax.random.PRNGKey(0), (3, s, s, c))
  ident = hfr.l2_normalize(jax.random.normal(jax.random.PRNGKey(1), (3, 12)))
  v = gen.init(jax.random.PRNGKey(2), ident, x, x)
  assert {"enc_a", "enc_b", "style_a", "style_b", "dec"} <= set(v["params"])
  assert {"head_a", "head_b"} <= set(v["params"]["dec"])
  e = gen.apply(v, x, "a", jax.random.PRNGKey(3), method="encode")
  assert e["z"].shape == (3, 12) and e["style"].shape == (3, 7 * 2 * 4)
  np.testing.assert_allclose(jnp.linalg.norm(e["z"], axis=-1), 1.0, rtol=1e-5)
  assert ("mu" in e) == variational
  ya = gen.apply(v, ident, e["z"], e["style"], "a", method="decode")
  yb = gen.apply(v, ident, e["z"], e["style"], "b", method="decode")
  assert ya.shape == (3, s, s, c)
  assert float(ya.min()) >= 0.0 and float(ya.max()) <= 1.0
  assert not np.allclose(ya, yb)  # modality-specific heads
  with pytest.raises(ValueError, match="image shape"):
    gen.apply(v, jnp.zeros((1, 32, 32, c)), "b", method="encode")
  with pytest.raises(ValueError, match="modality"):
    gen.apply(v, x, "nir", method="encode")


def test_bad_sizes_raise():
  gen = hfr.DualGenerator(image_size=24, channels=1, width=4)
  x = jnp.zeros((1, 24, 24, 1))
  with pytest.raises(ValueError, match="image_size=24"):
    gen.init(jax.random.PRNGKey(0), jnp.zeros((1, 256)), x, x)


def test_sampler_and_discriminator_shapes():
  s = hfr.IdentitySampler(feature_dim=10, noise_dim=4, hidden=(8, 8, 6))
  p = s.init(jax.random.PRNGKey(0), jnp.zeros((1, 10)), jax.random.PRNGKey(1))["params"]
  f = hfr.sample_identities(s, p, jax.random.PRNGKey(2), 5)
  assert f.shape == (5, 10)
  np.testing.assert_allclose(jnp.linalg.norm(f, axis=-1), 1.0, rtol=1e-5)
  d = hfr.PairDiscriminator(width=4)
  x = jnp.zeros((3, 16, 16, 1))
  dp = d.init(jax.random.PRNGKey(0), x, x)
  assert d.apply(dp, x, x).shape == (3,)


def test_zero_vectors_have_finite_gradients():
  # a constant image gives an all-zero attribute code at init; normalising it must not NaN
  g = jax.grad(lambda x: jnp.sum(hfr.l2_normalize(x) * jnp.arange(3.0)[None]))(jnp.zeros((2, 3)))
  assert np.isfinite(np.asarray(g)).all()
  g = jax.grad(lambda x: jnp.sum(hfr.cosine(x, jnp.ones((2, 3)))))(jnp.zeros((2, 3)))
  assert np.isfinite(np.asarray(g)).all()
  np.testing.assert_allclose(hfr.l2_normalize(jnp.asarray([[3.0, 4.0]])), [[0.6, 0.8]], rtol=1e-6)
