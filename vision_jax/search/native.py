"""Native CPU ADC kernels for :class:`~vision_jax.search.AVQIndex`, called from jit via the XLA FFI.

The C++ source (``native_adc.cc``, next to this file) is compiled on first use into
``<cache>/native/vj_adc_<hash>.so`` (``<cache>`` is :func:`default_cache_dir`) by the shared
builder :class:`vision_jax.utils.native_build.NativeLibrary`: atomic publish, cached per source,
compiler and jaxlib version, nothing downloaded. If no compiler is found or the build fails,
:func:`available` returns ``False``, a warning names the reason once, and callers fall back to
the pure-XLA search.

Kernels (one query at a time; ``num_threads`` splits a batch's queries into contiguous ranges,
one per thread, each with its own buffers, so results do not depend on it):

* :func:`search`: the whole tree search in one call, what ``AVQIndex.search(backend="native")``
  runs. Per query: leaf scores ``⟨q, c_l⟩`` against the transposed centres (4 queries per pass,
  so each centre row is loaded once for 4) and their top ``L``, the LUT ``⟨q_k, codebook_kc⟩``,
  then the ADC + top-R of :func:`adc_topk_lut16` or :func:`adc_topk_f32` and the exact
  re-ranking of :func:`rerank`, all in the thread that owns the query, so every stage scales with
  ``num_threads``. Leaf scores and LUT entries are one ``fma`` chain per output in every SIMD
  variant (identical floats); they equal XLA's matmul / einsum to float rounding.
  :func:`search_stage_times` runs the same code single-threaded with a clock per stage.
* :func:`adc_topk_f32`: float32 LUTs, uint8 codes in leaf order (CSR: ``offsets``), any C ≤ 256.
* :func:`adc_topk_lut16`: C = 16 and K ≤ 256. LUTs are quantized per query to uint8 with one
  scale Δ = max_k(max_c LUT[k,c] − min_c LUT[k,c]) / 255 and per-block offsets, 4-bit codes are
  packed 32 points per group, and a byte shuffle does the lookups: 64 per instruction with
  AVX-512BW, 32 with AVX2, picked at run time (:func:`lut16_variant`); the scalar fallback
  computes the same integers. The estimate is ``bias + Σ_k min_k + Δ·Σ_k q[k, code_k]``
  and differs from the float ADC score by at most ``K·Δ/2`` (:func:`lut16_error_bound`) plus
  float rounding.
* :func:`rerank`: exact ``⟨q, x⟩`` of each query's candidate ids and their top k (AVX2+FMA dot
  products, scalar fallback); replaces the XLA gather + batched dot, which was 2.5× slower at
  100 candidates per query on one CPU core (equal at 40).

Each returns the best ``R`` (``k`` for :func:`rerank`) candidates per query, best first; ties go
to the earlier probe / candidate position like ``lax.top_k`` (in :func:`search`'s re-ranking,
exact-score ties go to the earlier probe position, since the ADC top R is passed on unsorted).
Where fewer were probed the remaining slots hold id ``-1`` and score ``-inf``. Selection keeps
one uint64 key per candidate (order-preserving score bits, then the position) in a buffer of 4R
that is cut back to R with ``nth_element`` when full. The LUT16 scan (and the leaf top-L) first
computes every score with SIMD, then a lower bound of the R-th best (the R-th largest of ~2R
chunk maxima: R distinct points reach it) and pushes only the points at or above it (~1.2 R at
100k x 100), instead of every point that beats a running bound; the result is the same.
"""

from __future__ import annotations

import ctypes
import mmap
import os

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.search.data import default_cache_dir
from vision_jax.utils.native_build import CPU_VARIANTS, NativeLibrary, variant_code

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "native_adc.cc")
_LIB = NativeLibrary(
  "vj_adc",
  "vision_jax.search",
  SOURCE,
  ("vj_adc_topk_f32", "vj_adc_topk_lut16", "vj_rerank", "vj_search"),
  cache_dir=default_cache_dir,
  flags=("-pthread", "-ffp-contract=off"),
)


def library_path() -> str:
  """Where the compiled kernel library lives (``<cache>/native/vj_adc_<hash>.so``)."""
  return _LIB.library_path()


def available() -> bool:
  """Compiles (once per process and source version), loads and registers the kernels.

  Returns ``False`` (with one warning naming the reason) when that fails; the env var
  ``VISION_JAX_NATIVE=0`` disables the native kernels without a warning.
  """
  return _LIB.available()


