"""Native (XLA FFI, C++) ADC kernels: equal to the XLA search path, layouts, padding, fallback."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.search.compare import assert_same_topk
from vision_jax.search import index as ix
from vision_jax.search import native
from vision_jax.search import quantization as qz

# Leaves of very different sizes, two of them empty, one crossing several 32-point groups.
LEAF_SIZES = (0, 1, 3, 33, 64, 200, 0, 299)


@pytest.fixture(scope="module")
def kernels():
  if shutil.which("g++") is None:
    pytest.skip("g++ not found: the native kernels cannot be compiled (XLA path still tested)")
  if not native.available():
    pytest.skip(f"native kernels unavailable: {native.unavailable_reason()}")


def _index(d=18, dpb=2, nc=16, seed=0):
  """Hand-built index (random codebooks/codes) with the leaf sizes above; K = d/dpb = 9 (odd)."""
  rng = np.random.default_rng(seed)
  n, nl, nb = sum(LEAF_SIZES), len(LEAF_SIZES), d // dpb
  x = rng.normal(size=(n, d)).astype(np.float32)
  codes = rng.integers(0, nc, size=(n, nb)).astype(np.uint8)
  codebooks = rng.normal(size=(nb, nc, dpb)).astype(np.float32)
  centers = rng.normal(size=(nl, d)).astype(np.float32)
  members = np.full((nl, max(LEAF_SIZES)), -1, np.int32)
  ids = rng.permutation(n)
  s = 0
  for leaf, size in enumerate(LEAF_SIZES):
    members[leaf, :size] = np.sort(ids[s : s + size])
    s += size
  info = dict(num_leaves=nl, dims_per_block=dpb, num_centers=nc)
  q = rng.normal(size=(7, d)).astype(np.float32)
  return ix.AVQIndex(x, codes, codebooks, centers, members, info), q


def _float_adc(index, q, ids):
  """Float ADC score ⟨q, c_leaf + decode(code)⟩ of each returned id (-inf for id -1)."""
  leaf_of = np.zeros(index.num_points, np.int64)
  mem = np.asarray(index.members)
  for leaf, row in enumerate(mem):
    leaf_of[row[row >= 0]] = leaf
  dec = (
    np.asarray(qz.pq_decode(index.codes, index.codebooks)) + np.asarray(index.leaf_centers)[leaf_of]
  )
  ids = np.asarray(ids)
  s = np.einsum("bd,bkd->bk", q, dec[np.maximum(ids, 0)])
  return np.where(ids >= 0, s, -np.inf)


def test_csr_layout_and_lut16_packing_round_trip():
  index, _ = _index()
  perm, offsets, sc = native.csr_layout(np.asarray(index.members), np.asarray(index.codes))
  np.testing.assert_array_equal(np.diff(offsets), LEAF_SIZES)
  np.testing.assert_array_equal(np.sort(perm), np.arange(index.num_points))
  packed, goff = native.pack_lut16(sc, offsets)
  np.testing.assert_array_equal(np.diff(goff), [(s + 31) // 32 for s in LEAF_SIZES])
  assert packed.shape == (goff[-1], 5, 32)
  for leaf, size in enumerate(LEAF_SIZES):
    for j in range(size):
      g, i = goff[leaf] + j // 32, j % 32
      for k in range(sc.shape[1]):
        byte = packed[g, k // 2, (k % 2) * 16 + i % 16]
        assert (byte >> 4 if i >= 16 else byte & 15) == sc[offsets[leaf] + j, k]


@pytest.mark.parametrize("leaves,k,reorder", [(3, 5, 0), (8, 10, 0), (5, 4, 40), (8, 10, 600)])
def test_native_float_equals_xla(kernels, leaves, k, reorder):
  index, q = _index()
  kw = dict(leaves_to_search=leaves, reorder=reorder)
  ref = index.search(q, k, backend="xla", **kw)
  got = index.search(q, k, backend="native", native_lut="float32", **kw)
  assert_same_topk(ref, got)
  if not reorder:  # ADC scores are the decoded inner products
    np.testing.assert_allclose(got[1], _float_adc(index, q, got[0]), rtol=1e-5, atol=1e-5)


def test_native_uint8_within_quantization_bound(kernels):
  index, q = _index()
  k = 20
  ids, est = index.search(q, k, leaves_to_search=8, backend="native", native_lut="uint8")
  luts = ix.lookup_tables(jnp.asarray(q), index.codebooks)
  bound = np.asarray(native.lut16_error_bound(luts))[:, None] + 1e-5
  exact = _float_adc(index, q, ids)
  assert np.all(np.abs(np.asarray(est) - exact) <= bound)
  # Selection is right up to the bound: nothing left out beats a returned point by > 2 bounds.
  ref_ids, ref = index.search(q, k, leaves_to_search=8, backend="xla")
  assert np.all(exact[:, -1] >= np.asarray(ref)[:, -1] - 2 * bound[:, 0])
  # With exhaustive reorder the results are exact, equal to the XLA path.
  kw = dict(leaves_to_search=8, reorder=600)
  assert_same_topk(
    index.search(q, 10, backend="xla", **kw),
    index.search(q, 10, backend="native", native_lut="uint8", **kw),
  )


@pytest.mark.parametrize("d,lut,leaves", [(64, "uint8", 8), (66, "uint8", 3), (66, "float32", 5)])
def test_every_supported_simd_variant_agrees_with_scalar_exactly(kernels, d, lut, leaves):
  # The fused search: leaf scores, LUTs and (uint8) the packed scan are the same float / integer
  # operations in every variant. 32 blocks (16 pairs) and 33 blocks (17 pairs: the AVX-512
  # loop's odd pair left to AVX2): overflow-free 16-bit sums over many pairs.
  index, q = _index(d=d)
  arrays = index._native_arrays(lut)
  args = (jnp.asarray(q), *index._native_query_arrays(), index.database, *arrays)
  kw = dict(k=30, leaves_to_search=leaves, reorder=0, lut=lut)
  b = ix._search_batch_native(*args, simd=False, **kw)
  variants = native.supported_variants()
  assert variants[0] == "scalar" and native.lut16_variant() == variants[-1]
  for simd in (True, *variants[1:]):
    a = ix._search_batch_native(*args, simd=simd, **kw)
    np.testing.assert_array_equal(a[0], b[0], err_msg=str(simd))
    np.testing.assert_array_equal(a[1], b[1], err_msg=str(simd))


@pytest.mark.parametrize("lut", ["float32", "uint8"])
def test_fewer_candidates_than_k_pad_with_minus_one(kernels, lut):
  index, q = _index()
  # Leaf 1 holds one point and leaves 0, 6 none: put them on top for every query.
  centers = np.full((8, q.shape[1]), -10.0, np.float32)
  centers[[0, 1, 6]] = q.mean(0) * 10.0
  small = ix.AVQIndex(
    index.database, index.codes, index.codebooks, centers, index.members, index.info
  )
  for reorder in (0, 8):
    ids, s = small.search(
      q, 5, leaves_to_search=3, reorder=reorder, backend="native", native_lut=lut
    )
    ids, s = np.asarray(ids), np.asarray(s)
    assert np.all(ids[:, 0] == np.asarray(index.members)[1, 0]) and np.all(np.isfinite(s[:, 0]))
    assert np.all(ids[:, 1:] == -1) and np.all(s[:, 1:] == -np.inf)
    xla = small.search(q, 5, leaves_to_search=3, reorder=reorder, backend="xla")
    np.testing.assert_array_equal(ids, xla[0])


def test_native_kernel_under_jit_and_batch_size_one(kernels):
  index, q = _index()
  perm, offsets, codes, _ = index._native_arrays("float32")

  @jax.jit
  def f(qb):
    luts = ix.lookup_tables(qb, index.codebooks)
    bias, leaves = jax.lax.top_k(qb @ index.leaf_centers.T, 4)
    return native.adc_topk_f32(bias, leaves, luts, codes, offsets, perm, topn=6)

  ids, s = f(jnp.asarray(q[:1]))
  assert ids.shape == (1, 6) and s.shape == (1, 6)
  ref = index.search(q[:1], 6, leaves_to_search=4, backend="xla")
  assert_same_topk(ref, (ids, s))
  one = index.search(q, 6, leaves_to_search=4, backend="native", batch_size=1)
  assert_same_topk(index.search(q, 6, leaves_to_search=4, backend="xla"), one)


def test_missing_compiler_warns_once_and_falls_back(monkeypatch, tmp_path):
  index, q = _index()
  monkeypatch.setattr(native._LIB, "_state", {})
  monkeypatch.setenv("VISION_JAX_CACHE", str(tmp_path))
  monkeypatch.setenv("CXX", "no-such-compiler-xyz")
  with pytest.warns(RuntimeWarning, match="no-such-compiler-xyz"):
    got = index.search(q, 5, leaves_to_search=3, backend="native")
  assert "not found" in native.unavailable_reason()
  assert_same_topk(index.search(q, 5, leaves_to_search=3, backend="xla"), got)
  monkeypatch.setattr(native._LIB, "_state", {})
  monkeypatch.setenv("VISION_JAX_NATIVE", "0")
  assert not native.available()


@pytest.mark.parametrize("lut", ["float32", "uint8"])
def test_multithreaded_native_search_equals_single_thread(kernels, lut):
  # Each thread runs the same per-query code on its own buffers: results are bit-identical.
  index, q = _index()
  # 21 queries: ranges of unequal size, whose 4-query leaf-scoring blocks start at other queries
  # for every thread count.
  q = np.concatenate([q, q[::-1] * 0.5, q])
  for leaves, reorder in ((4, 0), (4, 12), (8, 0), (1, 5)):
    kw = dict(leaves_to_search=leaves, reorder=reorder, backend="native", native_lut=lut)
    one = index.search(q, 5, num_threads=1, **kw)
    for nt in (2, 3):
      got = index.search(q, 5, num_threads=nt, **kw)
      np.testing.assert_array_equal(got[0], one[0], err_msg=f"{nt=} {leaves=} {reorder=}")
      np.testing.assert_array_equal(got[1], one[1], err_msg=f"{nt=} {leaves=} {reorder=}")


def test_bad_backend_arguments():
  index, q = _index()
  with pytest.raises(ValueError, match="backend='gpu'"):
    index.search(q, 5, backend="gpu")
  with pytest.raises(ValueError, match="native_lut='int4'"):
    index.search(q, 5, native_lut="int4")
  with pytest.raises(ValueError, match="num_threads=0"):
    index.search(q, 5, num_threads=0)
  flat, qf = _index(nc=256)
  with pytest.raises(ValueError, match="256 centres"):
    flat.search(qf, 5, native_lut="uint8")


@pytest.mark.parametrize("simd", [True, False])
def test_native_rerank_equals_xla_rerank(kernels, simd):
  index, q = _index(d=36)  # d not a multiple of 16: exercises the tails of the dot product
  rng = np.random.default_rng(3)
  ids = rng.integers(-1, index.num_points, size=(len(q), 50)).astype(np.int32)
  ids[0, :] = -1  # a query with no candidates at all
  ids[1, 3:] = -1  # fewer candidates than k
  args = (jnp.asarray(q), index.database, jnp.asarray(ids))
  ref = ix._rerank(*args, 5)
  got = jax.jit(native.rerank, static_argnames=("k", "simd"))(*args, k=5, simd=simd)
  assert_same_topk(ref, got)
  assert np.all(np.asarray(got[0])[0] == -1) and np.all(np.asarray(got[1])[1, 3:] == -np.inf)


@pytest.mark.parametrize("lut", ["float32", "uint8"])
def test_fused_search_equals_the_stage_kernels(kernels, lut):
  # One fused call == XLA leaf scoring + LUTs, then the ADC kernel, then the re-rank kernel.
  index, q = _index()
  perm, off, codes, goff = index._native_arrays(lut)
  qj = jnp.asarray(q)
  for leaves, reorder in ((3, 0), (8, 30)):
    bias, lv = jax.lax.top_k(qj @ index.leaf_centers.T, leaves)
    luts = ix.lookup_tables(qj, index.codebooks)
    topn = reorder or 7
    if lut == "uint8":
      ids, s = native.adc_topk_lut16(bias, lv, luts, codes, off, goff, perm, topn=topn)
    else:
      ids, s = native.adc_topk_f32(bias, lv, luts, codes, off, perm, topn=topn)
    if reorder:
      ids, s = native.rerank(qj, index.database, ids, k=7)
    got = index.search(q, 7, leaves_to_search=leaves, reorder=reorder, backend="native",
                       native_lut=lut)  # fmt: skip
    tol = 1e-5 if reorder or lut == "float32" else 1e-3  # uint8: LUT scale from float LUTs
    assert_same_topk((ids, s), got, tol=tol)


def test_equal_adc_scores_keep_member_order(kernels):
  # Every code 0: all points of a leaf score the same, so the selection (which first drops
  # points below a lower bound of the R-th best, then keeps the best R) must return the leaf's
  # first members in order, like lax.top_k on the XLA path.
  index, q = _index()
  codes = np.zeros_like(np.asarray(index.codes))
  centers = np.full((8, q.shape[1]), -10.0, np.float32)
  centers[7] = q.mean(0) * 10.0  # leaf 7 (299 points, 10 groups of 32) is best for every query
  flat = ix.AVQIndex(index.database, codes, index.codebooks, centers, index.members, index.info)
  first = np.asarray(index.members)[7, :40]
  for lut in ("float32", "uint8"):
    ids, s = flat.search(q, 40, leaves_to_search=1, backend="native", native_lut=lut)
    np.testing.assert_array_equal(np.asarray(ids), np.broadcast_to(first, (len(q), 40)))
    assert np.all(np.asarray(s) == np.asarray(s)[:, :1])
  np.testing.assert_array_equal(flat.search(q, 40, leaves_to_search=1, backend="xla")[0], ids)


def test_stage_times_run_the_fused_search(kernels):
  index, q = _index()
  for lut in ("float32", "uint8"):
    perm, off, codes, goff = (np.asarray(a) for a in index._native_arrays(lut))
    ct, cbt = (np.asarray(a) for a in index._native_query_arrays())
    ids, s, t = native.search_stage_times(
      q, ct, cbt, np.asarray(index.database), codes, off, goff, perm,
      k=6, leaves=4, reorder=20, lut=lut,
    )  # fmt: skip
    assert tuple(t) == native.SEARCH_STAGES and all(v >= 0 for v in t.values())
    assert (t["LUT uint8 quantization"] > 0) == (lut == "uint8") and t["ADC scan + top-R"] > 0
    ref = index.search(q, 6, leaves_to_search=4, reorder=20, backend="native", native_lut=lut)
    np.testing.assert_array_equal(ids, ref[0])
    np.testing.assert_array_equal(s, ref[1])
    with pytest.raises(ValueError, match="inconsistent"):
      native.search_stage_times(
        q, ct, cbt, np.asarray(index.database), codes, off, goff, perm,
        k=6, leaves=9, reorder=20, lut=lut,
      )  # fmt: skip


def test_huge_page_copy_is_an_equal_aligned_copy():
  rng = np.random.default_rng(0)
  for shape in ((5, 3), (6000, 100)):  # under and over 2 MiB
    x = rng.normal(size=shape).astype(np.float32)
    y = native.huge_page_copy(x)
    np.testing.assert_array_equal(y, x)
    assert y.flags.c_contiguous and y.flags.writeable and not np.shares_memory(x, y)
    if x.nbytes >= 2 << 20 and hasattr(__import__("mmap"), "MADV_HUGEPAGE"):
      assert y.ctypes.data % (2 << 20) == 0
