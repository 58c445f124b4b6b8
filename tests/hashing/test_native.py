"""Native (XLA FFI, C++) Hamming top-k: equal to the XLA path and to NumPy brute force."""

import shutil

import jax
import numpy as np
import pytest

from vision_jax.hashing import native, search


@pytest.fixture(scope="module")
def kernel():
  if shutil.which("g++") is None:
    pytest.skip("g++ not found: the native kernel cannot be compiled (XLA path still tested)")
  if not native.available():
    pytest.skip(f"native kernel unavailable: {native.unavailable_reason()}")


def _brute(q8, d8, k):
  """(distances, indices) by NumPy: popcount via unpackbits, stable sort by (distance, index)."""
  dist = np.unpackbits(q8[:, None, :] ^ d8[None, :, :], axis=-1).sum(-1)
  idx = np.argsort(dist, axis=1, kind="stable")[:, :k]
  return np.take_along_axis(dist, idx, axis=1), idx


def _tied_codes(rng, n, nbytes, distinct):
  """Codes drawn from `distinct` random codes, so most distances tie with many others."""
  pool = rng.integers(0, 256, (distinct, nbytes), dtype=np.uint8)
  return pool[rng.integers(0, distinct, n)]


def _as_words(a8, word_bits):
  return a8 if word_bits == 8 else np.ascontiguousarray(a8).view(np.uint32)


def _variants_and_threads():
  return [(v, t) for v in native.VARIANTS for t in (1, 2)]


@pytest.mark.parametrize(
  "nbytes,word_bits", [(1, 8), (3, 8), (4, 32), (8, 32), (16, 8), (24, 32), (32, 32)]
)
def test_native_equals_xla_and_brute_force_every_variant(kernel, nbytes, word_bits):
  # 13 queries (not a multiple of the 4-query tile); lengths 4, 8, 16 and 32 bytes take the SIMD
  # loops, the others the per-code loop; 997 codes leave a SIMD tail.
  rng = np.random.default_rng(nbytes)
  d8 = _tied_codes(rng, 997, nbytes, 40)
  q8 = np.concatenate([d8[:3], rng.integers(0, 256, (10, nbytes), dtype=np.uint8)])
  q, d = _as_words(q8, word_bits), _as_words(d8, word_bits)
  for k in (1, 10, 997):
    want = _brute(q8, d8, k)
    xla = search.hamming_topk(q, d, k=k, backend="xla", db_block=128)
    np.testing.assert_array_equal(xla[0], want[0])
    np.testing.assert_array_equal(xla[1], want[1])
    for variant, threads in _variants_and_threads():
      if variant not in native.supported_variants():
        continue
      got = search.hamming_topk(
        q, d, k=k, backend="native", native_variant=variant, num_threads=threads
      )
      assert got[0].dtype == np.int32 and got[1].dtype == np.int32
      np.testing.assert_array_equal(got[0], xla[0], err_msg=f"{variant=} {threads=} {k=}")
      np.testing.assert_array_equal(got[1], xla[1], err_msg=f"{variant=} {threads=} {k=}")


def test_native_across_scan_blocks_with_heavy_ties(kernel):
  # 40,000 x 8-byte codes span two of the kernel's 256 KiB database blocks; only 25 distinct
  # codes, so each query's top 300 is decided by index among equal distances.
  rng = np.random.default_rng(7)
  d8 = _tied_codes(rng, 40_000, 8, 25)
  q8 = np.concatenate([d8[[0, 39_999]], rng.integers(0, 256, (3, 8), dtype=np.uint8)])
  want = _brute(q8, d8, 300)
  for variant in native.supported_variants():
    got = search.hamming_topk(
      q8.view(np.uint32), d8.view(np.uint32), k=300, native_variant=variant, num_threads=2
    )
    np.testing.assert_array_equal(got[0], want[0], err_msg=variant)
    np.testing.assert_array_equal(got[1], want[1], err_msg=variant)


