"""Regression-aware focal loss and the detection loss against NumPy by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.detection import detection_loss, encode, regression_aware_focal_loss, smooth_l1


def _focal_np(x, y, alpha, gamma):
  p = 1 / (1 + np.exp(-x))
  pt = np.where(y == 1, p, 1 - p)
  at = np.where(y == 1, alpha, 1 - alpha)
  return -at * (1 - pt) ** gamma * np.log(pt)


def _sl1_np(x, beta):
  ax = np.abs(x)
  return np.where(ax < beta, 0.5 * x**2 / beta, ax - 0.5 * beta)


def test_focal_weights_per_label():
  logits = np.array([1.5, -0.3, 0.7, -2.0, 0.2], np.float32)
  labels = np.array([1, 2, 0, -1, 2])
  weights = np.array([1.0, 0.8, 1.0, 0.0, 0.6], np.float32)
  got = np.asarray(regression_aware_focal_loss(logits, labels, weights, alpha=0.25, gamma=2.0))
  y = (labels > 0).astype(int)
  want = _focal_np(logits.astype(np.float64), y, 0.25, 2.0) * np.array([1, 0.8, 1, 0, 0.6])
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert got[3] == 0.0  # ignored


def test_smooth_l1():
  x = np.array([-1.0, -0.05, 0.0, 0.05, 0.5], np.float32)
  np.testing.assert_allclose(np.asarray(smooth_l1(x, 0.11)), _sl1_np(x, 0.11), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(smooth_l1(x, 0.0)), np.abs(x))


@pytest.mark.parametrize("comp_box", [True, False])
def test_detection_loss_by_hand(comp_box):
  rng = np.random.default_rng(0)
  b, a = 2, 5
  anchors = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [10, 10, 30, 30], [0, 20, 8, 28],
                      [20, 0, 40, 20]], np.float32)  # fmt: skip
  gt = np.array(
    [[[1, 1, 11, 12], [10, 12, 28, 30], [0, 0, 0, 0]],
     [[20, 1, 38, 19], [0, 0, 0, 0], [0, 0, 0, 0]]], np.float32,
  )  # fmt: skip
  labels = np.array([[1, 2, 1, 0, -1], [0, 0, 0, 2, 1]])
  matched = np.array([[0, 0, 1, 0, 0], [0, 0, 0, 0, 0]])
  weights = np.array([[1, 0.7, 1, 1, 0], [1, 1, 1, 0.55, 1]], np.float32)
  logits = rng.normal(size=(b, a)).astype(np.float32)
  deltas = rng.normal(size=(b, a, 4)).astype(np.float32)
  out = detection_loss(
    logits, deltas, anchors, labels, matched, weights, gt, alpha=0.25, gamma=2.0, beta=0.11,
    box_weight=2.0, compensated_box_loss=comp_box,
  )  # fmt: skip
  n_pos = 5
  cls = _focal_np(logits.astype(np.float64), (labels > 0).astype(int), 0.25, 2.0)
  cls = np.sum(cls * np.where(labels == -1, 0, weights)) / n_pos
  box = 0.0
  for i in range(b):
    for j in range(a):
      if labels[i, j] == 1 or (labels[i, j] == 2 and comp_box):
        t = np.asarray(encode(gt[i, matched[i, j]][None], anchors[j][None]))[0]
        box += _sl1_np(deltas[i, j] - t, 0.11).sum()
  box /= n_pos
  np.testing.assert_allclose(float(out["num_pos"]), n_pos)
  np.testing.assert_allclose(float(out["cls_loss"]), cls, rtol=1e-5)
  np.testing.assert_allclose(float(out["box_loss"]), box, rtol=1e-5)
  np.testing.assert_allclose(float(out["loss"]), cls + 2.0 * box, rtol=1e-5)
  # Gradients are finite and flow only to the box deltas of anchors with a box loss.
  grad = jax.grad(
    lambda d: detection_loss(
      logits, d, anchors, labels, matched, weights, gt, compensated_box_loss=comp_box
    )["loss"]
  )(jnp.asarray(deltas))
  grad = np.asarray(grad)
  assert np.all(np.isfinite(grad))
  boxed = (labels == 1) | ((labels == 2) & comp_box)
  assert np.all(grad[~boxed] == 0) and np.all(np.abs(grad[boxed]).sum(-1) > 0)


def test_no_positives_is_finite():
  out = detection_loss(
    np.zeros((1, 2), np.float32), np.zeros((1, 2, 4), np.float32),
    np.array([[0, 0, 4, 4], [4, 4, 8, 8]], np.float32), np.zeros((1, 2), int),
    np.zeros((1, 2), int), np.ones((1, 2), np.float32), np.zeros((1, 1, 4), np.float32),
  )  # fmt: skip
  assert np.isfinite(float(out["loss"])) and float(out["box_loss"]) == 0.0


def test_bad_shapes():
  with pytest.raises(ValueError, match="weights must have shape"):
    regression_aware_focal_loss(np.zeros(3), np.zeros(3, int), np.zeros(2))
  with pytest.raises(ValueError, match="box_deltas must have shape"):
    detection_loss(
      np.zeros((1, 2)), np.zeros((1, 3, 4)), np.zeros((2, 4)), np.zeros((1, 2), int),
      np.zeros((1, 2), int), np.ones((1, 2)), np.zeros((1, 1, 4)),
    )  # fmt: skip
