"""vision_jax.hashing: deep hashing (DMUH, DPSH, CSQ) and packed Hamming search."""

from vision_jax.hashing.search import (
  SUPPORTED_WORD_BITS,
  hamming_distance_packed,
  hamming_topk,
  pack_codes,
  unpack_codes,
)

__all__ = [
  "SUPPORTED_WORD_BITS",
  "hamming_distance_packed",
  "hamming_topk",
  "pack_codes",
  "unpack_codes",
]
