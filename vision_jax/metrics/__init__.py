"""vision_jax.metrics: host-side NumPy evaluation protocols.

Verification (LFW 10-fold, ROC, TAR@FAR), re-ID (CMC / mAP with same-camera filtering),
identification (rank-k with distractors, MegaFace, Rank-1 per pose bin), heterogeneous face
recognition (Rank-1 and VR@FAR, mean ± std over folds), hashing retrieval (mAP@K with Hamming
ranking, tie-aware mAP, P@H<=r, PR curve), WIDER FACE detection AP (the eval_tools protocol),
YouTube-8M video classification (GAP@k, Hit@1, PERR, mAP). Each honours a mask for padded batches.
"""

from vision_jax.metrics.hfr import hfr_fold_metrics, hfr_protocol_metrics
from vision_jax.metrics.identification import identification_cmc, megaface_identification
from vision_jax.metrics.pose_bins import (
  PoseRank1,
  check_poses,
  pooled_rank1,
  pose_index,
  rank1_per_pose,
  rank1_table,
  subject_disjoint_split,
)
from vision_jax.metrics.reid import ReIDResult, pairwise_distance, reid_cmc_map
from vision_jax.metrics.retrieval import (
  PrecisionRecallCurve,
  precision_at_hamming_radius,
  precision_recall_curve,
  retrieval_average_precision,
  retrieval_map,
)
from vision_jax.metrics.retrieval import hamming_distance as retrieval_hamming_distance
from vision_jax.metrics.verification import (
  VerificationResult,
  best_threshold,
  cosine_scores,
  kfold_split,
  kfold_verification_accuracy,
  lfw_verification,
  roc_curve,
  tar_at_far,
)
from vision_jax.metrics.video import (
  gap_at_k,
  hit_at_one,
  mean_average_precision,
  precision_at_equal_recall_rate,
  youtube8m_metrics,
)
from vision_jax.metrics.wider_face import (
  pixel_iou,
  read_wider_face_mat,
  read_wider_prediction_file,
  read_wider_predictions,
  voc_ap,
  wider_face_ap,
  wider_face_evaluation,
  wider_face_pr_curve,
  write_wider_predictions,
)

__all__ = [
  "PoseRank1",
  "check_poses",
  "pooled_rank1",
  "pose_index",
  "rank1_per_pose",
  "rank1_table",
  "subject_disjoint_split",
  "PrecisionRecallCurve",
  "precision_at_hamming_radius",
  "precision_recall_curve",
  "retrieval_average_precision",
  "retrieval_hamming_distance",
  "retrieval_map",
  "ReIDResult",
  "VerificationResult",
  "best_threshold",
  "cosine_scores",
  "hfr_fold_metrics",
  "hfr_protocol_metrics",
  "identification_cmc",
  "kfold_split",
  "kfold_verification_accuracy",
  "lfw_verification",
  "megaface_identification",
  "pairwise_distance",
  "reid_cmc_map",
  "roc_curve",
  "tar_at_far",
  "gap_at_k",
  "hit_at_one",
  "mean_average_precision",
  "precision_at_equal_recall_rate",
  "youtube8m_metrics",
  "pixel_iou",
  "read_wider_face_mat",
  "read_wider_prediction_file",
  "read_wider_predictions",
  "voc_ap",
  "wider_face_ap",
  "wider_face_evaluation",
  "wider_face_pr_curve",
  "write_wider_predictions",
]
