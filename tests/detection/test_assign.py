"""Standard matching and HAMBox mining on hand-made cases and against a NumPy brute force."""

import jax
import numpy as np
import pytest

from vision_jax.detection import hambox_assign, standard_assign, standard_match


def _iou(p, q):
  iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
  ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
  inter = iw * ih
  return inter / ((p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter)


def _reference(anchors, reg, gt, mask, t1, t2, k):
  """Loop-by-loop restatement of the documented rules."""
  real = [j for j in range(len(gt)) if mask[j]]
  A = len(anchors)
  labels = np.zeros(A, int)
  matched = np.zeros(A, int)
  weights = np.ones(A)
  if not real:
    return labels, matched, weights
  iou = np.array([[_iou(a, gt[j]) for j in real] for a in anchors])
  for a in range(A):
    if iou[a].max() >= t1:
      labels[a], matched[a] = 1, real[int(iou[a].argmax())]
  forced = {}
  for c in range(len(real)):
    b = int(iou[:, c].argmax())
    if iou[b, c] > 0:
      forced.setdefault(b, []).append(c)
  for b, cs in forced.items():
    c = max(cs, key=lambda c: iou[b, c])
    labels[b], matched[b] = 1, real[c]
  m = {j: int(np.sum((labels == 1) & (matched == j))) for j in real}
  riou = np.array([[_iou(r, gt[j]) for j in real] for r in reg])
  cands = {j: [] for j in real}
  for a in range(A):
    if labels[a] == 0 and riou[a].max() >= t2:
      c = int(riou[a].argmax())
      cands[real[c]].append((-riou[a, c], a))
      labels[a], weights[a] = -1, 0.0
  for j in real:
    for negr, a in sorted(cands[j])[: max(0, k - m[j])]:
      labels[a], matched[a], weights[a] = 2, j, -negr
  return labels, matched, weights


def _box(cx, cy, s):
  return [cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2]


def test_hand_made_compensation_k_limit_and_ignore():
  # Face 0 (40x40 at (50, 50)): one anchor matches it in step 1 (IoU 0.64 >= 0.35).
  gt = np.array([_box(50, 50, 40), _box(150, 150, 10), [0, 0, 0, 0]], np.float32)
  mask = np.array([True, True, False])
  anchors = [_box(50, 50, 32)]  # IoU 0.64 with face 0
  anchors += [_box(10 + 12 * i, 120, 16) for i in range(6)]  # far from both faces
  anchors += [_box(150, 150, 16)]  # IoU (10/16)^2 = 0.39 with face 1
  anchors = np.array(anchors, np.float32)
  reg = anchors.copy()
  # Six unmatched anchors regress onto face 0 with decreasing quality.
  quality = [0.95, 0.9, 0.8, 0.7, 0.6, 0.4]
  for i, q in enumerate(quality):
    s = 40 * np.sqrt(q)  # concentric: IoU = s^2 / 40^2 = q
    reg[1 + i] = _box(50, 50, s)
  labels, matched, weights = map(np.asarray, hambox_assign(anchors, reg, gt, mask))
  # M_0 = 1 -> K - M = 4 compensated (the top 4 regressed IoUs), the 5th candidate (0.6)
  # passes T2 = 0.5 but is not selected -> ignored; 0.4 stays negative.
  np.testing.assert_array_equal(labels, [1, 2, 2, 2, 2, -1, 0, 1])
  np.testing.assert_array_equal(matched[:5], [0, 0, 0, 0, 0])
  assert matched[7] == 1
  np.testing.assert_allclose(weights, [1, 0.95, 0.9, 0.8, 0.7, 0, 1, 1], rtol=1e-4)
  # K = 1: face 0 already has M = K anchors -> nothing compensated, all candidates ignored.
  labels1, _, w1 = map(np.asarray, hambox_assign(anchors, reg, gt, mask, k=1))
  np.testing.assert_array_equal(labels1, [1, -1, -1, -1, -1, -1, 0, 1])
  np.testing.assert_allclose(w1, [1, 0, 0, 0, 0, 0, 1, 1])
  # Standard matching ignores the regressed boxes entirely.
  ls, ms, ws = map(np.asarray, standard_assign(anchors, reg, gt, mask))
  np.testing.assert_array_equal(ls, [1, 0, 0, 0, 0, 0, 0, 1])
  np.testing.assert_allclose(ws, 1.0)


def test_masked_gt_never_matches():
  anchors = np.array([_box(20, 20, 16), _box(60, 60, 16)], np.float32)
  gt = np.array([_box(20, 20, 16), _box(60, 60, 16)], np.float32)
  mask = np.array([True, False])
  labels, matched, weights = map(np.asarray, hambox_assign(anchors, anchors.copy(), gt, mask))
  np.testing.assert_array_equal(labels, [1, 0])  # anchor 1 sits exactly on a padded box
  no_faces = hambox_assign(anchors, anchors, gt, np.array([False, False]))
  np.testing.assert_array_equal(np.asarray(no_faces[0]), [0, 0])


def test_best_anchor_forced_below_threshold():
  anchors = np.array([_box(20, 20, 16), _box(60, 60, 16)], np.float32)
  gt = np.array([_box(61, 61, 40)], np.float32)  # IoU 0.16 < 0.35 with anchor 1
  labels, matched, _ = map(np.asarray, standard_match(anchors, gt, np.array([True])))
  np.testing.assert_array_equal(labels, [0, 1])


@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force_reference(seed):
  rng = np.random.default_rng(seed)
  cx, cy = np.meshgrid(np.arange(4, 64, 8.0), np.arange(4, 64, 8.0))
  anchors = np.stack([cx.ravel() - 6, cy.ravel() - 6, cx.ravel() + 6, cy.ravel() + 6], 1)
  anchors = anchors.astype(np.float32)
  g = 6
  xy = rng.uniform(0, 50, (g, 2))
  gt = np.concatenate([xy, xy + rng.uniform(6, 24, (g, 2))], 1).astype(np.float32)
  mask = rng.uniform(size=g) < 0.8
  mask[0] = True
  # Regressed boxes: each anchor pulled toward a random face (some land close, most do not).
  tgt = gt[rng.integers(0, g, len(anchors))]
  lam = rng.uniform(0, 1, (len(anchors), 1))
  reg = (lam * tgt + (1 - lam) * anchors + rng.normal(0, 1, anchors.shape)).astype(np.float32)
  reg[:, 2:] = np.maximum(reg[:, 2:], reg[:, :2] + 1)
  for k in (1, 3, 5):
    got = jax.jit(hambox_assign, static_argnames="k")(anchors, reg, gt, mask, k=k)
    want = _reference(anchors, reg, gt, mask, 0.35, 0.5, k)
    labels, matched, weights = map(np.asarray, got)
    np.testing.assert_array_equal(labels, want[0])
    pos = labels > 0
    np.testing.assert_array_equal(matched[pos], want[1][pos])
    np.testing.assert_allclose(weights, want[2], rtol=1e-4, atol=1e-6)
    assert (labels == 2).sum() > 0 or k == 1  # the case exercises compensation


def test_bad_input():
  a = np.zeros((3, 4), np.float32)
  with pytest.raises(ValueError, match="regressed must have shape"):
    hambox_assign(a, a[:2], a, np.ones(3, bool))
  with pytest.raises(ValueError, match="gt_mask must have shape"):
    hambox_assign(a, a, a, np.ones(2, bool))
  with pytest.raises(ValueError, match="t2=1.5"):
    hambox_assign(a, a, a, np.ones(3, bool), t2=1.5)
  with pytest.raises(ValueError, match="k must be"):
    hambox_assign(a, a, a, np.ones(3, bool), k=0)
