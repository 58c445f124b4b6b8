"""Long-tailed subsets and head/medium/tail groups against hand-computed values."""

import numpy as np
import pytest

from vision_jax.data import longtail


def test_counts_match_cifar10_lt_profile():
  # CIFAR-10-LT, rho=100: LDAM-DRW's published per-class counts.
  got = longtail.long_tailed_counts(5000, 10, 100)
  np.testing.assert_array_equal(got, [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50])
  # rho=10 by hand: 6000 * 0.1**(c/9).
  want = [int(6000 * 0.1 ** (c / 9)) for c in range(10)]
  np.testing.assert_array_equal(longtail.long_tailed_counts(6000, 10, 10), want)


def test_indices_per_class_counts_and_seed():
  labels = np.repeat(np.arange(5), 40)[np.random.default_rng(0).permutation(200)]
  idx = longtail.long_tailed_indices(labels, imbalance_ratio=8, seed=1)
  np.testing.assert_array_equal(np.bincount(labels[idx], minlength=5), [40, 23, 14, 8, 5])
  assert np.all(np.diff(idx) > 0)  # sorted, unique
  again = longtail.long_tailed_indices(labels, imbalance_ratio=8, seed=1)
  other = longtail.long_tailed_indices(labels, imbalance_ratio=8, seed=2)
  np.testing.assert_array_equal(idx, again)
  assert not np.array_equal(idx, other)
  bal = longtail.long_tailed_indices(labels, imbalance_ratio=1, seed=0)
  np.testing.assert_array_equal(bal, np.arange(200))


def test_indices_errors():
  labels = np.array([0, 0, 0, 1])
  with pytest.raises(ValueError, match="class 1 has 1"):
    longtail.long_tailed_indices(labels, imbalance_ratio=1.2, seed=0, n_max=3)
  with pytest.raises(ValueError, match="imbalance_ratio"):
    longtail.long_tailed_indices(labels, imbalance_ratio=0.5, seed=0)


def test_head_medium_tail_thirds_and_oltr():
  counts = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
  g = longtail.head_medium_tail_split(counts)
  np.testing.assert_array_equal(g["head"], [0, 1, 2])
  np.testing.assert_array_equal(g["medium"], [3, 4, 5, 6])
  np.testing.assert_array_equal(g["tail"], [7, 8, 9])
  shuffled = [50, 5000, 83, 2997]  # ranks: 1 > 3 > 2 > 0; round(1.2) = 1
  g = longtail.head_medium_tail_split(shuffled)
  assert g["head"].tolist() == [1] and g["tail"].tolist() == [0] and g["medium"].tolist() == [2, 3]
  g = longtail.head_medium_tail_split([500, 101, 100, 20, 19, 3], rule="oltr")
  assert (
    g["head"].tolist() == [0, 1] and g["medium"].tolist() == [2, 3] and g["tail"].tolist() == [4, 5]
  )
  with pytest.raises(ValueError, match="rule"):
    longtail.head_medium_tail_split(counts, rule="x")
