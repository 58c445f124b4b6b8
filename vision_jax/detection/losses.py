"""HAMBox losses: regression-aware focal loss + smooth-L1, with static shapes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from vision_jax.detection._validate import check_boxes, check_scalar, check_shape
from vision_jax.detection.assign import COMPENSATED, IGNORED, MATCHED
from vision_jax.detection.boxes import DEFAULT_VARIANCES, encode


def smooth_l1(x: jax.Array, beta: float) -> jax.Array:
  r"""Elementwise smooth-L1: :math:`0.5 x^2 / \beta` if :math:`|x| < \beta`, else
  :math:`|x| - 0.5 \beta`; :math:`\beta = 0` is L1."""
  check_scalar("beta", beta, low=0.0)
  ax = jnp.abs(x)
  if beta == 0:
    return ax
  return jnp.where(ax < beta, 0.5 * x * x / beta, ax - 0.5 * beta)


def regression_aware_focal_loss(
  logits: jax.Array,
  labels: jax.Array,
  weights: jax.Array,
  *,
  alpha: float = 0.25,
  gamma: float = 2.0,
) -> jax.Array:
  r"""Per-anchor sigmoid focal loss, each term scaled by the assignment weight.

  .. math::
    \ell_a = -w_a\,\alpha_t (1 - p_t)^\gamma \log p_t, \qquad
    w_a = \begin{cases} \mathrm{IoU}(\hat b_a, g_a) & \text{compensated} \\
    0 & \text{ignored} \\ 1 & \text{otherwise} \end{cases}

  with :math:`p_t = p` for positives (labels 1 and 2) and :math:`1 - p` for negatives, so for
  compensated anchors the focal :math:`\alpha` term is multiplied by their regressed IoU.

  Args:
    logits: ``[...]`` face logits.
    labels: ``[...]`` int assignment labels (1, 2, 0, -1).
    weights: ``[...]`` from :func:`~vision_jax.detection.hambox_assign`.
    alpha: focal positive weight (``1 - alpha`` for negatives).
    gamma: focal exponent.

  Returns:
    ``[...]`` float32 per-anchor losses (0 at ignored anchors).

  Raises:
    ValueError: mismatched shapes, ``alpha`` outside [0, 1] or ``gamma < 0``.

  Choice: the modulating term uses sigmoid probabilities (the unofficial implementation used
    raw logits, a bug); the IoU weight multiplies the whole term, which equals scaling alpha.
  """
  shape = jnp.shape(logits)
  check_shape("labels", labels, shape)
  check_shape("weights", weights, shape)
  check_scalar("alpha", alpha, low=0.0, high=1.0)
  check_scalar("gamma", gamma, low=0.0)
  pos = (labels == MATCHED) | (labels == COMPENSATED)
  fl = optax.sigmoid_focal_loss(
    jnp.asarray(logits, jnp.float32), pos.astype(jnp.float32), alpha=alpha, gamma=gamma
  )
  w = jnp.where(labels == IGNORED, 0.0, jnp.asarray(weights, jnp.float32))
  return fl * w


def detection_loss(
  cls_logits: jax.Array,
  box_deltas: jax.Array,
  anchors: jax.Array,
  labels: jax.Array,
  matched_gt: jax.Array,
  weights: jax.Array,
  gt: jax.Array,
  *,
  alpha: float = 0.25,
  gamma: float = 2.0,
  beta: float = 0.11,
  box_weight: float = 1.0,
  compensated_box_loss: bool = True,
  variances: tuple[float, float] = DEFAULT_VARIANCES,
) -> dict[str, jax.Array]:
  r"""Batch detection loss, normalised by the number of positive anchors in the batch.

  .. math::
    L = \frac{1}{\max(1, N_+)} \Big( \sum_a \ell^{cls}_a + \lambda \sum_{a \in P}
    \sum_{c} \mathrm{smoothL1}_\beta\big(\delta_{a,c} - t_c(g_a, a)\big) \Big)

  where :math:`N_+` counts labels 1 and 2, :math:`P` is the set of anchors with a box loss and
  :math:`t` the SSD encoding with ``variances``.

  Args:
    cls_logits: ``[B, A]``.
    box_deltas: ``[B, A, 4]`` predicted offsets.
    anchors: ``[A, 4]``.
    labels: ``[B, A]`` assignment labels.
    matched_gt: ``[B, A]`` face index per anchor.
    weights: ``[B, A]`` classification weights.
    gt: ``[B, G, 4]`` padded faces.
    alpha, gamma: focal parameters.
    beta: smooth-L1 transition point (0.11 as the unofficial code; RetinaNet used 0.11 too).
    box_weight: :math:`\lambda`.
    compensated_box_loss: whether compensated anchors (label 2) get the box loss.
    variances: box-encoding variances.

  Returns:
    ``{"loss", "cls_loss", "box_loss", "num_pos"}`` scalars.

  Raises:
    ValueError: mismatched shapes.

  Choice: compensated anchors get the box loss (``compensated_box_loss=True``, as the unofficial
    code; the paper's loss equation was not available), unweighted by IoU; both terms are
    normalised by the batch's positive count.
  """
  b, a = jnp.shape(cls_logits)
  check_shape("box_deltas", box_deltas, (b, a, 4))
  check_boxes("anchors", anchors)
  check_shape("anchors", anchors, (a, 4))
  for name, x in (("labels", labels), ("matched_gt", matched_gt), ("weights", weights)):
    check_shape(name, x, (b, a))
  check_boxes("gt", gt, ndim=3)
  cls = regression_aware_focal_loss(cls_logits, labels, weights, alpha=alpha, gamma=gamma)
  pos = (labels == MATCHED) | (labels == COMPENSATED)
  num_pos = jnp.sum(pos).astype(jnp.float32)
  boxed = (labels == MATCHED) | ((labels == COMPENSATED) & compensated_box_loss)
  target_boxes = jnp.take_along_axis(gt, matched_gt[..., None].astype(jnp.int32), axis=1)
  # Anchors without a face get a dummy target equal to themselves (finite, masked out).
  target_boxes = jnp.where(boxed[..., None], target_boxes, anchors[None])
  targets = jax.lax.stop_gradient(encode(target_boxes, anchors[None], variances))
  reg = jnp.sum(smooth_l1(jnp.asarray(box_deltas, jnp.float32) - targets, beta), axis=-1)
  reg = jnp.where(boxed, reg, 0.0)
  norm = jnp.maximum(num_pos, 1.0)
  cls_loss = jnp.sum(cls) / norm
  box_loss = jnp.sum(reg) / norm
  return {
    "loss": cls_loss + box_weight * box_loss,
    "cls_loss": cls_loss,
    "box_loss": box_loss,
    "num_pos": num_pos,
  }
