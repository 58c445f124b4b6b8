"""HFR Rank-1 and VR@FAR (mean ± std over folds) against brute force."""

import numpy as np
import pytest

from vision_jax.metrics import hfr_fold_metrics, hfr_protocol_metrics


def _brute(p, pl, g, gl, fars):
  p = p / np.linalg.norm(p, axis=1, keepdims=True)
  g = g / np.linalg.norm(g, axis=1, keepdims=True)
  s = p @ g.T
  hits = 0
  for i in range(len(p)):
    true = s[i][gl == pl[i]].max()
    wrong = s[i][gl != pl[i]]
    hits += int(not np.any(wrong >= true))
  pos = [s[i, j] for i in range(len(p)) for j in range(len(g)) if pl[i] == gl[j]]
  neg = [s[i, j] for i in range(len(p)) for j in range(len(g)) if pl[i] != gl[j]]
  out = {"rank1": hits / len(p)}
  for f in fars:
    best = 0.0
    for t in sorted(set(pos + neg)) + [np.inf]:
      far = np.mean(np.asarray(neg) >= t)
      if far <= f:
        best = max(best, np.mean(np.asarray(pos) >= t))
    out[f"vr@far={f:g}"] = best
  return out


def test_fold_metrics_match_brute_force():
  r = np.random.default_rng(0)
  centers = r.normal(size=(12, 8))
  gl = np.arange(12)
  g = centers + 0.6 * r.normal(size=(12, 8))
  pl = np.repeat(np.arange(12), 9)
  p = centers[pl] + 0.9 * r.normal(size=(len(pl), 8))
  fars = (0.1, 0.02, 0.005)
  got = hfr_fold_metrics(p, pl, g, gl, fars=fars)
  ref = _brute(p, pl, g, gl, fars)
  assert set(got) == set(ref)
  for k in ref:
    assert got[k] == pytest.approx(ref[k], abs=1e-9), k
  assert 0.0 < got["rank1"] < 1.0  # not a degenerate case


def test_protocol_mean_std_over_folds():
  r = np.random.default_rng(1)
  feats = r.normal(size=(60, 5))
  labels = np.repeat(np.arange(10), 6)
  folds = []
  for k in range(3):
    rr = np.random.default_rng(k)
    gal = np.asarray([rr.choice(np.flatnonzero(labels == c)) for c in range(10)])
    probe = np.setdiff1d(np.arange(60), gal)
    folds.append((probe, gal))
  out = hfr_protocol_metrics(feats, labels, folds, fars=(0.1,))
  per = [hfr_fold_metrics(feats[p], labels[p], feats[g], labels[g], fars=(0.1,)) for p, g in folds]
  r1 = np.asarray([d["rank1"] for d in per])
  assert out["rank1"] == pytest.approx(r1.mean()) and out["rank1_std"] == pytest.approx(r1.std())
  assert out["num_folds"] == 3
  with pytest.raises(ValueError, match="fold 1: gallery rows"):
    hfr_protocol_metrics(feats, labels, [folds[0], (folds[1][0], np.asarray([99]))])
  with pytest.raises(ValueError, match="folds is empty"):
    hfr_protocol_metrics(feats, labels, [])
