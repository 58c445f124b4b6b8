"""vision_jax.hashing: deep hashing (DMUH, DPSH, CSQ) and packed Hamming search."""

from vision_jax.hashing.losses import (
  bit_uncertainty,
  csq_hash_centers,
  csq_loss,
  dmuh_loss,
  dpsh_loss,
  hadamard_centers,
  hashnet_loss,
  hashnet_scale,
  image_uncertainty,
  label_centers,
  pairwise_similarity,
  update_memory_bank,
)
from vision_jax.hashing.model import HashNetwork, binarize
from vision_jax.hashing.search import (
  SUPPORTED_WORD_BITS,
  hamming_distance_packed,
  hamming_topk,
  pack_codes,
  unpack_codes,
)

__all__ = [
  "HashNetwork",
  "SUPPORTED_WORD_BITS",
  "binarize",
  "bit_uncertainty",
  "csq_hash_centers",
  "csq_loss",
  "dmuh_loss",
  "dpsh_loss",
  "hadamard_centers",
  "hamming_distance_packed",
  "hamming_topk",
  "hashnet_loss",
  "hashnet_scale",
  "image_uncertainty",
  "label_centers",
  "pack_codes",
  "pairwise_similarity",
  "unpack_codes",
  "update_memory_bank",
]
