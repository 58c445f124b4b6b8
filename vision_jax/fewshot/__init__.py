"""vision_jax.fewshot: episodic sampling, ProtoNet primitives, CRN, and the 600-episode protocol."""

from vision_jax.fewshot.crn import ClassRegularizer, regularized_prototypes
from vision_jax.fewshot.episodes import (
  SPLITS,
  Episode,
  EpisodeBatches,
  EpisodeSampler,
  class_splits,
)
from vision_jax.fewshot.meta_shift import prototype_shift
from vision_jax.fewshot.protonet import (
  METRICS,
  fewshot_accuracy,
  paired_difference,
  proto_logits,
  prototypes,
)
from vision_jax.fewshot.tasks import (
  CRNWeights,
  crn_proto_fn,
  embed_images,
  episode_arrays,
  evaluate_episodes,
  fewshot_task,
  replicate_batch,
)

__all__ = [
  "CRNWeights",
  "ClassRegularizer",
  "Episode",
  "EpisodeBatches",
  "EpisodeSampler",
  "METRICS",
  "SPLITS",
  "class_splits",
  "crn_proto_fn",
  "embed_images",
  "episode_arrays",
  "evaluate_episodes",
  "fewshot_accuracy",
  "fewshot_task",
  "paired_difference",
  "proto_logits",
  "prototype_shift",
  "prototypes",
  "regularized_prototypes",
  "replicate_batch",
]
