"""Episodic sampling: disjoint base / val / novel class splits and N-way K-shot Q-query episodes.

An episode ``t`` of a split is a pure function of ``(seed, t)``: the classes and the samples are
drawn with ``numpy.random.default_rng([seed, t])``, so a resumed run replays exactly the episodes an
uninterrupted run would have seen, and two methods evaluated with the same seed see the same test
episodes (which makes their per-episode accuracies paired).

References:
  Vinyals, Blundell, Lillicrap, Kavukcuoglu, Wierstra. "Matching Networks for One Shot Learning."
  NeurIPS 2016, arXiv:1606.04080 (the episodic protocol). Chen, Liu, Kira, Wang, Huang. "A Closer
  Look at Few-shot Classification." ICLR 2019, arXiv:1904.04232 (600 test episodes, 15 queries).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

SPLITS = ("base", "val", "novel")


def _as_class_list(name: str, classes) -> list[int]:
  arr = np.asarray(classes)
  if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
    raise ValueError(f"split {name!r}: classes must be a 1-D list of integer ids; got {classes!r}")
  if len(np.unique(arr)) != len(arr):
    vals, counts = np.unique(arr, return_counts=True)
    raise ValueError(f"split {name!r}: class id {int(vals[counts > 1][0])} is listed twice")
  return [int(c) for c in arr]


def class_splits(labels, splits: Mapping[str, Sequence[int]]) -> dict[str, dict[int, np.ndarray]]:
  """Groups sample indices by class for disjoint class splits.

  Args:
    labels: int ``[n]``, the class id of every sample.
    splits: ``{split name: class ids}``, e.g. ``{"base": [...], "val": [...], "novel": [...]}``.

  Returns:
    ``{split: {class id: sorted sample indices int64 [n_c]}}`` in the order the classes are given.

  Raises:
    ValueError: a class in two splits (names both splits and the class), a class with no samples
      (names the split and the class), labels not a 1-D integer array.
  """
  labels = np.asarray(labels)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(
      f"labels must be a 1-D integer array; got shape {labels.shape}, {labels.dtype}"
    )
  owner: dict[int, str] = {}
  out: dict[str, dict[int, np.ndarray]] = {}
  order = np.argsort(labels, kind="stable")
  sorted_labels = labels[order]
  for name, classes in splits.items():
    cls = _as_class_list(name, classes)
    groups = {}
    for c in cls:
      if c in owner:
        raise ValueError(
          f"class splits overlap: class {c} is in both split {owner[c]!r} and split {name!r}; "
          "base, val and novel classes must be disjoint."
        )
      owner[c] = name
      lo, hi = np.searchsorted(sorted_labels, [c, c + 1])
      if hi == lo:
        raise ValueError(f"split {name!r}: class {c} has no samples (0 of {len(labels)} labels).")
      groups[c] = np.sort(order[lo:hi]).astype(np.int64)
    out[name] = groups
  return out


@dataclasses.dataclass(frozen=True)
class Episode:
  """Indices of one episode. ``classes[j]`` is the class id of episode label ``j``.

  Layout (class-major): support ``[N * K]`` = class 0's K samples, then class 1's, ...; query
  ``[N * Q]`` likewise; ``support_labels = repeat(arange(N), K)``, ``query_labels`` with Q.
  """

  classes: np.ndarray  # int64 [N], class ids
  support: np.ndarray  # int64 [N * K], sample indices
  query: np.ndarray  # int64 [N * Q]
  support_labels: np.ndarray  # int32 [N * K], in [0, N)
  query_labels: np.ndarray  # int32 [N * Q]


class EpisodeSampler:
  """N-way K-shot Q-query episodes from one split; ``sampler[t]`` is a pure function of (seed, t).

  Args:
    groups: ``{class id: sample indices}`` of one split (from `class_splits`).
    num_ways: N, classes per episode.
    num_shots: K, support samples per class.
    num_queries: Q, query samples per class (drawn without replacement, disjoint from the support).
    seed: episode stream seed.
    split: the split's name, used in error messages.

  Raises:
    ValueError: N larger than the number of classes in the split, K + Q larger than a class's
      sample count (names the split, the class and the counts), non-positive N / K or negative Q.
  """

  def __init__(
    self,
    groups: Mapping[int, np.ndarray],
    *,
    num_ways: int,
    num_shots: int,
    num_queries: int,
    seed: int = 0,
    split: str = "novel",
  ):
    for arg, v, lo in (
      ("num_ways", num_ways, 1),
      ("num_shots", num_shots, 1),
      ("num_queries", num_queries, 0),
    ):
      if int(v) != v or v < lo:
        raise ValueError(f"split {split!r}: {arg}={v!r} must be an integer >= {lo}.")
    self.classes = np.asarray(list(groups), np.int64)
    self.groups = {int(c): np.asarray(v, np.int64) for c, v in groups.items()}
    self.num_ways, self.num_shots, self.num_queries = (
      int(num_ways),
      int(num_shots),
      int(num_queries),
    )
    self.seed, self.split = int(seed), split
    if self.num_ways > len(self.classes):
      raise ValueError(
        f"split {split!r}: num_ways={num_ways} is larger than its {len(self.classes)} classes."
      )
    need = self.num_shots + self.num_queries
    for c, idx in self.groups.items():
      if len(idx) == 0:
        raise ValueError(f"split {split!r}: class {c} has no samples.")
      if len(idx) < need:
        raise ValueError(
          f"split {split!r}: class {c} has {len(idx)} samples, fewer than num_shots + num_queries "
          f"= {self.num_shots} + {self.num_queries} = {need}."
        )

  def __len__(self) -> int:
    return np.iinfo(np.int32).max

  def __getitem__(self, t: int) -> Episode:
    if t < 0:
      raise IndexError(f"episode index must be >= 0; got {t}")
    rng = np.random.default_rng([self.seed, int(t)])
    n, k, q = self.num_ways, self.num_shots, self.num_queries
    chosen = self.classes[rng.choice(len(self.classes), n, replace=False)]
    sup, qry = [], []
    for c in chosen:
      idx = self.groups[int(c)]
      pick = idx[rng.choice(len(idx), k + q, replace=False)]
      sup.append(pick[:k])
      qry.append(pick[k:])
    return Episode(
      classes=chosen,
      support=np.concatenate(sup),
      query=np.concatenate(qry) if q else np.zeros((0,), np.int64),
      support_labels=np.repeat(np.arange(n, dtype=np.int32), k),
      query_labels=np.repeat(np.arange(n, dtype=np.int32), q),
    )


class EpisodeBatches:
  """Random-access train batches for the shared loop: ``batches[t]`` is episode ``t`` as arrays.

  Element: ``{"support": float32 [N*K, H, W, C], "support_label": int32 [N*K],
  "query": float32 [N*Q, H, W, C], "query_label": int32 [N*Q], "support_class": int32 [N*K],
  "query_class": int32 [N*Q]}``, where ``*_class`` is the position of the sample's class in
  ``class_order`` (the base-class index CRN's basis and memory use).

  Args:
    images: uint8 ``[n, H, W, C]`` (or any array indexable by sample index).
    sampler: an `EpisodeSampler`.
    class_order: class ids defining the ``*_class`` index (default: the sampler's classes).
    transform: optional ``transform(images uint8 [B, H, W, C], rng) -> float32`` augmentation;
      default scales to ``[0, 1]``.
  """

  def __init__(
    self,
    images,
    sampler: EpisodeSampler,
    *,
    class_order: Sequence[int] | None = None,
    transform: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
  ):
    self.images, self.sampler, self.transform = images, sampler, transform
    order = sampler.classes if class_order is None else np.asarray(class_order, np.int64)
    self._pos = {int(c): i for i, c in enumerate(order)}
    missing = [int(c) for c in sampler.classes if int(c) not in self._pos]
    if missing:
      raise ValueError(f"split {sampler.split!r}: classes {missing} are not in class_order.")

  def __len__(self) -> int:
    return len(self.sampler)

  def _images(self, idx, rng):
    x = np.asarray(self.images[idx])
    if self.transform is not None:
      return np.asarray(self.transform(x, rng), np.float32)
    return x.astype(np.float32) / 255.0

  def __getitem__(self, t: int) -> dict[str, np.ndarray]:
    ep = self.sampler[t]
    rng = np.random.default_rng([self.sampler.seed, int(t), 1])
    pos = np.asarray([self._pos[int(c)] for c in ep.classes], np.int32)
    return {
      "support": self._images(ep.support, rng),
      "support_label": ep.support_labels,
      "support_class": pos[ep.support_labels],
      "query": self._images(ep.query, rng),
      "query_label": ep.query_labels,
      "query_class": pos[ep.query_labels],
    }
