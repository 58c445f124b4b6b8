"""Metrics: NaN features raise naming the array and the row (never NaN scores ranked silently)."""

import numpy as np
import pytest

import vision_jax.metrics as M


def _f(n=5, d=4, seed=0):
  return np.random.default_rng(seed).normal(size=(n, d))


def test_cosine_scores_nan_row():
  a, b = _f(), _f(seed=1)
  b[3, 1] = np.nan
  with pytest.raises(ValueError, match=r"features2 contain non-finite values \(NaN/Inf\) in row 3"):
    M.cosine_scores(a, b)
  np.testing.assert_allclose(
    M.cosine_scores(a, a), np.ones(5), rtol=1e-12
  )  # still the cosine of identical rows


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_pairwise_distance_nan_row(metric):
  q, g = _f(3), _f(6, seed=1)
  g[4, 0] = np.inf
  with pytest.raises(ValueError, match=r"gallery_features contain non-finite values .* row 4"):
    M.pairwise_distance(q, g, metric=metric)
  with pytest.raises(ValueError, match=r"metric='l3'"):
    M.pairwise_distance(q, g, metric="l3")


def test_identification_nan_row_named():
  p, g = _f(3), _f(6, seed=1)
  p[2, 2] = np.nan
  with pytest.raises(ValueError, match=r"probe_features contain non-finite values .* row 2"):
    M.identification_cmc(p, np.arange(3), g, np.arange(6))
