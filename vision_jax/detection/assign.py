"""Anchor assignment: standard matching (S3FD) and HAMBox online high-quality anchor mining.

Labels: ``1`` matched (step 1), ``2`` compensated (step 2), ``0`` negative, ``-1`` ignored.
All functions take one image (``vmap`` over a batch) with padded ground truth and a mask, and
have static shapes, so they run inside the jitted train step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vision_jax.detection._validate import check_boxes, check_scalar, check_shape
from vision_jax.detection.boxes import iou_matrix

MATCHED, COMPENSATED, NEGATIVE, IGNORED = 1, 2, 0, -1


def _check(anchors, gt, gt_mask):
  a = check_boxes("anchors", anchors)
  g = check_boxes("gt", gt)
  check_shape("gt_mask", gt_mask, g[:1])
  return a[0], g[0]


def _masked_iou(boxes, gt, gt_mask):
  """IoU ``[A, G]`` with padded faces at -1 (never reach any threshold)."""
  iou = iou_matrix(boxes, gt)
  return jnp.where(gt_mask[None, :], iou, -1.0)


def standard_match(
  anchors: jax.Array, gt: jax.Array, gt_mask: jax.Array, *, t1: float = 0.35
) -> tuple[jax.Array, jax.Array, jax.Array]:
  r"""S3FD matching: IoU :math:`\ge T_1`, plus each face's best anchor.

  Step 1 of HAMBox. An anchor :math:`a` is matched to
  :math:`g^*(a) = \arg\max_g \mathrm{IoU}(a, g)` when that IoU is :math:`\ge T_1`. Then every
  real face's best anchor :math:`\arg\max_a \mathrm{IoU}(a, g)` is forced to match it
  (overriding the threshold rule), so no face is left without an anchor.

  Args:
    anchors: ``[A, 4]``.
    gt: ``[G, 4]`` padded faces.
    gt_mask: ``[G]`` bool, True for real faces.
    t1: matching threshold.

  Returns:
    ``(labels [A] int32 in {0, 1}, matched_gt [A] int32, anchor_iou [A, G])``; ``matched_gt`` is
    0 where ``labels == 0``.

  Raises:
    ValueError: bad shapes or ``t1`` outside [0, 1].

  Choice: when two faces share the same best anchor, it goes to the face it overlaps most
    (deterministic, unlike a scatter whose last write wins); the other face keeps only its
    threshold matches. An anchor with IoU exactly 0 to a face is never forced to it.
  """
  num_a, num_g = _check(anchors, gt, gt_mask)
  check_scalar("t1", t1, low=0.0, high=1.0)
  gt_mask = jnp.asarray(gt_mask, bool)
  iou = _masked_iou(anchors, gt, gt_mask)  # [A, G]
  if num_g == 0:
    zeros = jnp.zeros((num_a,), jnp.int32)
    return zeros, zeros, iou
  best_gt = jnp.argmax(iou, axis=1)
  best_iou = jnp.max(iou, axis=1)
  labels = (best_iou >= t1).astype(jnp.int32)
  matched = jnp.where(labels > 0, best_gt, 0).astype(jnp.int32)
  best_anchor = jnp.argmax(iou, axis=0)  # [G]
  forced = (
    (jnp.arange(num_a)[:, None] == best_anchor[None, :])
    & gt_mask[None, :]
    & (jnp.max(iou, axis=0)[None, :] > 0.0)
  )  # [A, G]
  any_forced = jnp.any(forced, axis=1)
  forced_gt = jnp.argmax(jnp.where(forced, iou, -2.0), axis=1)
  labels = jnp.where(any_forced, MATCHED, labels).astype(jnp.int32)
  matched = jnp.where(any_forced, forced_gt, matched).astype(jnp.int32)
  return labels, matched, iou


def hambox_assign(
  anchors: jax.Array,
  regressed: jax.Array,
  gt: jax.Array,
  gt_mask: jax.Array,
  t1: float = 0.35,
  t2: float = 0.5,
  k: int = 5,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  r"""HAMBox online high-quality anchor mining for one image.

  Step 1 is :func:`standard_match` at :math:`T_1`; face :math:`g` gets :math:`M_g` anchors.
  Step 2 (compensation) uses each anchor's *regressed* box :math:`\hat b_a` (the decoded
  prediction, computed before this call and treated as a constant). An anchor unmatched in
  step 1 is a candidate when :math:`\max_g \mathrm{IoU}(\hat b_a, g) \ge T_2`; it can compensate
  only its best face :math:`g^*(a) = \arg\max_g \mathrm{IoU}(\hat b_a, g)`. A face with
  :math:`M_g < K` (an "outer face") receives its top :math:`K - M_g` candidates by regressed IoU;
  they get label 2, regression target :math:`g`, and weight :math:`\mathrm{IoU}(\hat b_a, g)`.
  Candidates not selected are ignored (label -1, weight 0), not negatives.

  Args:
    anchors: ``[A, 4]`` anchors ``x1, y1, x2, y2``.
    regressed: ``[A, 4]`` each anchor's decoded predicted box.
    gt: ``[G, 4]`` padded faces.
    gt_mask: ``[G]`` bool, True for real faces.
    t1: step-1 IoU threshold.
    t2: regressed-IoU threshold for compensation candidates.
    k: maximum number of anchors per face after compensation (static).

  Returns:
    ``(labels [A] int32, matched_gt [A] int32, weights [A] float32)``: labels in
    {1 matched, 2 compensated, 0 negative, -1 ignored}; ``matched_gt`` indexes ``gt`` for labels
    1 and 2 (0 elsewhere); ``weights`` is the classification-loss weight: 1 for matched and
    negative anchors, the regressed IoU for compensated ones, 0 for ignored ones.

  Raises:
    ValueError: bad shapes, thresholds outside [0, 1], or ``k < 1``.

  References:
    Liu, Tang, Wu, Han, Liu, Ding. "HAMBox: Delving into Mining High-Quality Anchors on Face
    Detection." CVPR 2020. arXiv:1912.09231.

  Choice: T1 = 0.35, T2 = 0.5 and K = 5 follow S3FD and the one unofficial implementation; the
    paper's text was not available. "Outer face" = a face with fewer than K step-1 anchors.
    An anchor that passes T2 for several faces competes only for the one its regressed box
    overlaps most. Ties in regressed IoU go to the lower anchor index (``top_k``).
  """
  num_a, num_g = _check(anchors, gt, gt_mask)
  check_shape("regressed", regressed, (num_a, 4))
  check_scalar("t2", t2, low=0.0, high=1.0)
  if int(k) < 1:
    raise ValueError(f"k must be >= 1; got {k}.")
  k = int(k)
  gt_mask = jnp.asarray(gt_mask, bool)
  labels, matched, _ = standard_match(anchors, gt, gt_mask, t1=t1)
  weights = jnp.ones((num_a,), jnp.float32)
  if num_g == 0:
    return labels, matched, weights
  reg_iou = _masked_iou(jax.lax.stop_gradient(regressed), gt, gt_mask)  # [A, G]
  best_g = jnp.argmax(reg_iou, axis=1)
  best_r = jnp.max(reg_iou, axis=1)
  cand = (labels == NEGATIVE) & (best_r >= t2)  # [A]
  onehot = jnp.arange(num_g)[None, :] == best_g[:, None]
  score = jnp.where(cand[:, None] & onehot, reg_iou, -jnp.inf)  # [A, G]
  kk = min(k, num_a)
  top_val, top_idx = jax.lax.top_k(score.T, kk)  # [G, kk]
  m = jnp.sum((labels[:, None] == MATCHED) & (matched[:, None] == jnp.arange(num_g)[None, :]), 0)
  quota = jnp.maximum(k - m, 0)  # [G]
  take = (jnp.arange(kk)[None, :] < quota[:, None]) & jnp.isfinite(top_val)  # [G, kk]
  # Each candidate belongs to one face, so the scatter has no conflicting writes.
  compensated = jnp.zeros((num_a,), bool).at[top_idx.reshape(-1)].max(take.reshape(-1))
  labels = jnp.where(compensated, COMPENSATED, jnp.where(cand, IGNORED, labels))
  matched = jnp.where(compensated, best_g, matched).astype(jnp.int32)
  weights = jnp.where(compensated, best_r, jnp.where(cand, 0.0, weights))
  return labels.astype(jnp.int32), matched, weights.astype(jnp.float32)


def standard_assign(
  anchors: jax.Array,
  regressed: jax.Array,
  gt: jax.Array,
  gt_mask: jax.Array,
  t1: float = 0.35,
  t2: float = 0.5,
  k: int = 5,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """:func:`standard_match` with :func:`hambox_assign`'s signature (``regressed``, ``t2``, ``k``
  unused), so the train step can switch between the two by config."""
  del regressed, t2, k
  labels, matched, _ = standard_match(anchors, gt, gt_mask, t1=t1)
  return labels, matched, jnp.ones(labels.shape, jnp.float32)
