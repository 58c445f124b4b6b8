import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.utils.arrays import is_concrete, masked_mean


def test_is_concrete_outside_and_inside_transforms():
  x = jnp.ones(3)
  assert is_concrete(x) and is_concrete(np.ones(3)) and is_concrete(2.0)
  seen = []
  jax.jit(lambda v: seen.append(is_concrete(v)) or v)(x)
  jax.grad(lambda v: seen.append(is_concrete(v)) or jnp.sum(v))(x)
  jax.vmap(lambda v: seen.append(is_concrete(v)) or v)(x)
  assert seen == [False, False, False]


def test_masked_mean_matches_numpy():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(5,)).astype(np.float32)
  m = np.array([1, 0, 1, 1, 0], bool)
  np.testing.assert_allclose(masked_mean(x, m), x[m].mean(), rtol=1e-6)
  np.testing.assert_allclose(masked_mean(x), x.mean(), rtol=1e-6)
  assert float(masked_mean(x, np.zeros(5, bool))) == 0.0


def test_masked_mean_broadcasts_over_trailing_axes():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 4, 3)).astype(np.float32)
  m = np.array([[1, 1, 0, 0], [0, 0, 0, 0]], bool)
  got = np.asarray(masked_mean(x, m, axis=1))
  np.testing.assert_allclose(got[0], x[0, :2].mean(0), rtol=1e-6)
  np.testing.assert_array_equal(got[1], np.zeros(3))  # no valid node: 0, not NaN


def test_masked_mean_rejects_mask_that_is_not_a_prefix():
  with pytest.raises(ValueError, match=r"mask shape \(3,\)"):
    masked_mean(jnp.ones((2, 3)), jnp.ones(3, bool))
