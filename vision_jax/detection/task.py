"""Face detection as a :class:`~vision_jax.train.Task`: standard or HAMBox assignment in the step.

Batches: ``image`` uint8 ``[B, H, W, C]``, ``boxes`` float32 ``[B, G, 4]`` ``x1, y1, x2, y2``
padded to ``G`` faces, ``box_mask`` bool ``[B, G]``; eval batches also carry ``keep`` bool
``[B, G, 3]`` (easy, medium, hard keep-lists) and the trainer's ``mask``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.data.transforms import image_to_float
from vision_jax.detection.assign import (
  COMPENSATED,
  IGNORED,
  MATCHED,
  _masked_iou,
  hambox_assign,
  standard_assign,
  standard_match,
)
from vision_jax.detection.boxes import DEFAULT_VARIANCES, decode
from vision_jax.detection.inference import postprocess, xyxy_to_xywh
from vision_jax.detection.losses import detection_loss
from vision_jax.metrics.wider_face import SETTINGS, pixel_iou, wider_face_ap
from vision_jax.train.state import split_variables
from vision_jax.train.step import Task

METHODS = ("standard", "hambox")


@dataclasses.dataclass(frozen=True)
class DetectionConfig:
  """Assignment, loss and test-time settings (every field is exposed in the experiment config).

  Attributes:
    method: ``"standard"`` (IoU >= t1 + best anchor) or ``"hambox"`` (plus online compensation).
    t1, t2, k: matching threshold, compensation threshold, anchors per face (see
      :func:`~vision_jax.detection.hambox_assign`).
    alpha, gamma: focal loss.
    beta: smooth-L1 transition.
    box_weight: weight of the box loss.
    compensated_box_loss: whether compensated anchors get the box loss.
    variances: box encoding.
    score_threshold, nms_threshold, pre_nms_topk, max_detections: inference.
    diagnostic_score: score above which a final detection counts for the diagnostic.
  """

  method: str = "hambox"
  t1: float = 0.35
  t2: float = 0.5
  k: int = 5
  alpha: float = 0.25
  gamma: float = 2.0
  beta: float = 0.11
  box_weight: float = 1.0
  compensated_box_loss: bool = True
  variances: tuple[float, float] = DEFAULT_VARIANCES
  score_threshold: float = 0.05
  nms_threshold: float = 0.3
  pre_nms_topk: int = 1000
  max_detections: int = 100
  diagnostic_score: float = 0.5

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f"method={self.method!r}; valid: {', '.join(METHODS)}")


def _assign_batch(cfg: DetectionConfig, anchors, regressed, boxes, box_mask):
  fn = hambox_assign if cfg.method == "hambox" else standard_assign
  return jax.vmap(lambda r, g, m: fn(anchors, r, g, m, cfg.t1, cfg.t2, cfg.k))(
    regressed, boxes, box_mask
  )


def detection_task(
  model: nn.Module,
  anchors: np.ndarray,
  cfg: DetectionConfig,
  *,
  image_size: tuple[int, int],
  preprocess: Callable[[jax.Array], jax.Array] = image_to_float,
) -> Task:
  """The detector's train loss (assignment inside the jitted step) and eval (WIDER FACE AP).

  Train metrics (means per image): ``matched``, ``compensated``, ``ignored`` anchors,
  ``faces``, plus ``cls_loss`` / ``box_loss``. Eval summary: ``ap_easy``, ``ap_medium``,
  ``ap_hard`` (:func:`~vision_jax.metrics.wider_face_ap`) and the paper's diagnostic in two
  readings: ``unmatched_share``, among final detections scoring at least
  ``cfg.diagnostic_score`` that are correct (IoU >= 0.5 with a face, one detection per face in
  descending score), the share whose anchor is *unmatched* by step-1 matching (IoU < t1 and not
  a face's best anchor); ``unmatched_share_all_anchors``, among all anchors whose regressed box
  has IoU >= 0.5 with a face (no score threshold, no NMS), the share that are unmatched.

  Choice: the paper's "correctly predicted bounding boxes" is not defined in the text we have;
    both readings are reported.

  Args:
    model: ``apply(variables, x, train) -> (logits [B, A], deltas [B, A, 4])``.
    anchors: ``[A, 4]``.
    cfg: :class:`DetectionConfig`.
    image_size: ``(H, W)`` of the input.
    preprocess: uint8 image -> network input (on device).

  Returns:
    A :class:`~vision_jax.train.Task`.
  """
  anchors = jnp.asarray(anchors, jnp.float32)

  def init(rng, batch):
    variables = model.init(rng, preprocess(batch["image"]), train=False)
    return *split_variables(variables), {}

  def loss_fn(params, model_state, extra, batch, rng, step):
    del rng, step
    (logits, deltas), new_state = model.apply(
      {"params": params, **model_state},
      preprocess(batch["image"]),
      train=True,
      mutable=list(model_state.keys()),
    )
    regressed = decode(jax.lax.stop_gradient(deltas), anchors[None], cfg.variances)
    boxes, box_mask = batch["boxes"], batch["box_mask"]
    labels, matched, weights = _assign_batch(cfg, anchors, regressed, boxes, box_mask)
    out = detection_loss(
      logits, deltas, anchors, labels, matched, weights, boxes,
      alpha=cfg.alpha, gamma=cfg.gamma, beta=cfg.beta, box_weight=cfg.box_weight,
      compensated_box_loss=cfg.compensated_box_loss, variances=cfg.variances,
    )  # fmt: skip
    per_img = lambda x: jnp.mean(jnp.sum(x, axis=1).astype(jnp.float32))
    metrics = {
      "cls_loss": out["cls_loss"],
      "box_loss": out["box_loss"],
      "matched": per_img(labels == MATCHED),
      "compensated": per_img(labels == COMPENSATED),
      "ignored": per_img(labels == IGNORED),
      "faces": per_img(box_mask),
    }
    return out["loss"], {"model_state": dict(new_state), "extra": extra, "metrics": metrics}

  def eval_fn(params, model_state, extra, batch):
    logits, deltas = model.apply(
      {"params": params, **model_state}, preprocess(batch["image"]), train=False
    )
    det = jax.vmap(
      lambda lo, de: postprocess(
        lo, de, anchors, image_size=image_size, score_threshold=cfg.score_threshold,
        nms_threshold=cfg.nms_threshold, pre_nms_topk=cfg.pre_nms_topk,
        max_detections=cfg.max_detections, variances=cfg.variances,
      )
    )(logits, deltas)  # fmt: skip
    step1 = jax.vmap(lambda g, m: standard_match(anchors, g, m, t1=cfg.t1)[0])(
      batch["boxes"], batch["box_mask"]
    )
    unmatched = jnp.take_along_axis(step1, det["anchor"], axis=1) == 0
    # Every anchor's regressed box, before scores and NMS: which ones land on a face?
    regressed = decode(deltas, anchors[None], cfg.variances)
    reg_iou = jax.vmap(lambda r, g, m: jnp.max(_masked_iou(r, g, m), axis=1))(
      regressed, batch["boxes"], batch["box_mask"]
    )
    good = reg_iou >= 0.5
    return {
      "regressed_correct": jnp.sum(good, axis=1),
      "regressed_correct_unmatched": jnp.sum(good & (step1 == 0), axis=1),
      "det_boxes": det["boxes"],
      "det_scores": det["scores"],
      "det_valid": det["valid"],
      "det_unmatched": unmatched,
      "boxes": batch["boxes"],
      "box_mask": batch["box_mask"],
      "keep": batch["keep"],
    }

  def summarize(out):
    return summarize_detections(out, diagnostic_score=cfg.diagnostic_score)

  return Task(init=init, loss_fn=loss_fn, eval_fn=eval_fn, summarize=summarize)


def summarize_detections(out: dict[str, np.ndarray], *, diagnostic_score: float) -> dict:
  """Host side of :func:`detection_task`'s eval: AP per setting and the unmatched-anchor share.

  Boxes go to :func:`~vision_jax.metrics.wider_face_ap` as ``x, y, x2 - x1, y2 - y1``; the
  toolbox's ``+1`` pixel convention then applies to detections and faces alike. An AP is NaN
  when the whole set has no detection (or all scores are equal), where the toolbox's score
  normalisation is undefined.
  """
  preds, gts, keeps = [], {s: [] for s in SETTINGS}, []
  correct = from_unmatched = 0
  for i in range(out["det_boxes"].shape[0]):
    v = out["det_valid"][i]
    d = np.concatenate([out["det_boxes"][i][v], out["det_scores"][i][v][:, None]], 1)
    m = out["box_mask"][i]
    g = out["boxes"][i][m]
    preds.append(xyxy_to_xywh(d))
    keeps.append(g)
    for j, s in enumerate(SETTINGS):
      gts[s].append(out["keep"][i][m][:, j])
    # Diagnostic: greedy one-to-one matching (detections are in descending score order).
    sel = d[:, 4] >= diagnostic_score
    if len(g) and sel.any():
      iou = pixel_iou(d[sel, :4], g)
      free = np.ones(len(g), bool)
      unm = out["det_unmatched"][i][v][sel]
      for r in range(len(iou)):
        cand = np.where(free, iou[r], -1.0)
        j = int(np.argmax(cand))
        if cand[j] >= 0.5:
          free[j] = False
          correct += 1
          from_unmatched += int(unm[r])
  res = {}
  gt_xywh = [xyxy_to_xywh(g) for g in keeps]
  for s in SETTINGS:
    try:
      res[f"ap_{s}"] = wider_face_ap(preds, gt_xywh, gts[s])
    except ValueError:  # no detections, or all scores equal: the toolbox's normalisation fails
      res[f"ap_{s}"] = float("nan")
  res["unmatched_share"] = from_unmatched / correct if correct else float("nan")
  n_reg = float(np.sum(out["regressed_correct"])) if "regressed_correct" in out else 0.0
  n_reg_u = float(np.sum(out.get("regressed_correct_unmatched", 0.0)))
  res["unmatched_share_all_anchors"] = n_reg_u / n_reg if n_reg else float("nan")
  res["correct_detections"] = float(correct)
  res["detections_per_image"] = float(np.mean([len(p) for p in preds]))
  return res
