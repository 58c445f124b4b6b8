"""Re-ID CMC/mAP vs a brute-force per-query loop (torchreid protocol)."""

import numpy as np
import pytest

from vision_jax import metrics as M


def _brute(dist, qp, gp, qc, gc, max_rank, junk=-1):
  cmcs, aps = [], []
  for i in range(len(qp)):
    order = sorted(range(len(gp)), key=lambda j: (dist[i, j], j))
    kept = [j for j in order if not (gp[j] == qp[i] and gc[j] == qc[i]) and gp[j] != junk]
    match = [gp[j] == qp[i] for j in kept]
    if not any(match):
      continue
    first = match.index(True)
    cmcs.append([1.0 if first <= k else 0.0 for k in range(max_rank)])
    hits, precs = 0, []
    for r, m in enumerate(match, start=1):
      if m:
        hits += 1
        precs.append(hits / r)
    aps.append(np.mean(precs))
  return np.mean(cmcs, axis=0), np.mean(aps), len(aps)


def _data(q=30, g=80, seed=0):
  rng = np.random.default_rng(seed)
  qp = rng.integers(1, 10, size=q)
  gp = rng.integers(-1, 10, size=g)  # -1 junk, 0 distractors
  qc, gc = rng.integers(0, 3, size=q), rng.integers(0, 3, size=g)
  qp[0] = 99  # absent from the gallery
  qp[1] = 9
  gc[gp == 9] = qc[1]  # all mates of query 1 share its camera -> invalid query
  dist = rng.random((q, g))
  return dist, qp, gp, qc, gc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force(seed):
  dist, qp, gp, qc, gc = _data(seed=seed)
  res = M.reid_cmc_map(dist, qp, gp, qc, gc, max_rank=20, chunk=7)
  cmc, mAP, n = _brute(dist, qp, gp, qc, gc, 20)
  np.testing.assert_allclose(res.cmc, cmc)
  assert res.mAP == pytest.approx(mAP)
  assert res.num_valid_queries == n and res.rank1 == cmc[0]
  assert n <= len(qp) - 2  # queries 0 and 1 have no valid mate and are skipped


def test_same_camera_same_id_excluded_and_junk():
  # Query pid 1 cam 0. Gallery: same id same cam (closest, excluded), junk, distractor, true match.
  dist = np.array([[0.1, 0.2, 0.3, 0.4]])
  res = M.reid_cmc_map(dist, [1], [1, -1, 0, 1], [0], [0, 1, 1, 2], max_rank=3)
  np.testing.assert_allclose(res.cmc, [0.0, 1.0, 1.0])  # distractor first, then match
  assert res.mAP == pytest.approx(0.5)
  res_keep_junk = M.reid_cmc_map(dist, [1], [1, -1, 0, 1], [0], [0, 1, 1, 2], junk_pid=None)
  assert res_keep_junk.mAP == pytest.approx(1 / 3)


def test_masks_and_euclidean():
  rng = np.random.default_rng(4)
  qf, gf = rng.normal(size=(12, 5)), rng.normal(size=(40, 5))
  qp, gp = rng.integers(1, 5, 12), rng.integers(0, 5, 40)
  qc, gc = rng.integers(0, 2, 12), rng.integers(0, 2, 40)
  d = M.pairwise_distance(qf, gf, metric="euclidean")
  np.testing.assert_allclose(d, ((qf[:, None] - gf[None]) ** 2).sum(-1), atol=1e-9)
  qm, gm = np.arange(12) < 10, np.arange(40) < 33
  a = M.reid_cmc_map(d, qp, gp, qc, gc, query_mask=qm, gallery_mask=gm, max_rank=10)
  b = M.reid_cmc_map(d[:10, :33], qp[:10], gp[:33], qc[:10], gc[:33], max_rank=10)
  np.testing.assert_allclose(a.cmc, b.cmc)
  assert a.mAP == b.mAP
  with pytest.raises(ValueError, match="shapes disagree"):
    M.reid_cmc_map(d, qp[:5], gp, qc, gc)
