"""vision_jax.video: frame-sequence models (DCGN and its baselines), frame graphs, the video task.

Re-exports the public names of :mod:`~vision_jax.video.graph`, :mod:`~vision_jax.video.model`
and :mod:`~vision_jax.video.task`.
"""

from vision_jax.video.graph import (
  ADJACENCY_NORMS,
  KnnGraph,
  cosine_similarity,
  dense_adjacency,
  knn_adjacency,
  knn_topk,
  propagate_dense,
  propagate_knn,
)
from vision_jax.video.model import (
  DCGN,
  MODELS,
  GraphPool,
  LstmModel,
  MeanPoolModel,
  MultiLabelHead,
  NodeConv,
  fuse_features,
  video_model,
)
from vision_jax.video.task import frame_mask, param_count, video_classification_task

__all__ = [
  "ADJACENCY_NORMS",
  "DCGN",
  "GraphPool",
  "KnnGraph",
  "LstmModel",
  "MODELS",
  "MeanPoolModel",
  "MultiLabelHead",
  "NodeConv",
  "cosine_similarity",
  "dense_adjacency",
  "frame_mask",
  "fuse_features",
  "knn_adjacency",
  "knn_topk",
  "param_count",
  "propagate_dense",
  "propagate_knn",
  "video_classification_task",
  "video_model",
]
