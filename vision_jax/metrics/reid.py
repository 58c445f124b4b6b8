"""Person re-identification protocol (Market-1501 / DukeMTMC-reID): CMC rank-k and mAP.

Host-side NumPy over a query x gallery distance matrix (smaller = more similar), following the
standard protocol as implemented in torchreid ``metrics/rank.py`` (``eval_market1501``):

* for each query, gallery items with the **same pid and the same camera** are removed;
* gallery items with the junk pid (-1 in Market-1501) are removed (torchreid drops them when
  loading the dataset; the official MATLAB code lists them as junk); distractors (pid 0) stay
  and count as wrong matches;
* queries with no remaining true match are skipped (not counted as failures);
* CMC(k) = fraction of valid queries with a true match in the top k; AP = mean of precision@k
  at the ranks of the true matches; mAP = mean AP over valid queries. No re-ranking.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vision_jax.metrics._checks import feature_matrix, unit_rows


@dataclasses.dataclass(frozen=True)
class ReIDResult:
  """CMC curve ``[max_rank]`` (``cmc[k-1]`` = rank-k), mAP, mINP, and the number of valid queries."""

  cmc: np.ndarray
  mAP: float
  mINP: float
  num_valid_queries: int

  @property
  def rank1(self) -> float:
    return float(self.cmc[0])


def pairwise_distance(query_features, gallery_features, *, metric: str = "cosine") -> np.ndarray:
  """``[Q, G]`` distances: ``"cosine"`` (1 - cos) or ``"euclidean"`` (squared L2).

  Raises:
    ValueError: unknown metric, shapes that are not ``[n, dim]`` with equal dim, or NaN/Inf
      features (the message names ``query_features`` / ``gallery_features`` and the row).
  """
  q, g = np.shape(query_features), np.shape(gallery_features)
  if len(q) != 2 or len(g) != 2 or q[1] != g[1]:
    raise ValueError(f"query {q} and gallery {g} must be [n, dim] with equal dim.")
  if metric not in ("cosine", "euclidean"):
    raise ValueError(f"metric={metric!r}; expected 'cosine' or 'euclidean'.")
  if metric == "cosine":
    q = unit_rows(query_features, "query_features")
    g = unit_rows(gallery_features, "gallery_features")
    return 1.0 - q @ g.T
  q = feature_matrix(query_features, "query_features")
  g = feature_matrix(gallery_features, "gallery_features")
  return np.maximum((q**2).sum(1)[:, None] + (g**2).sum(1)[None, :] - 2.0 * q @ g.T, 0.0)


def reid_cmc_map(
  distances,
  query_pids,
  gallery_pids,
  query_camids,
  gallery_camids,
  *,
  max_rank: int = 50,
  junk_pid: int | None = -1,
  query_mask=None,
  gallery_mask=None,
  chunk: int = 256,
) -> ReIDResult:
  """CMC and mAP for single-query re-ID with same-camera filtering.

  Args:
    distances: ``[num_query, num_gallery]`` (smaller = more similar).
    query_pids, gallery_pids: ``[num_query]``, ``[num_gallery]`` int identities.
    query_camids, gallery_camids: camera ids, same shapes.
    max_rank: length of the CMC curve (clipped to the gallery size).
    junk_pid: gallery pid removed from every ranking (Market-1501: -1); None keeps all.
    query_mask, gallery_mask: optional bool masks for padded rows/columns (False = ignore).
    chunk: queries processed per vectorised block (memory ``chunk x num_gallery``).

  Returns:
    ``ReIDResult``; ``cmc``/``mAP``/``mINP`` in [0, 1].

  Raises:
    ValueError: shape mismatches or no valid query.

  References:
    L. Zheng et al. Scalable Person Re-identification: A Benchmark. ICCV 2015 (Market-1501).
    K. Zhou, T. Xiang. Torchreid (``eval_market1501``), arXiv:1910.10093. mINP: M. Ye et al.
    Deep Learning for Person Re-identification: A Survey and Outlook. TPAMI 2021.
  """
  dist = np.asarray(distances, np.float64)
  qp, gp = np.asarray(query_pids).reshape(-1), np.asarray(gallery_pids).reshape(-1)
  qc, gc = np.asarray(query_camids).reshape(-1), np.asarray(gallery_camids).reshape(-1)
  if (
    dist.ndim != 2
    or dist.shape != (len(qp), len(gp))
    or qc.shape != qp.shape
    or gc.shape != gp.shape
  ):
    raise ValueError(
      f"shapes disagree: distances {dist.shape}, query pids/cams {qp.shape}/"
      f"{qc.shape}, gallery pids/cams {gp.shape}/{gc.shape}."
    )
  if query_mask is not None:
    qm = np.asarray(query_mask, bool)
    dist, qp, qc = dist[qm], qp[qm], qc[qm]
  gkeep = np.ones(len(gp), bool) if gallery_mask is None else np.asarray(gallery_mask, bool)
  if junk_pid is not None:
    gkeep &= gp != junk_pid
  dist, gp, gc = dist[:, gkeep], gp[gkeep], gc[gkeep]
  if not np.isfinite(dist).all():
    raise ValueError("distances contain non-finite values.")
  num_g = dist.shape[1]
  max_rank = min(max_rank, num_g)

  cmc_sum = np.zeros(max_rank)
  ap_sum = inp_sum = 0.0
  valid = 0
  for s in range(0, dist.shape[0], chunk):
    d = dist[s : s + chunk]
    order = np.argsort(d, axis=1, kind="stable")
    g_pid, g_cam = gp[order], gc[order]
    q_pid, q_cam = qp[s : s + chunk, None], qc[s : s + chunk, None]
    keep = ~((g_pid == q_pid) & (g_cam == q_cam))
    match = (g_pid == q_pid) & keep
    num_rel = match.sum(axis=1)
    ok = num_rel > 0
    pos = np.cumsum(keep, axis=1)  # 1-based rank among kept items
    # Rank of the first true match among kept items.
    first = np.where(match, pos, np.iinfo(np.int64).max).min(axis=1)
    last = np.where(match, pos, 0).max(axis=1)
    cmc_sum += (first[ok, None] <= np.arange(1, max_rank + 1)[None, :]).sum(axis=0)
    hits = np.cumsum(match, axis=1)
    prec = np.where(match, hits / np.maximum(pos, 1), 0.0).sum(axis=1)
    ap_sum += float((prec[ok] / num_rel[ok]).sum())
    inp_sum += float((num_rel[ok] / last[ok]).sum())
    valid += int(ok.sum())
  if valid == 0:
    raise ValueError("no query has a true match in the gallery (after same-camera filtering).")
  return ReIDResult(cmc_sum / valid, ap_sum / valid, inp_sum / valid, valid)
