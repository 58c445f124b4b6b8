"""Retrieval metrics against brute-force Python references."""

import itertools

import numpy as np
import pytest

from vision_jax.metrics import retrieval as rt


def _codes(rng, n, bits):
  return np.where(rng.random((n, bits)) < 0.5, -1, 1).astype(np.int8)


def _rel(qlab, dlab):
  if np.ndim(qlab) == 0:
    return np.array([qlab == x for x in dlab])
  return np.array([bool(np.any(np.logical_and(qlab, x))) for x in dlab])


def _ap_of_order(rel_in_order, k):
  """AP@k of one explicit ordering (list of 0/1), DeepHash-pytorch normalisation."""
  hits, total = 0, 0.0
  for i, r in enumerate(rel_in_order[:k], start=1):
    if r:
      hits += 1
      total += hits / i
  return total / hits if hits else 0.0


def _brute_ap(q, d, ql, dl, k):
  out = []
  for qi in range(len(q)):
    dist = [int(np.sum(q[qi] != x)) for x in d]
    rel = _rel(ql[qi], dl)
    order = sorted(range(len(d)), key=lambda j: (dist[j], j))
    out.append(_ap_of_order([rel[j] for j in order], k))
  return np.array(out)


def _brute_tie_aware(q, d, ql, dl, k):
  out = []
  for qi in range(len(q)):
    dist = np.array([int(np.sum(q[qi] != x)) for x in d])
    rel = _rel(ql[qi], dl)
    groups = [list(np.nonzero(dist == v)[0]) for v in sorted(set(dist.tolist()))]
    vals = []
    for perms in itertools.product(*[itertools.permutations(g) for g in groups]):
      order = [j for p in perms for j in p]
      vals.append(_ap_of_order([rel[j] for j in order], k))
    out.append(np.mean(vals))
  return np.array(out)


def test_hand_computed_ap():
  # 2-bit codes; query (1, 1). Distances: db0=2, db1=0, db2=1, db3=0.
  q = np.array([[1, 1]])
  d = np.array([[-1, -1], [1, 1], [1, -1], [1, 1]])
  ql = np.array([0])
  dl = np.array([0, 1, 0, 0])
  # Stable ranking: db1 (d0, irrelevant), db3 (d0, rel), db2 (d1, rel), db0 (d2, rel)
  # AP = (1/2 + 2/3 + 3/4) / 3.
  np.testing.assert_allclose(
    rt.retrieval_average_precision(q, d, ql, dl), [(1 / 2 + 2 / 3 + 3 / 4) / 3]
  )
  # top-2: only db3 relevant at rank 2 -> AP@2 = (1/2)/1.
  np.testing.assert_allclose(rt.retrieval_map(q, d, ql, dl, topk=2), 0.5)
  # Tie-aware @all: tie group {db1, db3} in random order: AP is mean of
  # order (db1, db3): (1/2 + 2/3 + 3/4)/3 and (db3, db1): (1 + 2/3 + 3/4)/3.
  expect = 0.5 * ((1 / 2 + 2 / 3 + 3 / 4) / 3 + (1 + 2 / 3 + 3 / 4) / 3)
  np.testing.assert_allclose(rt.retrieval_map(q, d, ql, dl, tie_aware=True), expect)
  # Tie-aware @1: the first item is relevant with prob 1/2 -> 0.5.
  np.testing.assert_allclose(rt.retrieval_map(q, d, ql, dl, topk=1, tie_aware=True), 0.5)


@pytest.mark.parametrize("multilabel", [False, True])
@pytest.mark.parametrize("topk", [None, 1, 5, 17, 1000])
def test_map_matches_brute_force(multilabel, topk):
  rng = np.random.default_rng(0 if multilabel else 1)
  q, d = _codes(rng, 7, 6), _codes(rng, 40, 6)
  if multilabel:
    ql = (rng.random((7, 4)) < 0.3).astype(np.int32)
    dl = (rng.random((40, 4)) < 0.3).astype(np.int32)
  else:
    ql, dl = rng.integers(0, 3, 7), rng.integers(0, 3, 40)
  k = 40 if topk is None else min(topk, 40)
  np.testing.assert_allclose(
    rt.retrieval_average_precision(q, d, ql, dl, topk=topk),
    _brute_ap(q, d, ql, dl, k),
    rtol=1e-12,
  )
  np.testing.assert_allclose(
    rt.retrieval_map(q, d, ql, dl, topk=topk), _brute_ap(q, d, ql, dl, k).mean(), rtol=1e-12
  )


