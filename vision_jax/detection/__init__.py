"""vision_jax.detection: anchor-based single-stage face detection (HAMBox).

Box utilities (IoU, SSD encode/decode, jit-friendly NMS), FPN anchors, standard and HAMBox
anchor assignment, the regression-aware focal loss, the detector model, its trainer task and
inference.
"""

from vision_jax.detection.anchors import (
  PAPER_SCALE,
  PAPER_SIZES,
  PAPER_STRIDES,
  anchor_boxes,
  anchor_levels,
  feature_sizes,
)
from vision_jax.detection.assign import (
  COMPENSATED,
  IGNORED,
  MATCHED,
  NEGATIVE,
  hambox_assign,
  standard_assign,
  standard_match,
)
from vision_jax.detection.boxes import (
  DEFAULT_VARIANCES,
  box_area,
  clip_boxes,
  decode,
  encode,
  iou_matrix,
  nms,
)
from vision_jax.detection.losses import detection_loss, regression_aware_focal_loss, smooth_l1

__all__ = [
  "COMPENSATED",
  "DEFAULT_VARIANCES",
  "IGNORED",
  "MATCHED",
  "NEGATIVE",
  "PAPER_SCALE",
  "PAPER_SIZES",
  "PAPER_STRIDES",
  "anchor_boxes",
  "anchor_levels",
  "box_area",
  "clip_boxes",
  "decode",
  "detection_loss",
  "encode",
  "feature_sizes",
  "hambox_assign",
  "iou_matrix",
  "nms",
  "regression_aware_focal_loss",
  "smooth_l1",
  "standard_assign",
  "standard_match",
]
