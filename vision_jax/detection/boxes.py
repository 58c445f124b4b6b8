"""Box utilities: IoU matrix, SSD-style encode/decode with variances, jit-friendly greedy NMS.

Boxes are ``x1, y1, x2, y2`` in continuous pixel coordinates (width ``x2 - x1``). Every function
is pure and jit-able with static shapes; :func:`nms` returns a fixed number of slots plus a
validity mask instead of a variable-length index list.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vision_jax.detection._validate import check_boxes, check_scalar, check_shape

DEFAULT_VARIANCES = (0.1, 0.2)


def box_area(boxes: jax.Array) -> jax.Array:
  """Area of ``[..., 4]`` boxes (0 for degenerate boxes)."""
  w = jnp.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
  h = jnp.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
  return w * h


def iou_matrix(a: jax.Array, b: jax.Array, *, eps: float = 1e-9) -> jax.Array:
  r"""Pairwise intersection over union.

  .. math::
    \mathrm{IoU}(a_i, b_j) = \frac{|a_i \cap b_j|}{|a_i| + |b_j| - |a_i \cap b_j|}

  Args:
    a: ``[N, 4]`` boxes ``x1, y1, x2, y2``.
    b: ``[M, 4]`` boxes.
    eps: added to the union so that two empty boxes give 0, not NaN.

  Returns:
    ``[N, M]`` float32 IoU.

  Raises:
    ValueError: ``a`` or ``b`` not ``[*, 4]``.
  """
  check_boxes("a", a)
  check_boxes("b", b)
  a = jnp.asarray(a, jnp.float32)
  b = jnp.asarray(b, jnp.float32)
  lt = jnp.maximum(a[:, None, :2], b[None, :, :2])
  rb = jnp.minimum(a[:, None, 2:], b[None, :, 2:])
  wh = jnp.maximum(rb - lt, 0.0)
  inter = wh[..., 0] * wh[..., 1]
  union = box_area(a)[:, None] + box_area(b)[None, :] - inter
  return inter / (union + eps)


def _centre_size(boxes):
  wh = boxes[..., 2:] - boxes[..., :2]
  return boxes[..., :2] + 0.5 * wh, wh


def _check_codec(name, x, anchors, variances):
  for n, arr in ((name, x), ("anchors", anchors)):
    if jnp.ndim(arr) < 1 or jnp.shape(arr)[-1] != 4:
      raise ValueError(f"{n} must have a last axis of 4; got shape {jnp.shape(arr)}.")
  if len(variances) != 2:
    raise ValueError(f"variances must be a pair (v0, v1); got {variances!r}.")
  for i, v in enumerate(variances):
    check_scalar(f"variances[{i}]", v, low=0.0, low_inclusive=False)


def encode(
  boxes: jax.Array, anchors: jax.Array, variances: tuple[float, float] = DEFAULT_VARIANCES
) -> jax.Array:
  r"""SSD box encoding of target ``boxes`` relative to ``anchors``.

  .. math::
    t_{x} = \frac{c^g_x - c^a_x}{v_0 w^a}, \quad t_{y} = \frac{c^g_y - c^a_y}{v_0 h^a}, \quad
    t_{w} = \frac{\log(w^g / w^a)}{v_1}, \quad t_{h} = \frac{\log(h^g / h^a)}{v_1}

  Args:
    boxes: ``[..., 4]`` target boxes (positive size).
    anchors: ``[..., 4]`` anchors, broadcast against ``boxes``.
    variances: ``(v_0, v_1)``, (0.1, 0.2) as in SSD / S3FD.

  Returns:
    ``[..., 4]`` offsets ``t_x, t_y, t_w, t_h``.

  Raises:
    ValueError: last axis of ``boxes`` / ``anchors`` not 4, or a non-positive variance.

  References:
    Liu et al. "SSD: Single Shot MultiBox Detector." ECCV 2016. arXiv:1512.02325.
  """
  _check_codec("boxes", boxes, anchors, variances)
  gc, gwh = _centre_size(jnp.asarray(boxes, jnp.float32))
  ac, awh = _centre_size(jnp.asarray(anchors, jnp.float32))
  txy = (gc - ac) / (variances[0] * awh)
  twh = jnp.log(jnp.maximum(gwh, 1e-6) / awh) / variances[1]
  return jnp.concatenate([txy, twh], axis=-1)


def decode(
  deltas: jax.Array,
  anchors: jax.Array,
  variances: tuple[float, float] = DEFAULT_VARIANCES,
  *,
  max_log_ratio: float = 4.135,
) -> jax.Array:
  """Inverse of :func:`encode`: offsets ``[..., 4]`` + anchors -> boxes ``x1, y1, x2, y2``.

  Args:
    deltas: ``[..., 4]`` predicted offsets.
    anchors: ``[..., 4]`` anchors.
    variances: as in :func:`encode`.
    max_log_ratio: clamp on ``v_1 t_w`` and ``v_1 t_h`` before ``exp`` (``log(1000/16)`` as in
      detectron2) so an untrained head cannot overflow.

  Returns:
    ``[..., 4]`` boxes.

  Raises:
    ValueError: as :func:`encode`.
  """
  _check_codec("deltas", deltas, anchors, variances)
  deltas = jnp.asarray(deltas, jnp.float32)
  ac, awh = _centre_size(jnp.asarray(anchors, jnp.float32))
  c = ac + deltas[..., :2] * variances[0] * awh
  wh = awh * jnp.exp(jnp.minimum(deltas[..., 2:] * variances[1], max_log_ratio))
  return jnp.concatenate([c - 0.5 * wh, c + 0.5 * wh], axis=-1)


def nms(
  boxes: jax.Array,
  scores: jax.Array,
  *,
  iou_threshold: float,
  max_output: int,
  score_threshold: float | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Greedy non-maximum suppression with static shapes.

  Repeats ``max_output`` times: take the highest-scoring live box, keep it, and kill every live
  box whose IoU with it exceeds ``iou_threshold`` (strictly, as torchvision). Memory is ``O(N)``
  (one row of IoUs per iteration), time ``O(max_output * N)``.

  Args:
    boxes: ``[N, 4]``.
    scores: ``[N]``; entries ``-inf`` (or below ``score_threshold``) are never kept.
    iou_threshold: suppression threshold.
    max_output: number of output slots (static).
    score_threshold: optional minimum score.

  Returns:
    ``(indices [max_output] int32, valid [max_output] bool)``: kept boxes in descending score
    order; slots past the last kept box have ``valid = False`` (their index is 0).

  Raises:
    ValueError: ``boxes`` not ``[N, 4]``, ``scores`` not ``[N]``, ``max_output < 1``.

  Choice: ties between equal scores go to the lower index (``argmax``), the same order as a
    stable descending sort.
  """
  shape = check_boxes("boxes", boxes)
  check_shape("scores", scores, shape[:1])
  if int(max_output) < 1:
    raise ValueError(f"max_output must be >= 1; got {max_output}.")
  check_scalar("iou_threshold", iou_threshold, low=0.0, high=1.0)
  boxes = jnp.asarray(boxes, jnp.float32)
  live = jnp.asarray(scores, jnp.float32)
  n = boxes.shape[0]
  if score_threshold is not None:
    live = jnp.where(live >= score_threshold, live, -jnp.inf)
  area = box_area(boxes)
  arange = jnp.arange(n)

  def body(k, carry):
    live, idx, valid = carry
    i = jnp.argmax(live)
    ok = live[i] > -jnp.inf
    b = boxes[i][None, :]
    lt = jnp.maximum(b[:, :2], boxes[:, :2])
    rb = jnp.minimum(b[:, 2:], boxes[:, 2:])
    wh = jnp.maximum(rb - lt, 0.0)
    inter = wh[:, 0] * wh[:, 1]
    iou = inter / (area[i] + area - inter + 1e-9)
    kill = ((iou > iou_threshold) | (arange == i)) & ok
    live = jnp.where(kill, -jnp.inf, live)
    idx = idx.at[k].set(jnp.where(ok, i, 0).astype(jnp.int32))
    valid = valid.at[k].set(ok)
    return live, idx, valid

  init = (live, jnp.zeros((max_output,), jnp.int32), jnp.zeros((max_output,), bool))
  if n == 0:
    return init[1], init[2]
  _, idx, valid = jax.lax.fori_loop(0, max_output, body, init)
  return idx, valid


def clip_boxes(boxes: jax.Array, height: float, width: float) -> jax.Array:
  """Clips ``[..., 4]`` boxes to ``[0, width] x [0, height]``."""
  x = jnp.clip(boxes[..., 0::2], 0.0, width)
  y = jnp.clip(boxes[..., 1::2], 0.0, height)
  return jnp.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], axis=-1)
