"""Hamming-ranking retrieval metrics for binary codes (host-side NumPy).

All functions take ±1 codes ``[Q, L]`` (queries) and ``[N, L]`` (database), and labels given as
integer class ids ``[Q]`` / ``[N]`` or multi-hot rows ``[Q, C]`` / ``[N, C]``. A database item is
*relevant* to a query when they share at least one label. The Hamming distance is
``d = (L - q·b) / 2``.

Conventions follow DeepHash-pytorch (``CalcTopMap``) except for one deliberate fix: the ranking
breaks Hamming ties by database index (a stable sort) instead of NumPy's default unstable
``argsort``, so results are reproducible (DeepHash-pytorch issue #33). ``tie_aware=True`` gives
the expected AP over all orderings of tied items instead.

References:
  Cao, Long, Wang, Yu. "HashNet: Deep Learning to Hash by Continuation." ICCV 2017,
  arXiv:1702.00758 (mAP@K protocol, P@H<=2).
  McSherry, Najork. "Computing Information Retrieval Performance Measures Efficiently in the
  Presence of Tied Scores." ECIR 2008 (tie-aware measures).
  He, Cakir, Bargal, Sclaroff. "Hashing as Tie-Aware Learning to Rank." CVPR 2018,
  arXiv:1705.08562 (why ties matter for Hamming ranking).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import special

# Queries are processed in chunks of ~4M (query, item) pairs: measured fastest on CPU (1.7x
# faster than 16M chunks for 1,000 x 64,000).
_CHUNK_ELEMENTS = 1 << 22


def _as_codes(x, name: str) -> np.ndarray:
  if x is None:
    raise ValueError(f"{name} is None; pass ±1 codes of shape [num, bits] (e.g. np.sign(h)).")
  a = np.asarray(x)
  if a.ndim != 2:
    raise ValueError(f"{name} must be 2-D [num, bits], got shape {a.shape}.")
  if a.shape[1] == 0:
    raise ValueError(f"{name} has code length 0 (shape {a.shape}); codes need >= 1 bit.")
  if a.dtype == np.bool_:
    raise TypeError(f"{name} is bool; pass ±1 codes, e.g. np.where(bits, 1, -1).")
  ok = (a == 1) | (a == -1)
  if not np.all(ok):
    raise ValueError(
      f"{name} must contain only -1 and +1; saw values such as {np.unique(a[~ok])[:5]}. "
      "Binarise real outputs with np.where(h >= 0, 1, -1) first (np.sign maps 0 to 0)."
    )
  return a.astype(np.float32)


def _as_labels(x, name: str, num: int) -> np.ndarray:
  if x is None:
    raise ValueError(
      f"{name} is missing (None); retrieval metrics need labels: int class ids [num] or multi-hot "
      "[num, classes]."
    )
  a = np.asarray(x)
  if a.ndim not in (1, 2):
    raise ValueError(
      f"{name} must be int ids [num] or multi-hot [num, classes], got shape {a.shape}."
    )
  if a.shape[0] != num:
    raise ValueError(
      f"{name} has {a.shape[0]} rows but the matching codes have {num}; they must align."
    )
  if a.dtype.kind == "f":
    if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
      raise ValueError(f"{name} must hold integers (class ids or 0/1 multi-hot), got {a.dtype}.")
    a = a.astype(np.int64)
  elif a.dtype.kind not in "biu":
    raise TypeError(f"{name} must be an integer or bool array, got dtype {a.dtype}.")
  if a.ndim == 2:
    if not np.all((a == 0) | (a == 1)):
      raise ValueError(f"multi-hot {name} must contain only 0/1 entries.")
    a = a.astype(np.float32)
  return a


def _apply_mask(a: np.ndarray, mask, name: str) -> np.ndarray:
  if mask is None:
    return a
  m = np.asarray(mask)
  if m.shape != (a.shape[0],):
    raise ValueError(f"{name} must have shape ({a.shape[0]},), got {m.shape}.")
  return a[m.astype(bool)]


def _prepare(query_codes, db_codes, query_labels, db_labels, query_mask=None, db_mask=None):
  """Validates inputs and applies masks. Returns (q, d, ql, dl) as float32 / label arrays."""
  q = _as_codes(query_codes, "query_codes")
  d = _as_codes(db_codes, "db_codes")
  if q.shape[1] != d.shape[1]:
    raise ValueError(
      f"code length mismatch: query_codes has {q.shape[1]} bits, db_codes has {d.shape[1]}; "
      "encode both with the same hash layer."
    )
  ql = _as_labels(query_labels, "query_labels", q.shape[0])
  dl = _as_labels(db_labels, "db_labels", d.shape[0])
  if ql.ndim != dl.ndim or (ql.ndim == 2 and ql.shape[1] != dl.shape[1]):
    raise ValueError(
      f"query_labels {ql.shape} and db_labels {dl.shape} must both be int ids [num] or both "
      "multi-hot with the same number of classes."
    )
  q, ql = _apply_mask(q, query_mask, "query_mask"), _apply_mask(ql, query_mask, "query_mask")
  d, dl = _apply_mask(d, db_mask, "db_mask"), _apply_mask(dl, db_mask, "db_mask")
  if d.shape[0] == 0:
    raise ValueError("the database is empty (db_codes has 0 rows after masking); nothing to rank.")
  if q.shape[0] == 0:
    raise ValueError("there are no queries (query_codes has 0 rows after masking).")
  return q, d, ql, dl


def _relevance(ql: np.ndarray, dl: np.ndarray) -> np.ndarray:
  if ql.ndim == 1:
    return ql[:, None] == dl[None, :]
  return (ql @ dl.T) > 0


def _distance(q: np.ndarray, d: np.ndarray) -> np.ndarray:
  # float32 matmul of ±1 entries is exact for L < 2**24; int16 keeps NumPy's stable sort a radix
  # sort (O(N) per row).
  bits = q.shape[1]
  dist = np.rint(0.5 * (bits - q @ d.T))
  return dist.astype(np.int16 if bits < 2**15 else np.int32)


def _chunks(num_queries: int, num_db: int):
  step = max(1, _CHUNK_ELEMENTS // max(num_db, 1))
  for start in range(0, num_queries, step):
    yield slice(start, min(start + step, num_queries))


def hamming_distance(query_codes, db_codes) -> np.ndarray:
  r"""Pairwise Hamming distances between ±1 codes.

  .. math:: d(q, b) = \tfrac{1}{2}(L - q^\top b)

  Args:
    query_codes: ±1 codes ``[Q, L]``.
    db_codes: ±1 codes ``[N, L]``.

  Returns:
    int32 ``[Q, N]`` distances in ``[0, L]``.

  Raises:
    ValueError: non-±1 entries, non-2-D inputs or a code-length mismatch.
  """
  q = _as_codes(query_codes, "query_codes")
  d = _as_codes(db_codes, "db_codes")
  if q.shape[1] != d.shape[1]:
    raise ValueError(
      f"code length mismatch: query_codes has {q.shape[1]} bits, db_codes has {d.shape[1]}."
    )
  return _distance(q, d).astype(np.int32)


def _check_topk(topk, num_db: int) -> int:
  if topk is None:
    return num_db
  if isinstance(topk, bool) or not isinstance(topk, int | np.integer) or topk < 1:
    raise ValueError(f"topk must be None (all) or a positive int, got {topk!r}.")
  return int(min(topk, num_db))


def _ap_stable(dist: np.ndarray, rel: np.ndarray, k: int) -> np.ndarray:
  order = np.argsort(dist, axis=1, kind="stable")[:, :k]
  hits = np.take_along_axis(rel, order, axis=1)
  cum = np.cumsum(hits, axis=1, dtype=np.int64)
  # Precision is only needed at the relevant ranks: gather them instead of dividing everywhere.
  rows, cols = np.nonzero(hits)
  prec = cum[rows, cols] / (cols + 1.0)
  prec_sum = np.bincount(rows, weights=prec, minlength=dist.shape[0])
  num_hits = cum[:, -1]
  return np.where(num_hits > 0, prec_sum / np.maximum(num_hits, 1), 0.0)


def _group_counts(dist: np.ndarray, rel: np.ndarray, bits: int):
  """Per-query histograms over distance values: items n[q, d] and relevant items r[q, d]."""
  rows = dist.shape[0]
  flat = (dist.astype(np.int64) + (bits + 1) * np.arange(rows, dtype=np.int64)[:, None]).ravel()
  size = rows * (bits + 1)
  n = np.bincount(flat, minlength=size).reshape(rows, bits + 1)
  r = np.bincount(flat, weights=rel.ravel().astype(np.float64), minlength=size)
  return n, np.rint(r).astype(np.int64).reshape(rows, bits + 1)


def _log_comb(n, k):
  return special.gammaln(n + 1.0) - special.gammaln(k + 1.0) - special.gammaln(n - k + 1.0)


def _hypergeom_pmf(x: np.ndarray, total: int, good: int, draws: int) -> np.ndarray:
  """P(X = x) for X ~ Hypergeometric(total, good, draws), in log space (no scipy.stats overhead)."""
  x = x.astype(np.float64)
  log_p = _log_comb(good, x) + _log_comb(total - good, draws - x) - _log_comb(total, draws)
  return np.exp(log_p)


def _ap_tie_aware(dist: np.ndarray, rel: np.ndarray, k: int, bits: int) -> np.ndarray:
  """Expected AP@k over uniformly random orderings within each group of equal distance."""
  n, r = _group_counts(dist, rel, bits)
  num_db = dist.shape[1]
  harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, num_db + 1, dtype=np.float64))])
  start = np.cumsum(n, axis=1) - n  # items ranked before each group
  before = np.cumsum(r, axis=1) - r  # relevant items ranked before each group

  def expected_sum(s, size, rel_in, rel_before):
    # E[sum of precision over relevant items placed at ranks s+1..s+size], the rel_in relevant
    # items being uniformly spread over those `size` slots:
    #   sum_j (rel_in/size) * (rel_before + 1 + (j-1)(rel_in-1)/(size-1)) / (s+j).
    safe = np.maximum(size, 1)
    h1 = harmonic[s + size] - harmonic[s]
    h2 = size - (s + 1) * h1
    c = np.where(size > 1, (rel_in - 1) / np.maximum(size - 1, 1), 0.0)
    return np.where(size > 0, rel_in / safe * ((rel_before + 1) * h1 + c * h2), 0.0)

  full = (start + n) <= k
  contrib = np.where(full, expected_sum(start, n, r, before), 0.0)
  s_full = contrib.sum(axis=1)
  r_full = np.where(full, r, 0).sum(axis=1)
  ap = np.where(r_full > 0, s_full / np.maximum(r_full, 1), 0.0)

  # The group straddling rank k: X ~ Hypergeometric(n_b, r_b, m) of its relevant items fall in
  # the first m = k - s_b slots, and AP@k divides by r_full + X (DeepHash-pytorch normalisation).
  straddle = (start < k) & (start + n > k)
  for qi, g in zip(*np.nonzero(straddle)):
    s, nb, rb = int(start[qi, g]), int(n[qi, g]), int(r[qi, g])
    a = int(before[qi, g])
    m = k - s
    xs = np.arange(max(0, m - (nb - rb)), min(m, rb) + 1)
    pmf = _hypergeom_pmf(xs, nb, rb, m)
    t = expected_sum(np.full(xs.shape, s), np.full(xs.shape, m), xs.astype(np.float64), a)
    denom = a + xs
    vals = np.where(denom > 0, (s_full[qi] + t) / np.maximum(denom, 1), 0.0)
    ap[qi] = float(np.sum(pmf * vals))
  return ap


def retrieval_average_precision(
  query_codes,
  db_codes,
  query_labels,
  db_labels,
  *,
  topk: int | None = None,
  tie_aware: bool = False,
  query_mask=None,
  db_mask=None,
) -> np.ndarray:
  r"""Per-query AP@K under Hamming ranking.

  With the database sorted by Hamming distance to query :math:`q` (ties by database index),
  :math:`\mathrm{rel}_i \in \{0, 1\}` the relevance of rank :math:`i`, :math:`P@i` the precision
  of the first :math:`i` items and :math:`R_K = \sum_{i \le K} \mathrm{rel}_i`,

  .. math:: \mathrm{AP@K}(q) = \frac{1}{R_K} \sum_{i=1}^{K} \mathrm{rel}_i \, P@i,
     \qquad \mathrm{AP@K}(q) = 0 \text{ if } R_K = 0.

  Choice: normalised by :math:`R_K`, the relevant items *retrieved within the top K*, as
  DeepHash-pytorch ``CalcTopMap`` does (not by all relevant items in the database); for
  ``topk=None`` both coincide. Unlike DeepHash-pytorch, ties are broken by database index (stable
  sort) and ``K = N`` really covers all N items.

  ``tie_aware=True`` returns instead :math:`\mathbb{E}_\pi[\mathrm{AP@K}]`, the exact expectation
  over orderings :math:`\pi` drawn uniformly at random within each group of equal Hamming
  distance: the averaging-over-tied-orderings semantics of McSherry & Najork (2008), derived
  here in closed form (per group, the expected precision at each slot) and checked against a
  brute-force average over all within-group permutations. Choice: with a finite K the group
  straddling rank K makes :math:`R_K` random; the expectation of the ratio is computed exactly
  by summing over the hypergeometric number of relevant items of that group inside the top K
  (not as a ratio of expectations).

  Args:
    query_codes: ±1 codes ``[Q, L]``.
    db_codes: ±1 codes ``[N, L]``.
    query_labels: int class ids ``[Q]`` or multi-hot ``[Q, C]``.
    db_labels: int class ids ``[N]`` or multi-hot ``[N, C]`` (same kind as ``query_labels``).
    topk: K; ``None`` means all N items; values above N are clipped to N.
    tie_aware: expected AP over random orderings of tied items instead of index tie-breaking.
    query_mask: optional bool ``[Q]``; False rows (padding) are dropped.
    db_mask: optional bool ``[N]``; False rows (padding) are dropped.

  Returns:
    float64 ``[Q']`` AP per (unmasked) query, in ``[0, 1]``.

  Raises:
    ValueError: non-±1 codes, code-length mismatch, empty database, missing or misaligned labels,
      bad ``topk``.
  """
  q, d, ql, dl = _prepare(query_codes, db_codes, query_labels, db_labels, query_mask, db_mask)
  k = _check_topk(topk, d.shape[0])
  out = np.empty(q.shape[0], np.float64)
  for sl in _chunks(q.shape[0], d.shape[0]):
    dist = _distance(q[sl], d)
    rel = _relevance(ql[sl], dl)
    out[sl] = _ap_tie_aware(dist, rel, k, q.shape[1]) if tie_aware else _ap_stable(dist, rel, k)
  return out


def retrieval_map(
  query_codes,
  db_codes,
  query_labels,
  db_labels,
  *,
  topk: int | None = None,
  tie_aware: bool = False,
  query_mask=None,
  db_mask=None,
) -> float:
  r"""Mean average precision mAP@K with Hamming ranking (DeepHash-pytorch protocol).

  .. math:: \mathrm{mAP@K} = \frac{1}{Q} \sum_{q} \mathrm{AP@K}(q)

  See :func:`retrieval_average_precision` for AP@K, the tie handling and the ``Choice:`` notes.
  Queries with no relevant item in the top K count as 0. Typical K: all for CIFAR-10, 5,000 for
  NUS-WIDE and MS-COCO, 1,000 for ImageNet-100.

  Args:
    query_codes: ±1 codes ``[Q, L]``.
    db_codes: ±1 codes ``[N, L]``.
    query_labels: int class ids ``[Q]`` or multi-hot ``[Q, C]``.
    db_labels: int class ids ``[N]`` or multi-hot ``[N, C]``.
    topk: K; ``None`` means all.
    tie_aware: expected AP over random orderings of equal-distance items.
    query_mask: optional bool ``[Q]``.
    db_mask: optional bool ``[N]``.

  Returns:
    mAP@K as a Python float in ``[0, 1]``.

  Raises:
    ValueError: see :func:`retrieval_average_precision`.

  References:
    Cao et al., "HashNet: Deep Learning to Hash by Continuation", ICCV 2017, arXiv:1702.00758.
    McSherry & Najork, "Computing Information Retrieval Performance Measures Efficiently in the
    Presence of Tied Scores", ECIR 2008.
  """
  ap = retrieval_average_precision(
    query_codes,
    db_codes,
    query_labels,
    db_labels,
    topk=topk,
    tie_aware=tie_aware,
    query_mask=query_mask,
    db_mask=db_mask,
  )
  return float(np.mean(ap))


class PrecisionRecallCurve(NamedTuple):
  """Hamming-radius precision–recall curve; every field is ``[L + 1]``, indexed by radius."""

  radius: np.ndarray
  precision: np.ndarray
  recall: np.ndarray
  coverage: np.ndarray  # fraction of queries that retrieve >= 1 item at this radius


def _radius_counts(q, d, ql, dl):
  """Cumulative (retrieved, relevant-retrieved) counts per query and radius, and #relevant."""
  bits = q.shape[1]
  ret, tp, tot = [], [], []
  for sl in _chunks(q.shape[0], d.shape[0]):
    rel = _relevance(ql[sl], dl)
    n, r = _group_counts(_distance(q[sl], d), rel, bits)
    ret.append(np.cumsum(n, axis=1))
    tp.append(np.cumsum(r, axis=1))
    tot.append(rel.sum(axis=1))
  return np.concatenate(ret), np.concatenate(tp), np.concatenate(tot)


def precision_at_hamming_radius(
  query_codes,
  db_codes,
  query_labels,
  db_labels,
  *,
  radius: int = 2,
  query_mask=None,
  db_mask=None,
) -> float:
  r"""Mean precision of the items within Hamming radius ``radius`` (P@H≤2 by default).

  .. math:: P@H{\le}r = \frac{1}{Q}\sum_q
     \frac{|\{b : d(q,b) \le r,\ b \text{ relevant}\}|}{|\{b : d(q,b) \le r\}|}

  Choice: a query that retrieves nothing within the radius scores 0 (the HashNet / DCH
  convention for Hamming-space retrieval), so the metric also penalises empty hash buckets.

  Args:
    query_codes: ±1 codes ``[Q, L]``.
    db_codes: ±1 codes ``[N, L]``.
    query_labels: int class ids ``[Q]`` or multi-hot ``[Q, C]``.
    db_labels: int class ids ``[N]`` or multi-hot ``[N, C]``.
    radius: Hamming radius r >= 0.
    query_mask: optional bool ``[Q]``.
    db_mask: optional bool ``[N]``.

  Returns:
    Mean precision as a Python float in ``[0, 1]``.

  Raises:
    ValueError: see :func:`retrieval_average_precision`; negative radius.

  References:
    Cao, Long, Liu, Wang. "Deep Cauchy Hashing for Hamming Space Retrieval." CVPR 2018.
  """
  if isinstance(radius, bool) or not isinstance(radius, int | np.integer) or radius < 0:
    raise ValueError(f"radius must be an int >= 0, got {radius!r}.")
  q, d, ql, dl = _prepare(query_codes, db_codes, query_labels, db_labels, query_mask, db_mask)
  r = min(int(radius), q.shape[1])
  ret, tp, _ = _radius_counts(q, d, ql, dl)
  ret, tp = ret[:, r], tp[:, r]
  prec = np.where(ret > 0, tp / np.maximum(ret, 1), 0.0)
  return float(np.mean(prec))


def precision_recall_curve(
  query_codes, db_codes, query_labels, db_labels, *, query_mask=None, db_mask=None
) -> PrecisionRecallCurve:
  r"""Precision and recall of Hamming-ball retrieval for every radius ``r = 0..L``.

  For each query, the retrieved set at radius r is :math:`\{b : d(q, b) \le r\}`;
  precision = relevant retrieved / retrieved, recall = relevant retrieved / relevant.

  Choice: precision at radius r averages over the queries that retrieve at least one item (its
  ``coverage`` field says what fraction that is; precision is 0 where coverage is 0), recall
  averages over the queries that have at least one relevant item. DeepHash-pytorch instead
  averages precision over queries with non-zero precision, which inflates it.

  Args:
    query_codes: ±1 codes ``[Q, L]``.
    db_codes: ±1 codes ``[N, L]``.
    query_labels: int class ids ``[Q]`` or multi-hot ``[Q, C]``.
    db_labels: int class ids ``[N]`` or multi-hot ``[N, C]``.
    query_mask: optional bool ``[Q]``.
    db_mask: optional bool ``[N]``.

  Returns:
    :class:`PrecisionRecallCurve` with ``[L + 1]`` arrays (radius, precision, recall, coverage).

  Raises:
    ValueError: see :func:`retrieval_average_precision`.
  """
  q, d, ql, dl = _prepare(query_codes, db_codes, query_labels, db_labels, query_mask, db_mask)
  ret, tp, tot = _radius_counts(q, d, ql, dl)
  has_ret = ret > 0
  cnt = has_ret.sum(axis=0)
  prec_q = np.where(has_ret, tp / np.maximum(ret, 1), 0.0)
  precision = np.where(cnt > 0, prec_q.sum(axis=0) / np.maximum(cnt, 1), 0.0)
  has_rel = tot > 0
  if np.any(has_rel):
    recall = (tp[has_rel] / tot[has_rel][:, None]).mean(axis=0)
  else:
    recall = np.zeros(q.shape[1] + 1)
  return PrecisionRecallCurve(
    radius=np.arange(q.shape[1] + 1),
    precision=precision,
    recall=recall,
    coverage=cnt / q.shape[0],
  )
