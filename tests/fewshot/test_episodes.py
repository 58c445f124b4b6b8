"""Episodic sampler and class splits: purity, disjointness, layout, and the bad-input messages."""

import numpy as np
import pytest

from vision_jax import fewshot as fs


def _groups(counts=(10, 10, 10, 10, 10, 10), splits=None):
  labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
  labels = np.random.default_rng(0).permutation(labels)
  splits = splits or {"base": [0, 1, 2], "val": [3], "novel": [4, 5]}
  return labels, fs.class_splits(labels, splits)


def test_class_splits_group_indices_by_class():
  labels, g = _groups()
  assert list(g) == ["base", "val", "novel"]
  for split in g.values():
    for c, idx in split.items():
      np.testing.assert_array_equal(idx, np.flatnonzero(labels == c))


def test_episode_is_pure_function_of_seed_and_t():
  labels, g = _groups()
  s = fs.EpisodeSampler(g["base"], num_ways=3, num_shots=2, num_queries=3, seed=7, split="base")
  s2 = fs.EpisodeSampler(g["base"], num_ways=3, num_shots=2, num_queries=3, seed=7, split="base")
  a, b = s[5], s2[5]
  for f in ("classes", "support", "query"):
    np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
  _ = s[0], s[100]  # access order does not matter
  np.testing.assert_array_equal(s[5].support, a.support)
  other = fs.EpisodeSampler(g["base"], num_ways=3, num_shots=2, num_queries=3, seed=8)
  diffs = [not np.array_equal(s[t].support, other[t].support) for t in range(10)]
  assert any(diffs)
  assert any(not np.array_equal(s[t].support, s[t + 1].support) for t in range(10))


def test_episode_layout_and_disjoint_support_query():
  labels, g = _groups()
  s = fs.EpisodeSampler(g["novel"], num_ways=2, num_shots=3, num_queries=4, seed=0)
  for t in range(20):
    e = s[t]
    assert len(set(e.classes.tolist())) == 2 and set(e.classes.tolist()) <= {4, 5}
    np.testing.assert_array_equal(e.support_labels, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(e.query_labels, np.repeat([0, 1], 4))
    np.testing.assert_array_equal(labels[e.support], e.classes[e.support_labels])
    np.testing.assert_array_equal(labels[e.query], e.classes[e.query_labels])
    assert not set(e.support.tolist()) & set(e.query.tolist())
    assert len(set(e.query.tolist())) == len(e.query)


def test_every_class_is_drawn():
  _, g = _groups()
  s = fs.EpisodeSampler(g["base"], num_ways=1, num_shots=1, num_queries=0, seed=0)
  assert {int(s[t].classes[0]) for t in range(60)} == {0, 1, 2}


def test_overlapping_splits_name_both_splits_and_the_class():
  labels = np.repeat(np.arange(4), 5)
  with pytest.raises(ValueError, match=r"class 2 is in both split 'base' and split 'novel'"):
    fs.class_splits(labels, {"base": [0, 1, 2], "novel": [2, 3]})


def test_empty_class_names_split_and_class():
  labels = np.repeat(np.arange(4), 5)
  with pytest.raises(ValueError, match=r"split 'val': class 9 has no samples"):
    fs.class_splits(labels, {"base": [0, 1], "val": [9]})


def test_too_many_ways_names_split_and_counts():
  _, g = _groups()
  with pytest.raises(ValueError, match=r"split 'val': num_ways=5 is larger than its 1 classes"):
    fs.EpisodeSampler(g["val"], num_ways=5, num_shots=1, num_queries=1, split="val")


def test_too_many_shots_plus_queries_names_split_class_and_counts():
  _, g = _groups(counts=(10, 10, 10, 10, 10, 6))
  with pytest.raises(
    ValueError, match=r"split 'novel': class 5 has 6 samples, fewer than .* = 5 \+ 2 = 7"
  ):
    fs.EpisodeSampler(g["novel"], num_ways=2, num_shots=5, num_queries=2, split="novel")


def test_episode_batches_arrays():
  labels, g = _groups()
  images = np.arange(60 * 4 * 4, dtype=np.int64).reshape(60, 4, 4, 1) % 256
  images = images.astype(np.uint8)
  s = fs.EpisodeSampler(g["base"], num_ways=2, num_shots=2, num_queries=1, seed=3, split="base")
  b = fs.EpisodeBatches(images, s, class_order=[0, 1, 2])
  x, e = b[4], s[4]
  np.testing.assert_allclose(x["support"], images[e.support] / 255.0, rtol=1e-6)
  np.testing.assert_array_equal(x["support_class"], e.classes[e.support_labels])
  np.testing.assert_array_equal(x["query_class"], e.classes[e.query_labels])
  assert x["support"].dtype == np.float32 and x["query"].shape == (2, 4, 4, 1)
  with pytest.raises(ValueError, match=r"classes \[2\] are not in class_order"):
    fs.EpisodeBatches(
      images,
      fs.EpisodeSampler(g["base"], num_ways=3, num_shots=1, num_queries=0),
      class_order=[0, 1],
    )