def unavailable_reason() -> str:
  """Why :func:`available` returned ``False`` (empty if it did not, or was not called)."""
  return _LIB.unavailable_reason()


def supported_variants() -> tuple[str, ...]:
  """SIMD variants (:data:`~vision_jax.utils.native_build.CPU_VARIANTS`) this CPU runs, slowest
  first; ``"avx512"`` needs AVX-512BW here."""
  f = _LIB.lib.vj_adc_supported
  f.restype, f.argtypes = ctypes.c_int64, [ctypes.c_int64]
  return tuple(v for v in CPU_VARIANTS if f(variant_code(v)))


def lut16_variant() -> str:
  """The variant the LUT16 kernel runs with ``simd=True`` on this CPU."""
  f = _LIB.lib.vj_adc_lut16_variant
  f.restype = ctypes.c_int64
  return CPU_VARIANTS[f() - 1]


def _simd_code(simd) -> np.int64:
  """``True`` → the CPU's best (0), ``False`` → scalar, or a :data:`CPU_VARIANTS` name."""
  if isinstance(simd, bool | np.bool_):
    return np.int64(0 if simd else variant_code("scalar"))
  return np.int64(variant_code(simd))


# ----------------------------------------------------------------------------------------------
# Data layout.

_HUGE_PAGE = 2 << 20