@pytest.mark.parametrize("topk", [None, 1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tie_aware_equals_average_over_all_tie_permutations(topk, seed):
  rng = np.random.default_rng(seed)
  # 2-bit codes over 7 items -> big tie groups; multi-label to vary relevance patterns.
  q, d = _codes(rng, 4, 2), _codes(rng, 7, 2)
  ql = (rng.random((4, 3)) < 0.4).astype(np.int32)
  dl = (rng.random((7, 3)) < 0.4).astype(np.int32)
  k = 7 if topk is None else topk
  np.testing.assert_allclose(
    rt.retrieval_average_precision(q, d, ql, dl, topk=topk, tie_aware=True),
    _brute_tie_aware(q, d, ql, dl, k),
    rtol=1e-10,
    atol=1e-12,
  )


def test_tie_aware_equals_stable_without_ties():
  # Distinct distances for every item -> no ties -> both variants agree.
  bits = 6
  q = np.ones((1, bits), np.int8)
  d = np.array([[1] * (bits - i) + [-1] * i for i in range(bits + 1)], np.int8)[::-1]
  ql, dl = np.array([1]), np.array([1, 0, 1, 1, 0, 0, 1])
  for k in (None, 3):
    np.testing.assert_allclose(
      rt.retrieval_map(q, d, ql, dl, topk=k, tie_aware=True), rt.retrieval_map(q, d, ql, dl, topk=k)
    )


def test_query_with_no_relevant_scores_zero_and_masks():
  rng = np.random.default_rng(3)
  q, d = _codes(rng, 3, 8), _codes(rng, 10, 8)
  ql, dl = np.array([0, 5, 1]), rng.integers(0, 2, 10)
  ap = rt.retrieval_average_precision(q, d, ql, dl)
  assert ap[1] == 0.0
  assert rt.retrieval_map(q, d, ql, dl) == pytest.approx(ap.mean())
  qmask = np.array([True, False, True])
  dmask = np.arange(10) < 7
  np.testing.assert_allclose(
    rt.retrieval_average_precision(q, d, ql, dl, query_mask=qmask, db_mask=dmask),
    _brute_ap(q[qmask], d[:7], ql[qmask], dl[:7], 7),
  )


def test_chunking_does_not_change_result(monkeypatch):
  rng = np.random.default_rng(4)
  q, d = _codes(rng, 9, 8), _codes(rng, 30, 8)
  ql, dl = rng.integers(0, 3, 9), rng.integers(0, 3, 30)
  full = [rt.retrieval_average_precision(q, d, ql, dl, topk=7, tie_aware=t) for t in (0, 1)]
  monkeypatch.setattr(rt, "_CHUNK_ELEMENTS", 64)  # 2 queries per chunk
  for t in (0, 1):
    np.testing.assert_allclose(
      rt.retrieval_average_precision(q, d, ql, dl, topk=7, tie_aware=bool(t)), full[t]
    )


def test_hamming_distance():
  rng = np.random.default_rng(5)
  q, d = _codes(rng, 4, 13), _codes(rng, 6, 13)
  brute = np.array([[np.sum(a != b) for b in d] for a in q])
  np.testing.assert_array_equal(rt.hamming_distance(q, d), brute)


def _brute_radius(q, d, ql, dl, r):
  precs = []
  for qi in range(len(q)):
    dist = np.array([np.sum(q[qi] != x) for x in d])
    rel = _rel(ql[qi], dl)
    ret = dist <= r
    precs.append(rel[ret].sum() / ret.sum() if ret.sum() else 0.0)
  return np.mean(precs)


@pytest.mark.parametrize("radius", [0, 1, 2, 3])
def test_precision_at_radius(radius):
  rng = np.random.default_rng(6)
  q, d = _codes(rng, 8, 5), _codes(rng, 25, 5)
  ql = (rng.random((8, 3)) < 0.4).astype(np.int32)
  dl = (rng.random((25, 3)) < 0.4).astype(np.int32)
  assert rt.precision_at_hamming_radius(q, d, ql, dl, radius=radius) == pytest.approx(
    _brute_radius(q, d, ql, dl, radius)
  )


def test_precision_at_radius_empty_bucket_counts_zero():
  q = np.array([[1, 1, 1, 1]])
  d = -np.ones((3, 4))
  assert rt.precision_at_hamming_radius(q, d, np.array([0]), np.zeros(3, int)) == 0.0


def test_precision_recall_curve():
  rng = np.random.default_rng(7)
  bits = 5
  q, d = _codes(rng, 6, bits), _codes(rng, 20, bits)
  ql, dl = np.array([0, 1, 2, 9, 0, 1]), rng.integers(0, 3, 20)
  curve = rt.precision_recall_curve(q, d, ql, dl)
  for r in range(bits + 1):
    precs, recs, covered = [], [], 0
    for qi in range(len(q)):
      dist = np.array([np.sum(q[qi] != x) for x in d])
      rel = dl == ql[qi]
      ret = dist <= r
      if ret.sum():
        covered += 1
        precs.append(rel[ret].sum() / ret.sum())
      if rel.sum():
        recs.append(rel[ret].sum() / rel.sum())
    assert curve.precision[r] == pytest.approx(np.mean(precs) if precs else 0.0)
    assert curve.recall[r] == pytest.approx(np.mean(recs))
    assert curve.coverage[r] == pytest.approx(covered / len(q))
  assert curve.recall[-1] == pytest.approx(1.0)
  np.testing.assert_array_equal(curve.radius, np.arange(bits + 1))


def test_bad_inputs():
  q = np.ones((2, 8))
  d = np.ones((3, 8))
  ql, dl = np.array([0, 1]), np.array([0, 1, 1])
  with pytest.raises(ValueError, match="code length mismatch"):
    rt.retrieval_map(q, np.ones((3, 16)), ql, dl)
  with pytest.raises(ValueError, match="database is empty"):
    rt.retrieval_map(q, np.ones((0, 8)), ql, np.zeros(0, int))
  with pytest.raises(ValueError, match="db_labels is missing"):
    rt.retrieval_map(q, d, ql, None)
  with pytest.raises(ValueError, match="query_labels is missing"):
    rt.precision_at_hamming_radius(q, d, None, dl)
  with pytest.raises(ValueError, match="rows"):
    rt.retrieval_map(q, d, ql, np.array([0, 1]))
  with pytest.raises(ValueError, match="only -1 and \\+1"):
    rt.retrieval_map(q * 0.3, d, ql, dl)
  with pytest.raises(ValueError, match="both be int ids"):
    rt.retrieval_map(q, d, ql, np.eye(3, dtype=int))
  with pytest.raises(ValueError, match="topk"):
    rt.retrieval_map(q, d, ql, dl, topk=0)
  with pytest.raises(ValueError, match="radius"):
    rt.precision_at_hamming_radius(q, d, ql, dl, radius=-1)
