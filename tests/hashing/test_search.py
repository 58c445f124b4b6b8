"""Packed Hamming search against NumPy brute force."""

import numpy as np
import pytest

from vision_jax.hashing import search


def _codes(rng, n, bits):
  return np.where(rng.random((n, bits)) < 0.5, -1, 1).astype(np.int8)


def _brute_dist(q, d):
  return (q[:, None, :] != d[None, :, :]).sum(-1)


@pytest.mark.parametrize("word_bits,bits", [(8, 8), (8, 24), (32, 32), (32, 64)])
def test_pack_roundtrip_and_distances(word_bits, bits):
  rng = np.random.default_rng(bits + word_bits)
  q, d = _codes(rng, 5, bits), _codes(rng, 37, bits)
  qp, dp = search.pack_codes(q, word_bits=word_bits), search.pack_codes(d, word_bits=word_bits)
  assert qp.dtype == (np.uint8 if word_bits == 8 else np.uint32)
  assert qp.shape == (5, bits // word_bits)
  np.testing.assert_array_equal(search.unpack_codes(dp), d)
  np.testing.assert_array_equal(search.hamming_distance_packed(qp, dp), _brute_dist(q, d))


def test_pack_bit_order_hand_computed_and_uint8_view():
  code = -np.ones((1, 32), np.int8)
  code[0, [0, 3, 9]] = 1  # word0 bit0 + bit3 = 9; word1 bit1 = 2
  np.testing.assert_array_equal(search.pack_codes(code, word_bits=8), [[9, 2, 0, 0]])
  np.testing.assert_array_equal(search.pack_codes(code, word_bits=32), [[9 + 2 * 256 + 0]])
  rng = np.random.default_rng(0)
  c = _codes(rng, 6, 64)
  u8 = np.asarray(search.pack_codes(c, word_bits=8))
  u32 = np.asarray(search.pack_codes(c, word_bits=32))
  if np.little_endian:
    np.testing.assert_array_equal(u8.view(np.uint32), u32)
  # Raw real outputs pack like their sign.
  h = rng.normal(size=(6, 64)).astype(np.float32)
  np.testing.assert_array_equal(search.pack_codes(h), search.pack_codes(np.where(h > 0, 1, -1)))


@pytest.mark.parametrize(
  "k,chunk,block", [(1, 1, 64), (5, 3, 7), (40, 8, 13), (60, 4, 60), (12, 2, 5)]
)
def test_topk_matches_stable_argsort(k, chunk, block):
  # 8-bit codes over 60 items: many ties, so this also checks index tie-breaking, within and
  # across database blocks (block sizes that do not divide 60 exercise the padding).
  rng = np.random.default_rng(k)
  q, d = _codes(rng, 11, 8), _codes(rng, 60, 8)
  dist, idx = search.hamming_topk(
    search.pack_codes(q, word_bits=8),
    search.pack_codes(d, word_bits=8),
    k=k,
    query_chunk=chunk,
    db_block=block,
    backend="xla",
  )
  brute = _brute_dist(q, d)
  order = np.argsort(brute, axis=1, kind="stable")[:, :k]
  np.testing.assert_array_equal(idx, order)
  np.testing.assert_array_equal(dist, np.take_along_axis(brute, order, axis=1))
  assert dist.dtype == np.int32 and idx.dtype == np.int32


def test_topk_ties_larger_database():
  # 32-bit codes that differ from the query in few bits: big tie groups across a 5,000-item db.
  rng = np.random.default_rng(1)
  base = _codes(rng, 1, 32)
  d = np.repeat(base, 5000, axis=0)
  flips = rng.integers(0, 4, size=(5000, 4))
  for j in range(4):
    d[np.arange(5000), flips[:, j]] *= -1
  q = np.concatenate([base, -base, _codes(rng, 2, 32)])
  dist, idx = search.hamming_topk(
    search.pack_codes(q), search.pack_codes(d), k=300, db_block=512, backend="xla"
  )
  brute = _brute_dist(q, d)
  order = np.argsort(brute, axis=1, kind="stable")[:, :300]
  np.testing.assert_array_equal(idx, order)
  np.testing.assert_array_equal(dist, np.take_along_axis(brute, order, axis=1))


def test_bad_inputs():
  rng = np.random.default_rng(2)
  with pytest.raises(ValueError, match="multiple of word_bits=32.*word_bits=8"):
    search.pack_codes(_codes(rng, 3, 48), word_bits=32)
  with pytest.raises(ValueError, match="multiple of word_bits=8"):
    search.pack_codes(_codes(rng, 3, 12), word_bits=8)
  with pytest.raises(ValueError, match="word_bits"):
    search.pack_codes(_codes(rng, 3, 64), word_bits=64)
  q32 = search.pack_codes(_codes(rng, 3, 64))
  d32 = search.pack_codes(_codes(rng, 4, 32))
  with pytest.raises(ValueError, match="code length mismatch"):
    search.hamming_topk(q32, d32, k=1)
  with pytest.raises(ValueError, match="code length mismatch"):
    search.hamming_distance_packed(q32, search.pack_codes(_codes(rng, 4, 64), word_bits=8))
  with pytest.raises(ValueError, match="empty"):
    search.hamming_topk(q32, q32[:0], k=1)
  with pytest.raises(ValueError, match="k must be"):
    search.hamming_topk(q32, q32, k=4)
  with pytest.raises(ValueError, match="db_block"):
    search.hamming_topk(q32, q32, k=1, db_block=0)
  with pytest.raises(TypeError, match="uint8 or uint32"):
    search.hamming_topk(np.zeros((2, 2), np.int32), q32, k=1)
