"""YouTube-8M video-classification metrics with the starter code's semantics (``eval_util.py``).

For ``scores [V, C]`` and multi-hot ``labels [V, C]``:

* **GAP@k** (:func:`gap_at_k`): keep each video's top-``k`` (class, score) pairs, pool the
  ``V k`` pairs of all videos, sort by score and take the non-interpolated AP over that list
  with the total number of positive labels :math:`P` (inside the list or not) as denominator:

  .. math:: \\mathrm{GAP} = \\frac{1}{P} \\sum_{i=1}^{Vk} \\mathrm{prec}@i \\cdot \\mathrm{rel}_i.

* **Hit@1** (:func:`hit_at_one`): mean over videos of ``labels[v, argmax scores[v]]``.
* **PERR** (:func:`precision_at_equal_recall_rate`): for a video with ``n_v`` labels, the
  fraction of its top-``n_v`` classes that are positive *and* have score > 0, averaged over all
  videos. Starter-code quirk kept: a video with no labels scores 0 (``argpartition(.., -0)``
  selects every class) and still counts in the mean.
* **mAP** (:func:`mean_average_precision`): per class, the same AP over the entries of that class
  inside the videos' top-``k`` lists, denominator = that class's positives over all videos;
  classes with no positives are dropped (``filter_empty_classes=True``); the mean of the rest.

Ties: the starter code shuffles with a fixed seed before a stable sort, so its value under ties
is an artefact of that shuffle; here ties are broken by position (row-major video, class
order). The functions agree with the starter code exactly on tie-free scores.

References:
  Abu-El-Haija et al. "YouTube-8M: A Large-Scale Video Classification Benchmark."
  arXiv:1609.08675, 2016; google/youtube-8m ``eval_util.py``, ``average_precision_calculator.py``.
"""

from __future__ import annotations

import numpy as np


def _check(scores, labels, k=None):
  s = np.asarray(scores)
  y = np.asarray(labels)
  if s.ndim != 2:
    raise ValueError(f"scores must be [num_videos, num_classes]; got shape {s.shape}")
  if y.shape != s.shape:
    raise ValueError(f"labels shape {y.shape} must equal scores shape {s.shape}")
  if s.shape[0] == 0 or s.shape[1] == 0:
    raise ValueError(f"scores must be non-empty; got shape {s.shape}")
  s = s.astype(np.float64)
  if not np.all(np.isfinite(s)):
    raise ValueError("scores contain NaN or inf")
  if k is not None and (not isinstance(k, int | np.integer) or k < 1):
    raise ValueError(f"k={k!r}; expected a positive integer")
  return s, (y > 0)


def _top_k(s, k):
  """``[V, k']`` class ids of each row's top-``k`` scores (``k' = min(k, C)``), any order."""
  k = min(int(k), s.shape[1])
  return np.argpartition(-s, k - 1, axis=1)[:, :k]


def _ap(scores, rel, num_positives):
  if num_positives <= 0 or scores.size == 0:
    return 0.0
  order = np.argsort(-scores, kind="stable")
  r = rel[order].astype(np.float64)
  precision = np.cumsum(r) / np.arange(1, r.size + 1)
  return float(np.sum(precision * r) / num_positives)


def gap_at_k(scores, labels, k: int = 20) -> float:
  """Global average precision over the pooled per-video top-``k`` predictions (GAP@k).

  Args:
    scores: ``[V, C]`` prediction scores.
    labels: ``[V, C]`` multi-hot ground truth (any value > 0 is a positive).
    k: predictions kept per video (YouTube-8M: 20).

  Returns:
    GAP in ``[0, 1]`` (0 when there are no positives).

  Raises:
    ValueError: shapes differ / not 2-D / empty, non-finite scores, or ``k < 1``.
  """
  s, y = _check(scores, labels, k)
  top = _top_k(s, k)
  rows = np.arange(s.shape[0])[:, None]
  return _ap(s[rows, top].ravel(), y[rows, top].ravel(), int(y.sum()))


def hit_at_one(scores, labels) -> float:
  """Fraction of videos whose top-scoring class is a true label (Hit@1).

  Raises:
    ValueError: as :func:`gap_at_k`.
  """
  s, y = _check(scores, labels)
  return float(np.mean(y[np.arange(s.shape[0]), np.argmax(s, axis=1)]))


def precision_at_equal_recall_rate(scores, labels) -> float:
  """PERR averaged over all videos (counts only scores > 0; label-free videos give 0).

  Raises:
    ValueError: as :func:`gap_at_k`.
  """
  s, y = _check(scores, labels)
  total = 0.0
  for v in range(s.shape[0]):
    n = int(y[v].sum())
    if n == 0:
      continue
    top = np.argpartition(-s[v], n - 1)[:n]
    total += float(np.sum(y[v, top] & (s[v, top] > 0))) / n
  return total / s.shape[0]


def mean_average_precision(scores, labels, k: int = 20) -> float:
  """Mean over classes with positives of the per-class AP over the videos' top-``k`` lists.

  Raises:
    ValueError: as :func:`gap_at_k`.
  """
  s, y = _check(scores, labels, k)
  top = _top_k(s, k)
  kept = np.zeros_like(y)
  kept[np.arange(s.shape[0])[:, None], top] = True
  positives = y.sum(axis=0)
  aps = [
    _ap(s[kept[:, c], c], y[kept[:, c], c], int(positives[c]))
    for c in range(s.shape[1])
    if positives[c] > 0
  ]
  return float(np.mean(aps)) if aps else 0.0


def youtube8m_metrics(scores, labels, k: int = 20) -> dict[str, float]:
  """``{"gap", "hit_at_1", "perr", "map"}`` as the starter code's ``EvaluationMetrics``."""
  return {
    "gap": gap_at_k(scores, labels, k),
    "hit_at_1": hit_at_one(scores, labels),
    "perr": precision_at_equal_recall_rate(scores, labels),
    "map": mean_average_precision(scores, labels, k),
  }
