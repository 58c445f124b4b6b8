"""Inference: decode, score threshold, jit-friendly NMS; multi-scale and flip test as options."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.detection.anchors import anchor_boxes
from vision_jax.detection.boxes import DEFAULT_VARIANCES, clip_boxes, decode, nms


def postprocess(
  logits: jax.Array,
  deltas: jax.Array,
  anchors: jax.Array,
  *,
  image_size: tuple[int, int],
  score_threshold: float = 0.05,
  nms_threshold: float = 0.3,
  pre_nms_topk: int = 1000,
  max_detections: int = 100,
  variances: tuple[float, float] = DEFAULT_VARIANCES,
) -> dict[str, jax.Array]:
  """One image's head outputs -> fixed-size detections.

  Keeps the ``pre_nms_topk`` highest scores, decodes and clips those boxes, drops scores below
  ``score_threshold``, runs greedy NMS at ``nms_threshold`` and keeps ``max_detections`` slots.

  Args:
    logits: ``[A]`` face logits.
    deltas: ``[A, 4]`` box offsets.
    anchors: ``[A, 4]``.
    image_size: ``(H, W)`` for clipping.
    score_threshold, nms_threshold, pre_nms_topk, max_detections: as above (static).
    variances: box-encoding variances.

  Returns:
    ``{"boxes": [D, 4] x1 y1 x2 y2, "scores": [D], "valid": [D] bool, "anchor": [D] int32}``.

  Raises:
    ValueError: shapes disagree.

  Choice: defaults follow S3FD's test settings (NMS 0.3, score 0.05) with RetinaNet's top-k 1000.
  """
  a = anchors.shape[0]
  if logits.shape != (a,) or deltas.shape != (a, 4):
    raise ValueError(
      f"logits {logits.shape} / deltas {deltas.shape} do not match anchors {anchors.shape}."
    )
  k = min(int(pre_nms_topk), a)
  scores = jax.nn.sigmoid(logits.astype(jnp.float32))
  top_s, top_i = jax.lax.top_k(scores, k)
  boxes = clip_boxes(decode(deltas[top_i], anchors[top_i], variances), *image_size)
  keep, valid = nms(
    boxes,
    top_s,
    iou_threshold=nms_threshold,
    max_output=int(max_detections),
    score_threshold=score_threshold,
  )
  return {
    "boxes": boxes[keep],
    "scores": jnp.where(valid, top_s[keep], 0.0),
    "valid": valid,
    "anchor": top_i[keep].astype(jnp.int32),
  }


def detect(
  forward: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
  images: np.ndarray,
  *,
  strides: Sequence[int],
  sizes: Sequence[float],
  anchor_scale: float,
  scales: Sequence[float] = (1.0,),
  flip: bool = False,
  score_threshold: float = 0.05,
  nms_threshold: float = 0.3,
  pre_nms_topk: int = 1000,
  max_detections: int = 100,
) -> list[np.ndarray]:
  """Detects faces in a batch, optionally over several input scales and a horizontal flip.

  Each (scale, flip) variant resizes the batch (bilinear), runs ``forward``, post-processes with
  that size's anchors and maps boxes back to the original frame; the variants' detections are
  merged by a second NMS at ``nms_threshold``.

  Args:
    forward: ``forward(images float or uint8 [B, h, w, C]) -> (logits [B, A], deltas [B, A, 4])``
      (e.g. a jitted ``model.apply`` closure with preprocessing).
    images: ``[B, H, W, C]``.
    strides, sizes, anchor_scale: the anchor layout (see :func:`anchor_boxes`).
    scales: input scale factors.
    flip: also run on horizontally flipped input.
    score_threshold, nms_threshold, pre_nms_topk, max_detections: see :func:`postprocess`.

  Returns:
    Per image, ``[n, 5]`` float32 detections ``x1, y1, x2, y2, score`` in descending score.

  Raises:
    ValueError: empty ``scales`` or a non-positive scale.
  """
  images = np.asarray(images)
  if not scales or min(scales) <= 0:
    raise ValueError(f"scales must be non-empty and positive; got {tuple(scales)}.")
  b, h, w = images.shape[:3]
  per_image: list[list[np.ndarray]] = [[] for _ in range(b)]
  for s in scales:
    hs, ws = max(1, int(round(h * s))), max(1, int(round(w * s)))
    x = images
    if (hs, ws) != (h, w):
      x = np.asarray(
        jax.image.resize(jnp.asarray(images, jnp.float32), (b, hs, ws, images.shape[3]), "linear")
      )
      if images.dtype == np.uint8:
        x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    anchors = jnp.asarray(anchor_boxes((hs, ws), strides, sizes, scale=anchor_scale))
    post = jax.jit(
      jax.vmap(
        functools.partial(
          postprocess, anchors=anchors, image_size=(hs, ws), score_threshold=score_threshold,
          nms_threshold=nms_threshold, pre_nms_topk=pre_nms_topk, max_detections=max_detections,
        )
      )
    )  # fmt: skip
    for flipped in (False, True) if flip else (False,):
      xi = x[:, :, ::-1] if flipped else x
      logits, deltas = forward(jnp.asarray(np.ascontiguousarray(xi)))
      out = jax.device_get(post(logits, deltas))
      for i in range(b):
        v = out["valid"][i]
        bx = np.asarray(out["boxes"][i][v], np.float32)
        if flipped:
          bx = np.stack([ws - bx[:, 2], bx[:, 1], ws - bx[:, 0], bx[:, 3]], 1)
        bx = bx / np.array([ws / w, hs / h, ws / w, hs / h], np.float32)
        per_image[i].append(np.concatenate([bx, out["scores"][i][v][:, None]], 1))
  results = []
  n_variants = len(scales) * (2 if flip else 1)
  for dets in per_image:
    d = np.concatenate(dets, 0)
    if n_variants > 1 and len(d):
      keep, valid = nms(d[:, :4], d[:, 4], iou_threshold=nms_threshold, max_output=max_detections)
      d = d[np.asarray(keep)[np.asarray(valid)]]
    d = d[np.argsort(-d[:, 4], kind="stable")]
    results.append(d.astype(np.float32))
  return results


def xyxy_to_xywh(dets: np.ndarray) -> np.ndarray:
  """``[n, 4 or 5]`` ``x1 y1 x2 y2 [score]`` -> ``x y w h [score]`` (WIDER FACE files)."""
  d = np.array(dets, np.float64, copy=True)
  d[:, 2:4] -= d[:, 0:2]
  return d