def test_supported_variants_follow_cpu_flags(kernel):
  sup = native.supported_variants()
  assert sup[0] == "scalar" and native.best_variant() == sup[-1]
  try:
    with open("/proc/cpuinfo") as f:
      flags = set(next(line for line in f if line.startswith("flags")).split(":")[1].split())
  except (OSError, StopIteration):
    pytest.skip("no /proc/cpuinfo flags line")
  assert ("avx2" in sup) == ({"avx2", "popcnt"} <= flags)
  assert ("avx512" in sup) == ({"avx512f", "avx512_vpopcntdq", "popcnt"} <= flags)


def test_native_under_jit_default_backend_and_errors(kernel):
  rng = np.random.default_rng(3)
  q8, d8 = rng.integers(0, 256, (5, 8), np.uint8), _tied_codes(rng, 50, 8, 6)
  want = _brute(q8, d8, 7)
  got = jax.jit(lambda a, b: search.hamming_topk(a, b, k=7))(q8, d8)  # "auto" -> native on CPU
  np.testing.assert_array_equal(got[1], want[1])
  with pytest.raises(ValueError, match=r"k must be an int in \[1, 50\]"):
    search.hamming_topk(q8, d8, k=51, backend="native")
  with pytest.raises(Exception, match="k=51"):  # the kernel checks k too
    jax.block_until_ready(native.topk(q8, d8, k=51, num_threads=1))
  with pytest.raises(ValueError, match="native_variant='sse'"):
    search.hamming_topk(q8, d8, k=3, native_variant="sse")
  with pytest.raises(ValueError, match="num_threads"):
    search.hamming_topk(q8, d8, k=3, num_threads=0)
  with pytest.raises(ValueError, match="backend='gpu'"):
    search.hamming_topk(q8, d8, k=3, backend="gpu")
  missing = [v for v in native.VARIANTS if v not in native.supported_variants()]
  if missing:
    with pytest.raises(ValueError, match="not supported by this CPU"):
      search.hamming_topk(q8, d8, k=3, native_variant=missing[0])


def test_auto_backend_stays_on_xla_off_the_cpu(monkeypatch):
  # On a GPU/TPU default backend "auto" must not call the CPU kernel; "native" is refused.
  rng = np.random.default_rng(5)
  q8, d8 = rng.integers(0, 256, (4, 8), np.uint8), _tied_codes(rng, 40, 8, 6)

  def no_native(*a, **kw):
    raise AssertionError("native kernel called off the CPU")

  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  monkeypatch.setattr(native, "topk", no_native)
  got = search.hamming_topk(q8, d8, k=5)
  want = _brute(q8, d8, 5)
  np.testing.assert_array_equal(got[0], want[0])
  np.testing.assert_array_equal(got[1], want[1])
  with pytest.raises(ValueError, match="backend='native' runs on the CPU only"):
    search.hamming_topk(q8, d8, k=5, backend="native")


def test_missing_compiler_warns_and_falls_back_to_xla(monkeypatch, tmp_path):
  rng = np.random.default_rng(4)
  q8, d8 = rng.integers(0, 256, (3, 4), np.uint8), _tied_codes(rng, 30, 4, 5)
  monkeypatch.setattr(native._LIB, "_state", {})
  monkeypatch.setenv("VISION_JAX_CACHE", str(tmp_path))
  monkeypatch.setenv("CXX", "no-such-compiler-xyz")
  with pytest.warns(RuntimeWarning, match="no-such-compiler-xyz"):
    got = search.hamming_topk(q8, d8, k=4, backend="native")
  assert "not found" in native.unavailable_reason()
  want = _brute(q8, d8, 4)
  np.testing.assert_array_equal(got[0], want[0])
  np.testing.assert_array_equal(got[1], want[1])
  monkeypatch.setattr(native._LIB, "_state", {})
  monkeypatch.setenv("VISION_JAX_NATIVE", "0")
  assert not native.available()
