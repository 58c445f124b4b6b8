"""YouTube-8M metrics vs brute-force ports of the starter code's loops, on tie-free scores."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from vision_jax.metrics import video


def _data(v=40, c=30, seed=0, p=0.1):
  rng = np.random.default_rng(seed)
  scores = rng.permutation(v * c).reshape(v, c) / (v * c) + 1e-3  # distinct, positive
  labels = (rng.random((v, c)) < p).astype(np.int64)
  labels[0] = 0  # one video without labels
  return scores, labels


def _ap_loop(pairs, num_positives):
  """``ap_at_n(n=None)``: walk the list sorted by score, sum precision at every hit."""
  if num_positives == 0:
    return 0.0
  pairs = sorted(pairs, key=lambda t: t[0], reverse=True)
  hits, ap = 0, 0.0
  for i, (_, y) in enumerate(pairs):
    if y > 0:
      hits += 1
      ap += hits / (i + 1) / num_positives
  return ap


def _topk_triplets(scores, labels, k):
  out = []
  for v in range(scores.shape[0]):
    order = sorted(range(scores.shape[1]), key=lambda c: -scores[v, c])[:k]
    out += [(c, scores[v, c], labels[v, c]) for c in order]
  return out


def brute_gap(scores, labels, k):
  trip = _topk_triplets(scores, labels, k)
  return _ap_loop([(s, y) for _, s, y in trip], int(labels.sum()))


def brute_map(scores, labels, k):
  trip = _topk_triplets(scores, labels, k)
  aps = []
  for c in range(scores.shape[1]):
    if labels[:, c].sum() > 0:
      aps.append(_ap_loop([(s, y) for cc, s, y in trip if cc == c], int(labels[:, c].sum())))
  return float(np.mean(aps))


def brute_perr(scores, labels):
  total = 0.0
  for v in range(scores.shape[0]):
    n = int(labels[v].sum())
    top = (
      sorted(range(scores.shape[1]), key=lambda c: -scores[v, c])[:n]
      if n
      else range(scores.shape[1])
    )
    hits = sum(labels[v, c] for c in top if scores[v, c] > 0)
    total += hits / len(top)
  return total / scores.shape[0]


@pytest.mark.parametrize("k", [1, 3, 20, 50])
def test_gap_and_map_match_bruteforce(k):
  s, y = _data(seed=k)
  assert video.gap_at_k(s, y, k) == pytest.approx(brute_gap(s, y, k), rel=1e-12)
  assert video.mean_average_precision(s, y, k) == pytest.approx(brute_map(s, y, k), rel=1e-12)


def test_gap_identity_with_sklearn():
  s, y = _data(seed=7)
  top = np.argsort(-s, 1)[:, :20]
  rows = np.arange(s.shape[0])[:, None]
  ls, ly = s[rows, top].ravel(), y[rows, top].ravel()
  expected = average_precision_score(ly, ls) * ly.sum() / y.sum()
  assert video.gap_at_k(s, y, 20) == pytest.approx(expected, rel=1e-9)


def test_hit_and_perr_match_bruteforce():
  s, y = _data(seed=3, p=0.2)
  s[5] -= 1.0  # some non-positive scores: PERR must not count them
  hit = np.mean([y[v, np.argmax(s[v])] for v in range(s.shape[0])])
  assert video.hit_at_one(s, y) == pytest.approx(hit)
  assert video.precision_at_equal_recall_rate(s, y) == pytest.approx(brute_perr(s, y), rel=1e-12)
  # Hand case: both labels in the top 2, but one has a negative score -> not counted.
  hand_y, hand_s = np.array([[1, 1, 0]]), np.array([[0.5, -0.1, -0.2]])
  assert video.precision_at_equal_recall_rate(hand_s, hand_y) == pytest.approx(0.5)
  assert video.precision_at_equal_recall_rate(hand_s + 1, hand_y) == pytest.approx(1.0)


def test_perfect_and_hand_values():
  y = np.array([[1, 0, 1, 0], [0, 1, 0, 0]])
  s = np.array([[0.9, 0.1, 0.8, 0.2], [0.3, 0.7, 0.2, 0.1]])
  m = video.youtube8m_metrics(s, y, k=2)
  assert m == {"gap": 1.0, "hit_at_1": 1.0, "perr": 1.0, "map": 1.0}
  # k=1: the pooled list is [(0.9, +), (0.7, +)] but there are 3 positives: GAP = 2/3.
  assert video.gap_at_k(s, y, 1) == pytest.approx(2 / 3)
  # Swap video 0's scores: pooled k=2 list 0.9(-) 0.8(-) 0.7(+) 0.3(-): AP = (1/3) / 3.
  s2 = s.copy()
  s2[0] = [0.2, 0.9, 0.1, 0.8]
  assert video.gap_at_k(s2, y, 2) == pytest.approx(1 / 9)


def test_bad_input():
  s, y = _data()
  with pytest.raises(ValueError, match="labels shape"):
    video.gap_at_k(s, y[:, :3])
  with pytest.raises(ValueError, match="k=0"):
    video.gap_at_k(s, y, 0)
  with pytest.raises(ValueError, match="NaN"):
    video.hit_at_one(np.full_like(s, np.nan), y)
  with pytest.raises(ValueError, match=r"\[num_videos, num_classes\]"):
    video.precision_at_equal_recall_rate(s[0], y[0])
