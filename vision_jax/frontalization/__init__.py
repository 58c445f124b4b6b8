"""Face frontalization (M2FPA / TP-GAN): generator, global and parsing-guided discriminators,
losses and the multi-update training Task.

Modules: `parsing` (region masks, region pooling), `model` (networks), `losses`, `tasks`,
`drgan` (the DR-GAN-style single-encoder baseline).

References:
  Li, Wu, Hu, He, Sun. "M2FPA: A Multi-Yaw Multi-Pitch High-Quality Dataset and Benchmark for
  Facial Pose Analysis." ICCV 2019, arXiv:1904.00168.
  Huang, Zhang, Li, He. "Beyond Face Rotation: Global and Local Perception GAN for Photorealistic
  and Identity Preserving Frontal View Synthesis." ICCV 2017, arXiv:1704.04086.
  Tran, Yin, Liu. "Disentangled Representation Learning GAN for Pose-Invariant Face
  Recognition." CVPR 2017.
"""

from vision_jax.frontalization.drgan import (
  DrGanDiscriminator,
  DrGanGenerator,
  drgan_d_loss,
  fake_class_ce,
  identity_pose_ce,
)
from vision_jax.frontalization.losses import (
  ADVERSARIAL,
  FrontalizationWeights,
  d_adversarial,
  g_adversarial,
  generator_total,
  identity_distance,
  pixel_l1,
  region_d_loss,
  region_g_loss,
  symmetry,
  total_variation,
)
from vision_jax.frontalization.model import (
  FrontalGenerator,
  GlobalDiscriminator,
  ParsingDiscriminator,
  num_levels,
)
from vision_jax.frontalization.parsing import (
  DEFAULT_REGIONS,
  check_parsing_batch,
  check_regions,
  region_masks,
  region_pool,
)
from vision_jax.frontalization.tasks import (
  frontalization_task,
  load_generator,
  make_frontalizer,
  save_generator,
)

__all__ = [
  "ADVERSARIAL",
  "DEFAULT_REGIONS",
  "DrGanDiscriminator",
  "DrGanGenerator",
  "FrontalGenerator",
  "FrontalizationWeights",
  "GlobalDiscriminator",
  "ParsingDiscriminator",
  "check_parsing_batch",
  "check_regions",
  "d_adversarial",
  "drgan_d_loss",
  "fake_class_ce",
  "frontalization_task",
  "g_adversarial",
  "identity_pose_ce",
  "generator_total",
  "identity_distance",
  "load_generator",
  "make_frontalizer",
  "num_levels",
  "pixel_l1",
  "region_d_loss",
  "region_g_loss",
  "region_masks",
  "region_pool",
  "save_generator",
  "symmetry",
  "total_variation",
]
