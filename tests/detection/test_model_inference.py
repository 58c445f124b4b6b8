"""Detector shapes, inference coordinate mapping (scales, flip) and the eval summary."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vision_jax.detection import anchor_boxes, encode, iou_matrix
from vision_jax.detection.inference import detect, postprocess
from vision_jax.detection.model import build_detector
from vision_jax.detection.task import summarize_detections
from vision_jax.metrics import wider_face_ap


def _mcfg(**kw):
  base = dict(stage_sizes=(1, 1), block="basic", width=0.125, stem="imagenet", strides=(4, 8, 16),
              channels=8, head_depth=1, prior_prob=0.01, conv_impl="xla")  # fmt: skip
  base.update(kw)
  return ml_collections.ConfigDict(base)


def test_detector_output_matches_anchor_layout():
  # Stages give strides 4 and 8; stride 16 is an extra stride-2 level (RetinaNet P6 style).
  model = build_detector(_mcfg())
  x = jnp.zeros((2, 40, 56, 1))
  v = model.init(jax.random.PRNGKey(0), x, train=False)
  logits, deltas = model.apply(v, x, train=False)
  a = anchor_boxes((40, 56), (4, 8, 16), (16, 32, 64))
  assert logits.shape == (2, len(a)) and deltas.shape == (2, len(a), 4)
  # Prior-probability init: every score starts near 0.01.
  np.testing.assert_allclose(np.asarray(jax.nn.sigmoid(logits)).mean(), 0.01, rtol=0.3)
  with pytest.raises(ValueError, match="not backbone stage strides"):
    bad = build_detector(_mcfg(strides=(2, 4)))
    bad.init(jax.random.PRNGKey(0), x, train=False)
  with pytest.raises(ValueError, match="config.model.block"):
    build_detector(_mcfg(block="dense"))


STRIDES, SIZES = (4, 8), (16, 32)


def _oracle_forward(x):
  """A perfect 'network': finds the one bright square and regresses every anchor onto it."""
  img = np.asarray(x)[0, ..., 0]
  ys, xs = np.nonzero(img > 128)
  box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
  a = anchor_boxes(img.shape, STRIDES, SIZES, scale=1.0)
  iou = np.asarray(iou_matrix(a, box))[:, 0]
  logits = 12.0 * iou - 6.0
  deltas = np.asarray(encode(np.repeat(box, len(a), 0), a))
  return jnp.asarray(logits[None]), jnp.asarray(deltas[None])


@pytest.mark.parametrize("scales,flip", [((1.0,), False), ((1.0,), True), ((0.5, 2.0), True)])
def test_detect_maps_boxes_back(scales, flip):
  img = np.zeros((1, 48, 64, 1), np.uint8)
  img[0, 10:26, 6:22] = 255  # box x1=6, y1=10, x2=22, y2=26 (asymmetric: flip matters)
  dets = detect(_oracle_forward, img, strides=STRIDES, sizes=SIZES, anchor_scale=1.0,
                scales=scales, flip=flip, nms_threshold=0.3)  # fmt: skip
  d = dets[0]
  assert d.shape[1] == 5 and np.all(np.diff(d[:, 4]) <= 0)
  np.testing.assert_allclose(d[0, :4], [6, 10, 22, 26], atol=0.6)
  # Every variant's copy of the face was merged by the final NMS.
  assert np.all(np.asarray(iou_matrix(d[1:, :4], d[:1, :4])) <= 0.3)


def test_postprocess_static_shapes():
  a = jnp.asarray(anchor_boxes((32, 32), STRIDES, SIZES))
  lo = jnp.full((len(a),), -10.0).at[5].set(3.0)
  out = jax.jit(
    lambda lo: postprocess(lo, jnp.zeros((len(a), 4)), a, image_size=(32, 32), max_detections=7)
  )(lo)
  assert out["boxes"].shape == (7, 4) and int(out["valid"].sum()) == 1
  assert int(out["anchor"][0]) == 5


def test_summarize_detections_ap_and_diagnostic():
  # Image 0: two faces; detections: a correct one from an unmatched anchor, a correct one from a
  # matched anchor, a duplicate, a false positive. Image 1: one face, no detection.
  det_boxes = np.zeros((2, 4, 4), np.float32)
  det_boxes[0] = [[10, 10, 30, 30], [50, 50, 60, 60], [11, 11, 30, 30], [80, 0, 90, 10]]
  out = {
    "det_boxes": det_boxes,
    "det_scores": np.array([[0.9, 0.8, 0.7, 0.3], [0, 0, 0, 0]], np.float32),
    "det_valid": np.array([[True, True, True, True], [False] * 4]),
    "det_unmatched": np.array([[True, False, True, False], [False] * 4]),
    "boxes": np.array(
      [[[10, 10, 30, 30], [50, 50, 60, 60]], [[0, 0, 20, 20], [0, 0, 0, 0]]], np.float32
    ),  # fmt: skip
    "box_mask": np.array([[True, True], [True, False]]),
    "keep": np.array([[[True, True, True], [False, True, True]], [[True] * 3, [False] * 3]]),
    "regressed_correct": np.array([7, 3]),
    "regressed_correct_unmatched": np.array([6, 1]),
  }
  res = summarize_detections(out, diagnostic_score=0.5)
  assert res["unmatched_share_all_anchors"] == pytest.approx(0.7)
  assert res["correct_detections"] == 2 and res["unmatched_share"] == pytest.approx(0.5)
  pred = [np.array([[10, 10, 20, 20, 0.9], [50, 50, 10, 10, 0.8], [11, 11, 19, 19, 0.7],
                    [80, 0, 10, 10, 0.3]]), np.zeros((0, 5))]  # fmt: skip
  gt = [np.array([[10, 10, 20, 20], [50, 50, 10, 10]], float), np.array([[0, 0, 20, 20]], float)]
  for j, s in enumerate(("easy", "medium", "hard")):
    keep = [out["keep"][0][:, j], out["keep"][1][:1, j]]
    assert res[f"ap_{s}"] == pytest.approx(wider_face_ap(pred, gt, keep), abs=1e-6)


def test_paper_preset_detector_layout():
  """ResNet-50 + P2-P7 (strides 4-128, sizes 16-512): output length = anchor count (shapes only)."""
  from vision_jax.utils import load_config

  cfg = load_config("hambox", "paper")
  model = build_detector(cfg.model)
  x = jax.ShapeDtypeStruct((1, 160, 192, 3), jnp.float32)
  shapes = jax.eval_shape(
    lambda x: model.init_with_output(jax.random.PRNGKey(0), x, train=False)[0], x
  )
  a = anchor_boxes((160, 192), tuple(cfg.model.strides), tuple(cfg.model.sizes))
  assert shapes[0].shape == (1, len(a)) and shapes[1].shape == (1, len(a), 4)
