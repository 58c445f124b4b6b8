"""Embedded (offline) datasets of the IR-Softmax experiment.

1. **Long-tailed Fashion-MNIST** (closed set): the train split subsampled with the exponential
   CIFAR-10-LT profile ``n_c = 6000 * rho^(-c/9)`` (class 0 = head), the balanced 10k test split.
2. **Pseudo-identity verification** (open set): every real image of scikit-image's
   ``lfw_subset`` (100 faces + 100 non-face patches, 25x25) and every natural image of
   ``skimage.data`` is one *pseudo-identity*; its samples are random crops, flips and photometric
   jitter. This is NOT LFW: identities are image instances, and "same identity" means "views of
   the same picture". It exercises the same pipeline (open-set, unseen identities, 10-fold pair
   verification, TAR@FAR) fully offline.
"""

from __future__ import annotations

import numpy as np

from vision_jax import data as vdata


def fashion_mnist_arrays(split: str, *, data_dir=None, manual_dir=None):
  """Decodes a Fashion-MNIST split (TFDS array_record source) into in-memory uint8 arrays."""
  src = vdata.materialize(
    vdata.fashion_mnist(split, data_dir=data_dir or None, manual_dir=manual_dir or None)
  )
  return src.arrays["image"].astype(np.uint8), src.arrays["label"].astype(np.int32)


def long_tailed_fashion_mnist(
  imbalance_ratio: float, *, seed: int = 0, data_dir=None, manual_dir=None, max_test: int = 0
):
  """``(train ArraySource, test ArraySource, class_counts [10])`` for one imbalance ratio."""
  x, y = fashion_mnist_arrays("train", data_dir=data_dir, manual_dir=manual_dir)
  xt, yt = fashion_mnist_arrays("test", data_dir=data_dir, manual_dir=manual_dir)
  idx = vdata.long_tailed_indices(y, imbalance_ratio=imbalance_ratio, seed=seed)
  if max_test:
    xt, yt = xt[:max_test], yt[:max_test]
  counts = np.bincount(y[idx], minlength=10)
  return (
    vdata.ArraySource({"image": x[idx], "label": y[idx]}),
    vdata.ArraySource({"image": xt, "label": yt}),
    counts,
  )


def pseudo_identities(
  *,
  image_size: int = 28,
  train_fraction: float = 0.7,
  n_max: int = 60,
  imbalance_ratio: float = 10.0,
  test_samples: int = 10,
  seed: int = 0,
):
  """Open-set pseudo-identity data.

  Identities are shuffled (seeded); the first ``train_fraction`` are training classes whose
  sample counts follow ``n_max * rho^(-rank/(K-1))`` (long-tailed, rank = shuffled order); the rest
  are unseen test identities with ``test_samples`` views each.

  Returns:
    ``(train ArraySource, test ArraySource, class_counts [K_train])``; test labels are identity
    ids local to the test set.
  """
  rng = np.random.default_rng(seed)
  bases = vdata.pseudo_identity_bases()
  order = rng.permutation(len(bases))
  k_train = int(round(train_fraction * len(bases)))
  train_ids, test_ids = order[:k_train], order[k_train:]
  counts = (
    vdata.long_tailed_counts(n_max, k_train, imbalance_ratio) if k_train > 1 else np.array([n_max])
  )
  xs, ys = [], []
  for c, b in enumerate(train_ids):
    for _ in range(int(counts[c])):
      xs.append(vdata.random_view(bases[b], rng, image_size))
      ys.append(c)
  xt, yt = [], []
  for c, b in enumerate(test_ids):
    for _ in range(test_samples):
      xt.append(vdata.random_view(bases[b], rng, image_size))
      yt.append(c)
  train = vdata.ArraySource({"image": np.stack(xs), "label": np.asarray(ys, np.int32)})
  test = vdata.ArraySource({"image": np.stack(xt), "label": np.asarray(yt, np.int32)})
  return train, test, counts


def verification_pairs(
  labels: np.ndarray, *, num_folds: int = 10, pairs_per_fold: int = 300, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """LFW-style pairs: per fold ``pairs_per_fold`` positive and as many negative pairs.

  Returns:
    ``(idx_a [P], idx_b [P], is_same bool [P])`` with ``P = 2 * num_folds * pairs_per_fold``,
    ordered fold by fold (fold f = rows ``[f * 2 * pairs_per_fold, (f + 1) * 2 * pairs_per_fold)``),
    positives first within a fold, as in LFW's ``pairs.txt``.
  """
  rng = np.random.default_rng(seed)
  labels = np.asarray(labels)
  by_id = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
  ids = [c for c, v in by_id.items() if len(v) >= 2]
  all_ids = list(by_id)
  a, b, same = [], [], []
  for _ in range(num_folds):
    for _ in range(pairs_per_fold):
      c = ids[rng.integers(len(ids))]
      i, j = rng.choice(by_id[c], 2, replace=False)
      a.append(i), b.append(j), same.append(True)
    for _ in range(pairs_per_fold):
      c1, c2 = rng.choice(len(all_ids), 2, replace=False)
      a.append(rng.choice(by_id[all_ids[c1]])), b.append(rng.choice(by_id[all_ids[c2]]))
      same.append(False)
  return np.asarray(a), np.asarray(b), np.asarray(same)
