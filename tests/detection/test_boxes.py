"""Box utilities against brute-force NumPy / pure-Python references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.detection import anchor_boxes, anchor_levels, decode, encode, iou_matrix, nms


def _rand_boxes(rng, n, size=100.0):
  xy = rng.uniform(0, size, (n, 2))
  wh = rng.uniform(1, size / 3, (n, 2))
  return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def _iou_ref(a, b):
  out = np.zeros((len(a), len(b)))
  for i, p in enumerate(a):
    for j, q in enumerate(b):
      iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
      ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
      inter = iw * ih
      union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
      out[i, j] = inter / union
  return out


def test_iou_matrix_matches_brute_force():
  rng = np.random.default_rng(0)
  a, b = _rand_boxes(rng, 13), _rand_boxes(rng, 7)
  b[0] = a[3]  # identical pair -> 1
  got = np.asarray(iou_matrix(a, b))
  np.testing.assert_allclose(got, _iou_ref(a, b), rtol=1e-5, atol=1e-6)
  assert got[3, 0] == pytest.approx(1.0, abs=1e-6)


def test_iou_hand_value_and_disjoint():
  a = np.array([[0, 0, 2, 2]], np.float32)
  b = np.array([[1, 1, 3, 3], [5, 5, 6, 6]], np.float32)
  np.testing.assert_allclose(np.asarray(iou_matrix(a, b)), [[1 / 7, 0.0]], rtol=1e-6)


def test_encode_hand_value_and_round_trip():
  anchors = np.array([[0, 0, 10, 10]], np.float32)
  boxes = np.array([[1, 2, 21, 12]], np.float32)  # centre (11, 7), size (20, 10)
  t = np.asarray(encode(boxes, anchors))
  np.testing.assert_allclose(t, [[6 / 1.0, 2 / 1.0, np.log(2) / 0.2, 0.0]], rtol=1e-5, atol=1e-6)
  rng = np.random.default_rng(1)
  anc, gt = _rand_boxes(rng, 50), _rand_boxes(rng, 50)
  np.testing.assert_allclose(np.asarray(decode(encode(gt, anc), anc)), gt, rtol=1e-4, atol=1e-3)
  d = rng.normal(size=(50, 4)).astype(np.float32)
  np.testing.assert_allclose(np.asarray(encode(decode(d, anc), anc)), d, rtol=1e-4, atol=1e-4)


def test_codec_bad_input():
  with pytest.raises(ValueError, match="boxes must have a last axis of 4"):
    encode(np.zeros((3, 3)), np.zeros((3, 4)))
  with pytest.raises(ValueError, match="variances"):
    decode(np.zeros((3, 4)), np.zeros((3, 4)), (0.1, 0.0))
  with pytest.raises(ValueError, match="a must have shape"):
    iou_matrix(np.zeros((3,)), np.zeros((2, 4)))


def _greedy_nms_ref(boxes, scores, thr, max_out):
  order = sorted(range(len(scores)), key=lambda i: -scores[i])
  keep = []
  removed = set()
  for i in order:
    if i in removed:
      continue
    keep.append(i)
    for j in order:
      if j not in removed and j != i and _iou_ref(boxes[i : i + 1], boxes[j : j + 1])[0, 0] > thr:
        removed.add(j)
    removed.add(i)
    if len(keep) == max_out:
      break
  return keep


@pytest.mark.parametrize("seed,thr", [(0, 0.3), (1, 0.5), (2, 0.7)])
def test_nms_matches_greedy_python(seed, thr):
  rng = np.random.default_rng(seed)
  centres = rng.uniform(0, 60, (6, 2))
  boxes = []
  for c in centres:  # clusters of overlapping boxes
    for _ in range(10):
      xy = c + rng.normal(0, 3, 2)
      wh = rng.uniform(8, 20, 2)
      boxes.append(np.concatenate([xy, xy + wh]))
  boxes = np.asarray(boxes, np.float32)
  scores = rng.permutation(len(boxes)).astype(np.float32) / len(boxes)  # distinct
  ref = _greedy_nms_ref(boxes, scores, thr, 40)
  idx, valid = jax.jit(lambda b, s: nms(b, s, iou_threshold=thr, max_output=40))(boxes, scores)
  idx, valid = np.asarray(idx), np.asarray(valid)
  assert list(idx[valid]) == ref
  assert not valid[len(ref) :].any() and valid[: len(ref)].all()


def test_nms_score_threshold_and_max_output():
  boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], np.float32)
  scores = np.array([0.9, 0.2, 0.6], np.float32)
  idx, valid = nms(boxes, scores, iou_threshold=0.5, max_output=5, score_threshold=0.5)
  assert list(np.asarray(idx)[np.asarray(valid)]) == [0, 2]
  idx, valid = nms(boxes, scores, iou_threshold=0.5, max_output=1)
  assert list(np.asarray(idx)) == [0] and bool(valid[0])
  with pytest.raises(ValueError, match="scores must have shape"):
    nms(boxes, scores[:2], iou_threshold=0.5, max_output=2)


def test_anchor_boxes_layout():
  a = anchor_boxes((32, 48), strides=(8, 16), sizes=(16, 32), scale=0.5)
  assert a.shape == (4 * 6 + 2 * 3, 4)
  # First anchor of level 0: centre (4, 4), side 8. Second: next column (x += 8).
  np.testing.assert_allclose(a[0], [0, 0, 8, 8])
  np.testing.assert_allclose(a[1], [8, 0, 16, 8])
  np.testing.assert_allclose(a[6], [0, 8, 8, 16])  # next row
  np.testing.assert_allclose(a[24], [0, 0, 16, 16])  # level 1: centre (8, 8), side 16
  lv = anchor_levels((32, 48), (8, 16))
  assert (lv[:24] == 0).all() and (lv[24:] == 1).all()
  with pytest.raises(ValueError, match="equal length"):
    anchor_boxes((32, 32), strides=(8,), sizes=(16, 32))


def test_iou_jit_equals_eager():
  rng = np.random.default_rng(3)
  a, b = _rand_boxes(rng, 5), _rand_boxes(rng, 4)
  np.testing.assert_allclose(
    np.asarray(jax.jit(iou_matrix)(a, b)), np.asarray(iou_matrix(jnp.asarray(a), b)), rtol=1e-6
  )