def huge_page_copy(x) -> np.ndarray:
  """A C-contiguous copy of ``x`` in anonymous memory advised for transparent huge pages.

  The exact re-ranking reads ~40 random rows per query; with 4 KiB pages each row of a large
  database is also a TLB miss (its page walk holds up the cache misses). ``madvise(
  MADV_HUGEPAGE)`` before the first touch lets Linux back the buffer with 2 MiB pages (when
  ``/sys/kernel/mm/transparent_hugepage/enabled`` is ``always`` or ``madvise``), which measured
  ~25% off the re-ranking and ~10% off the whole native search at 100k x 100. Arrays under 2 MiB,
  or systems without ``MADV_HUGEPAGE``, get a plain copy. ``jax.device_put`` of the result on
  the CPU backend aliases it (no second copy).

  Choice: an implementation detail of the CPU path, not a paper setting.
  """
  x = np.asarray(x)
  if x.nbytes < _HUGE_PAGE or not hasattr(mmap, "MADV_HUGEPAGE"):
    return np.array(x, order="C", copy=True)
  m = mmap.mmap(-1, x.nbytes + _HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
  try:
    m.madvise(mmap.MADV_HUGEPAGE)
  except OSError:  # advice refused (e.g. THP compiled out): ordinary pages
    pass
  buf = np.frombuffer(m, np.uint8)
  start = (-buf.ctypes.data) % _HUGE_PAGE
  out = buf[start : start + x.nbytes].view(x.dtype).reshape(x.shape)
  out[...] = x
  return out


def csr_layout(members: np.ndarray, codes: np.ndarray):
  """Leaf-sorted (CSR) layout from the padded ``[num_leaves, m]`` member table.

  Returns:
    ``(perm [n] int32, offsets [num_leaves + 1] int32, sorted_codes [n, K] uint8)``: leaf ``l``
    holds the points ``perm[offsets[l]:offsets[l+1]]`` in the member table's order.
  """
  members = np.asarray(members)
  valid = members >= 0
  perm = members[valid].astype(np.int32)  # row-major: leaf by leaf, member order kept
  offsets = np.concatenate([[0], np.cumsum(valid.sum(1))]).astype(np.int32)
  return perm, offsets, np.ascontiguousarray(np.asarray(codes, np.uint8)[perm])


def pack_lut16(sorted_codes: np.ndarray, offsets: np.ndarray):
  """Packs leaf-sorted 4-bit codes 32 points per group (layout in ``native_adc.cc``).

  Returns:
    ``(packed [G, ceil(K/2), 32] uint8, goffsets [num_leaves + 1] int32)``; leaf ``l`` owns
    groups ``goffsets[l]:goffsets[l+1]`` (``ceil(size/32)`` of them, tail slots zero).
  """
  codes = np.asarray(sorted_codes, np.uint8)
  n, nb = codes.shape
  if codes.size and codes.max() > 15:
    raise ValueError(f"LUT16 packing needs 4-bit codes, got max code {int(codes.max())}")
  offsets = np.asarray(offsets, np.int64)
  sizes = np.diff(offsets)
  ngroups = (sizes + 31) // 32
  goff = np.concatenate([[0], np.cumsum(ngroups)]).astype(np.int32)
  npairs = (nb + 1) // 2
  padded = np.zeros((int(goff[-1]) * 32, 2 * npairs), np.uint8)
  # Slot of each sorted point: its leaf's first group * 32 + rank inside the leaf.
  leaf = np.repeat(np.arange(len(sizes)), sizes)
  slot = goff[leaf].astype(np.int64) * 32 + (np.arange(n) - offsets[leaf])
  padded[slot, :nb] = codes
  g = padded.reshape(-1, 2, 16, npairs, 2)  # [G, half(point / 16), i, pair, block in pair]
  packed = g[:, 0] | (g[:, 1] << 4)  # [G, i, pair, h]
  packed = np.ascontiguousarray(packed.transpose(0, 2, 3, 1).reshape(-1, npairs, 32))
  return packed, goff


def query_layout(leaf_centers, codebooks):
  """Query-side operands of :func:`search`: transposed centres and codebooks.

  Args:
    leaf_centers: ``[nl, d]``; codebooks: ``[K, C, dk]``.

  Returns:
    ``(centers_t [d, nlp] float32, cbt [K, dk, C] float32)``, ``nlp`` = ``nl`` rounded up to a
    multiple of 32 (zero columns; the kernel never selects them).
  """
  c = np.asarray(leaf_centers, np.float32)
  nl, d = c.shape
  nlp = -(-nl // 32) * 32
  ct = np.zeros((d, nlp), np.float32)
  ct[:, :nl] = c.T
  cbt = np.ascontiguousarray(np.asarray(codebooks, np.float32).transpose(0, 2, 1))
  return ct, cbt


def lut16_error_bound(luts) -> jax.Array:
  """Per-query bound ``K·Δ/2`` on |uint8-LUT estimate − float ADC score| (float rounding aside)."""
  luts = jnp.asarray(luts, jnp.float32)
  rng = (luts.max(-1) - luts.min(-1)).max(-1)
  return luts.shape[1] * jnp.where(rng > 0, rng / 255.0, 1.0) / 2


# ----------------------------------------------------------------------------------------------
# Kernel calls (jit-compatible).


def _call(target: str, b: int, r: int):
  if not available():
    raise RuntimeError(
      f"vision_jax native kernels unavailable ({unavailable_reason()}); use backend='xla'"
    )
  out = (jax.ShapeDtypeStruct((b, r), jnp.int32), jax.ShapeDtypeStruct((b, r), jnp.float32))
  return jax.ffi.ffi_call(target, out, vmap_method="sequential")


def adc_topk_f32(bias, leaves, luts, sorted_codes, offsets, perm, *, topn: int, num_threads=1):
  """Top-``topn`` float-LUT ADC candidates over the probed leaves.

  Args:
    bias: ``[b, L]`` float32 ⟨q, c_leaf⟩ of the probed leaves; leaves: ``[b, L]`` int32 leaf ids.
    luts: ``[b, K, C]`` float32; sorted_codes ``[n, K]`` uint8, offsets ``[nl+1]``, perm ``[n]``
      from :func:`csr_layout`.
    topn: candidates kept per query.
    num_threads: threads the batch's queries are split over.

  Returns:
    ``(ids [b, topn] int32, scores [b, topn] float32)``, best first, ``-1`` / ``-inf`` padded.

  Raises:
    RuntimeError: the kernels could not be built (reason in the message).
  """
  b = bias.shape[0]
  return _call("vj_adc_topk_f32", b, topn)(
    bias.astype(jnp.float32),
    leaves.astype(jnp.int32),
    luts.astype(jnp.float32),
    sorted_codes,
    offsets,
    perm,
    num_threads=np.int64(num_threads),
  )


def adc_topk_lut16(
  bias, leaves, luts, packed, offsets, goffsets, perm, *, topn: int, simd=True, num_threads=1
):
  """Like :func:`adc_topk_f32` with uint8-quantized LUTs over packed 4-bit codes.

  ``packed, goffsets`` come from :func:`pack_lut16`; ``simd=False`` forces the scalar loop and
  ``simd="avx2"`` / ``"avx512"`` a SIMD variant (same integers, same results; the kernel fails
  when the CPU lacks it). Scores are estimates within :func:`lut16_error_bound`.
  """
  b = bias.shape[0]
  return _call("vj_adc_topk_lut16", b, topn)(
    bias.astype(jnp.float32),
    leaves.astype(jnp.int32),
    luts.astype(jnp.float32),
    packed,
    offsets,
    goffsets,
    perm,
    variant=_simd_code(simd),
    num_threads=np.int64(num_threads),
  )


def rerank(queries, database, ids, *, k: int, simd: bool = True, num_threads: int = 1):
  """Exact re-ranking: top ``k`` of ``⟨q, database[id]⟩`` over candidate ``ids [b, R]``.

  ``-1`` ids are skipped; ties go to the earlier candidate. Returns ``(ids [b, k], scores)``,
  ``-1`` / ``-inf`` padded. Scores equal the XLA dot products to float rounding.
  """
  return _call("vj_rerank", queries.shape[0], k)(
    queries.astype(jnp.float32),
    database.astype(jnp.float32),
    ids.astype(jnp.int32),
    variant=_simd_code(simd),
    num_threads=np.int64(num_threads),
  )


def search(
  queries,
  centers_t,
  cbt,
  database,
  codes,
  offsets,
  goffsets,
  perm,
  *,
  k: int,
  leaves: int,
  reorder: int = 0,
  lut: str = "uint8",
  simd=True,
  num_threads: int = 1,
):
  """Fused tree search: leaf scores + top-``leaves``, LUTs, ADC + top-R, exact reorder.

  Args:
    queries: ``[b, d]``; centers_t, cbt: from :func:`query_layout`; database: ``[n, d]``.
    codes, offsets, goffsets, perm: :func:`csr_layout` (+ :func:`pack_lut16` for
      ``lut="uint8"``; ``goffsets`` is ignored for ``"float32"``).
    k: results per query; leaves: leaves probed, in ``[1, nl]``.
    reorder: ADC candidates re-scored exactly (0: return the ADC top ``k``; else ``>= k``).
    lut: ``"uint8"`` (LUT16 fast scan, C = 16) or ``"float32"``.
    simd: as in :func:`adc_topk_lut16`; num_threads: threads the batch's queries are split over.

  Returns:
    ``(ids [b, k] int32, scores [b, k] float32)`` best first, ``-1`` / ``-inf`` padded; scores
    are exact inner products with ``reorder``, ADC estimates without.

  Raises:
    RuntimeError: the kernels could not be built (reason in the message).
  """
  return _call("vj_search", queries.shape[0], k)(
    queries.astype(jnp.float32),
    centers_t,
    cbt,
    database,
    codes,
    offsets,
    goffsets,
    perm,
    leaves=np.int64(leaves),
    reorder=np.int64(reorder),
    lut16=np.int64(lut == "uint8"),
    variant=_simd_code(simd),
    num_threads=np.int64(num_threads),
  )


SEARCH_STAGES = (
  "leaf scores + top-L",
  "LUT build",
  "LUT uint8 quantization",
  "ADC scan + top-R",
  "exact reorder + top-k",
)


def search_stage_times(
  queries, centers_t, cbt, database, codes, offsets, goffsets, perm, *, k, leaves, reorder, lut
):
  """Runs :func:`search` (one thread, best SIMD variant) with a clock around every stage.

  Host arrays as for :func:`search` (``num_leaves`` = ``len(offsets) - 1``). Returns
  ``(ids, scores, {stage: seconds})`` over all queries, stages named by :data:`SEARCH_STAGES`
  (the clock reads add ~20 ns per stage and query).

  Raises:
    ValueError: inconsistent shapes (the kernel's checks).
  """
  a = [np.ascontiguousarray(x) for x in (queries, centers_t, cbt, database, codes)]
  q, ct, cb, db, cd = (a[0].astype(np.float32), *a[1:])
  off, goff, pm = (np.ascontiguousarray(x, np.int32) for x in (offsets, goffsets, perm))
  b, d = q.shape
  ids = np.empty((b, k), np.int32)
  scores = np.empty((b, k), np.float32)
  ns = np.zeros(len(SEARCH_STAGES), np.float64)
  f = _LIB.lib.vj_search_profile
  f.restype = ctypes.c_int64
  ptr = lambda x: x.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
  i64 = ctypes.c_int64
  rc = f(
    ptr(q), i64(b), i64(d), ptr(ct), i64(ct.shape[1]), ptr(cb),
    *(i64(v) for v in cb.shape), ptr(db), i64(db.shape[0]), ptr(cd), i64(cd.shape[0]),
    ptr(off), i64(len(off) - 1), ptr(goff), ptr(pm), i64(leaves), i64(reorder), i64(k),
    i64(lut == "uint8"), i64(0), ptr(ids), ptr(scores), ptr(ns),
  )  # fmt: skip
  if rc != 0:
    raise ValueError("search_stage_times: inconsistent array shapes for the fused search")
  return ids, scores, dict(zip(SEARCH_STAGES, 1e-9 * ns))
