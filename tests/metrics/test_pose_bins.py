"""Pose-binned Rank-1 identification against a brute-force loop."""

import numpy as np
import pytest

from vision_jax.metrics import (
  check_poses,
  pooled_rank1,
  rank1_per_pose,
  rank1_table,
  subject_disjoint_split,
)

POSES = [(0, 0), (-60, 0), (60, 0), (0, 15), (-30, 15), (90, 0)]  # not a product


def _brute(pf, pl, pp, gf, gl, poses):
  out = {}
  for pose in poses:
    hits = n = 0
    for f, lab, q in zip(pf, pl, pp):
      if tuple(q) != tuple(pose):
        continue
      n += 1
      sims = [np.dot(f, g) / np.linalg.norm(f) / np.linalg.norm(g) for g in gf]
      best_true = max(s for s, l in zip(sims, gl) if l == lab)
      wrong_above = sum(1 for s, l in zip(sims, gl) if l != lab and s >= best_true)
      hits += wrong_above == 0
    out[tuple(pose)] = (hits / n if n else np.nan, n)
  return out


def test_rank1_per_pose_matches_brute_force():
  rng = np.random.default_rng(0)
  subjects, dim = 7, 6
  gf = rng.normal(size=(subjects, dim))
  gl = np.arange(subjects) * 3 + 1  # labels need not be 0..n-1
  n = 120
  pl = rng.choice(gl, size=n)
  noise = rng.uniform(0.2, 2.0, size=(n, 1))
  pf = gf[np.searchsorted(gl, pl)] + noise * rng.normal(size=(n, dim))
  pick = rng.integers(0, len(POSES) - 1, size=n)  # pose (90, 0) never used
  pp = np.asarray(POSES, float)[pick]
  res = rank1_per_pose(pf, pl, pp, gf, gl, POSES)
  ref = _brute(pf, pl, pp, gf, gl, POSES)
  for k, pose in enumerate(POSES):
    r, c = ref[pose]
    assert res.count[k] == c
    if c:
      np.testing.assert_allclose(res.rank1[k], r, atol=1e-12)
    else:
      assert np.isnan(res.rank1[k])
  assert 0.1 < np.nanmean(res.rank1) < 0.95  # the test is not degenerate
  big = pooled_rank1(res, lambda y, p: abs(y) >= 60)
  sel = np.abs(pp[:, 0]) >= 60
  hits = sum(ref[tuple(q)][0] * ref[tuple(q)][1] for q in {tuple(x) for x in pp[sel]})
  np.testing.assert_allclose(big, hits / sel.sum(), atol=1e-12)
  yaws, pitches, table = rank1_table(res)
  np.testing.assert_array_equal(yaws, [-60, -30, 0, 60, 90])
  np.testing.assert_array_equal(pitches, [15, 0])
  np.testing.assert_allclose(table[1, 0], res.rank1[1])  # (-60, 0)
  np.testing.assert_allclose(table[0, 1], res.rank1[4])  # (-30, 15)
  assert np.isnan(table[0, 0])  # (-60, 15) is not a pose


def test_rank1_per_pose_errors():
  f = np.eye(3)
  with pytest.raises(ValueError, match=r"pose \(yaw=45.0, pitch=0.0\) is not in the pose set"):
    rank1_per_pose(f, [0, 1, 2], [(0, 0), (45, 0), (0, 0)], f, [0, 1, 2], POSES)
  with pytest.raises(ValueError, match="subject 5.*not in the gallery"):
    rank1_per_pose(f, [0, 1, 5], [(0, 0)] * 3, f, [0, 1, 2], POSES)
  with pytest.raises(ValueError, match="probe_poses must be"):
    rank1_per_pose(f, [0, 1, 2], [0, 0, 0], f, [0, 1, 2], POSES)
  with pytest.raises(ValueError, match="more than once"):
    check_poses([(0, 0), (0, 0)])


def test_subject_disjoint_split():
  subjects = np.repeat(np.array(["a", "b", "c", "d", "e"]), [3, 1, 2, 4, 2])
  test = subject_disjoint_split(subjects, num_test=2, seed=3)
  assert len(set(subjects[test])) == 2
  assert not set(subjects[test]) & set(subjects[~test])  # disjoint
  np.testing.assert_array_equal(test, subject_disjoint_split(subjects, num_test=2, seed=3))
  with pytest.raises(ValueError, match="num_test must be in \\[1, 4\\]"):
    subject_disjoint_split(subjects, num_test=5)
