"""Comparison of top-k search results that tolerates near-ties (shared by the search tests)."""

import numpy as np


def assert_same_topk(a, b, tol=1e-5):
  """``(ids, scores)`` results agree: scores to ``tol``, ids wherever a score is not within
  ``tol`` of a neighbour's. Near-equal scores may swap between code paths (sharded vs not,
  native vs XLA) and CPUs, whose float summation orders differ."""
  (ia, sa), (ib, sb) = (np.asarray(a[0]), np.asarray(a[1])), (np.asarray(b[0]), np.asarray(b[1]))
  fin = np.isfinite(sa)
  np.testing.assert_array_equal(fin, np.isfinite(sb))
  np.testing.assert_allclose(sa[fin], sb[fin], rtol=tol, atol=tol)
  gap = np.full(sa.shape, np.inf)
  d = np.abs(np.diff(np.where(fin, sa, -1e30), axis=1))
  gap[:, 1:] = np.minimum(gap[:, 1:], d)
  gap[:, :-1] = np.minimum(gap[:, :-1], d)
  sure = gap > tol
  np.testing.assert_array_equal(ia[sure], ib[sure])
