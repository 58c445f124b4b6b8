"""vision_jax.hfr: heterogeneous face recognition with DVG-Face (dual variational generation).

Networks (`model`), losses (`losses`) and the Tasks of its three stages on the shared trainer
(`tasks`): identity sampler, dual generator (D/G multi-update), recognition fine-tuning with the
contrastive loss on generated pairs.

References:
  C. Fu, X. Wu, Y. Hu, H. Huang, R. He. "DVG-Face: Dual Variational Generation for Heterogeneous
  Face Recognition." IEEE TPAMI 2021. arXiv:2009.09399.
"""

from vision_jax.hfr.losses import (
  GeneratorWeights,
  cosine,
  d_nonsaturating,
  g_nonsaturating,
  gaussian_kl,
  generator_terms,
  generator_total,
  hfr_contrastive,
  l1,
  orthogonality,
  random_derangement,
  sampler_loss,
)
from vision_jax.hfr.model import (
  MODALITIES,
  AttributeEncoder,
  DualGenerator,
  IdentitySampler,
  PairDiscriminator,
  SharedDecoder,
  StyleMLP,
  adain,
  instance_norm,
  l2_normalize,
)
from vision_jax.hfr.tasks import (
  PARAM_INITS,
  check_params_like,
  generate_pairs,
  generator_task,
  host_param_init,
  identity_embedding,
  load_params,
  make_pair_sampler,
  param_init,
  recognition_task,
  sample_identities,
  sampler_task,
  save_params,
  to_float,
  to_gray,
)

__all__ = [
  "MODALITIES",
  "PARAM_INITS",
  "AttributeEncoder",
  "DualGenerator",
  "GeneratorWeights",
  "IdentitySampler",
  "PairDiscriminator",
  "SharedDecoder",
  "StyleMLP",
  "adain",
  "check_params_like",
  "cosine",
  "d_nonsaturating",
  "g_nonsaturating",
  "gaussian_kl",
  "generate_pairs",
  "generator_task",
  "generator_terms",
  "generator_total",
  "hfr_contrastive",
  "host_param_init",
  "identity_embedding",
  "instance_norm",
  "l1",
  "l2_normalize",
  "load_params",
  "make_pair_sampler",
  "orthogonality",
  "param_init",
  "random_derangement",
  "recognition_task",
  "sample_identities",
  "sampler_loss",
  "sampler_task",
  "save_params",
  "to_float",
  "to_gray",
]
