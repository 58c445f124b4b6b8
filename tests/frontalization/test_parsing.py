"""Parsing regions: masks and region pooling against NumPy brute force."""

import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax import frontalization as fr


def test_region_masks_match_numpy_isin():
  p = np.random.default_rng(0).integers(0, 6, (2, 8, 8))
  m = np.asarray(fr.region_masks(jnp.asarray(p)))
  assert m.shape == (3, 2, 8, 8)
  for r, (_, labels) in enumerate(fr.DEFAULT_REGIONS):
    np.testing.assert_array_equal(m[r], np.isin(p, labels).astype(np.float32))
  # the default regions cover every face label once and leave the background out
  assert np.all(m.sum(0) == (p > 0))


def test_region_pool_matches_brute_force():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(3, 4, 4)).astype(np.float32)
  mask = (rng.random((3, 16, 16)) < 0.3).astype(np.float32)
  mask[2] = 0.0  # an image without the region
  got, present = fr.region_pool(jnp.asarray(logits), jnp.asarray(mask))
  for b in range(3):
    num = den = 0.0
    for i in range(4):
      for j in range(4):
        w = mask[b, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].mean()
        num += w * logits[b, i, j]
        den += w
    want = num / den if den > 0 else 0.0
    np.testing.assert_allclose(float(got[b]), want, rtol=1e-5, atol=1e-6)
    assert bool(present[b]) == (den > 0)


def test_region_pool_of_a_full_mask_is_the_plain_mean():
  logits = np.random.default_rng(2).normal(size=(2, 8, 8)).astype(np.float32)
  got, _ = fr.region_pool(jnp.asarray(logits), jnp.ones((2, 16, 16)))
  np.testing.assert_allclose(np.asarray(got), logits.mean(axis=(1, 2)), rtol=1e-5)


def test_bad_regions_and_sizes_raise():
  with pytest.raises(ValueError, match="label 1 .*skin.* in both regions"):
    fr.check_regions((("a", (1, 2)), ("b", (1,))))
  with pytest.raises(ValueError, match="label 9"):
    fr.check_regions((("a", (9,)),))
  with pytest.raises(ValueError, match=r"mask \(2, 10, 10\)"):
    fr.region_pool(jnp.zeros((2, 4, 4)), jnp.zeros((2, 10, 10)))


def test_missing_or_bad_parsing_maps_raise():
  x = np.zeros((2, 8, 8, 1), np.uint8)
  with pytest.raises(ValueError, match="no 'frontal_parsing'.*gen.parsing_d|no 'frontal_parsing'"):
    fr.check_parsing_batch({"frontal": x, "image": x})
  with pytest.raises(ValueError, match=r"shape \(2, 4, 4\); expected \[B, H, W\] = \(2, 8, 8\)"):
    fr.check_parsing_batch({"frontal": x, "frontal_parsing": np.zeros((2, 4, 4), np.uint8)})
  with pytest.raises(ValueError, match="integer labels"):
    fr.check_parsing_batch({"frontal": x, "frontal_parsing": np.zeros((2, 8, 8), np.float32)})
