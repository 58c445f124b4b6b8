"""Identification rank-k (gallery + distractors) and MegaFace protocol vs brute force."""

import numpy as np
import pytest

from vision_jax import metrics as M


def _unit(x):
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def _rank_brute(scores, is_match):
  # Sort descending; among ties put wrong items first (pessimistic).
  order = sorted(range(len(scores)), key=lambda j: (-scores[j], is_match[j]))
  return 1 + [is_match[j] for j in order].index(True)


def test_identification_cmc_matches_brute_force():
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(6, 8))
  gl = np.repeat(np.arange(5), 2)
  g = centres[gl] + 0.8 * rng.normal(size=(10, 8))
  pl = rng.integers(0, 6, size=25)  # label 5 has no mate: excluded
  p = centres[pl] + 0.8 * rng.normal(size=(25, 8))
  dis = rng.normal(size=(30, 8))
  got = M.identification_cmc(p, pl, g, gl, distractor_features=dis, ranks=(1, 3, 10), chunk=4)
  items = _unit(np.vstack([g, dis]))
  labels = np.concatenate([gl, np.full(30, -1)])
  ranks = [_rank_brute(_unit(p)[i] @ items.T, labels == pl[i]) for i in range(25) if pl[i] < 5]
  for k in (1, 3, 10):
    assert got[k] == pytest.approx(np.mean(np.array(ranks) <= k))
  no_dis = M.identification_cmc(p, pl, g, gl, ranks=(1,))
  assert no_dis[1] >= got[1]


def test_ties_count_against_the_probe():
  p = np.array([[1.0, 0.0]])
  g = np.array([[1.0, 0.0], [2.0, 0.0]])  # identical similarity, wrong label second
  assert M.identification_cmc(p, [0], g, [0, 1], ranks=(1, 2)) == {1: 0.0, 2: 1.0}


def test_megaface_matches_brute_force_and_masks():
  rng = np.random.default_rng(1)
  centres = rng.normal(size=(4, 6))
  lab = np.repeat(np.arange(4), 3)
  f = centres[lab] + 0.9 * rng.normal(size=(12, 6))
  dis = rng.normal(size=(50, 6))
  got = M.megaface_identification(f, lab, dis, ranks=(1, 5), chunk=5)
  ranks = []
  fu, du = _unit(f), _unit(dis)
  for i in range(12):
    for j in range(12):
      if i != j and lab[i] == lab[j]:
        items = np.vstack([fu[j], du])
        ranks.append(_rank_brute(fu[i] @ items.T, np.arange(51) == 0))
  assert got[1] == pytest.approx(np.mean(np.array(ranks) <= 1))
  assert got[5] == pytest.approx(np.mean(np.array(ranks) <= 5))
  # Padding rows are ignored.
  fp = np.vstack([f, np.zeros((3, 6))])
  lp = np.concatenate([lab, [0, 0, 0]])
  dp = np.vstack([dis, np.ones((4, 6))])
  padded = M.megaface_identification(
    fp, lp, dp, ranks=(1, 5), mask=np.arange(15) < 12, distractor_mask=np.arange(54) < 50
  )
  assert padded == got
  with pytest.raises(ValueError, match="non-finite"):
    M.megaface_identification(np.full((2, 6), np.nan), [0, 0], dis)
