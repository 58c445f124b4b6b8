"""MIPS index: k-means partition tree + residual (anisotropic) PQ + ADC + exact re-ranking.

Pipeline (ScaNN's tree → AH → reorder):

1. **Partition.** Score each query against the leaf centres, keep the top ``leaves_to_search``.
2. **ADC.** Per query and block build a lookup table ``LUT[k, c] = ⟨q_k, codebook_kc⟩``; a
   datapoint's approximate score is ``⟨q, c_leaf⟩ + Σ_k LUT[k, code_k]`` (residual PQ).
3. **Reorder.** Re-score the top ``reorder`` ADC candidates exactly and return the top ``k``.

Two backends (``AVQIndex.search(..., backend=)``): pure XLA (padded leaf table, gather ADC,
``lax.top_k``; the GPU/TPU path) and, on CPU, one C++ call per query batch through the XLA FFI
(:func:`vision_jax.search.native.search`: steps 1-3 for each query inside the thread that owns
it; CSR leaves, in-kernel top-R, optional uint8 LUT16 fast scan, native re-ranking). Sharding
the database over a mesh axis: :mod:`vision_jax.search.sharded`.

References:
  Guo et al., "Accelerating Large-Scale Inference with Anisotropic Vector Quantization",
  ICML 2020, arXiv:1908.10396.
"""

from __future__ import annotations

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from vision_jax.search import native
from vision_jax.search import quantization as qz
from vision_jax.utils.native_build import default_num_threads

_FORMAT_VERSION = 1


# ----------------------------------------------------------------------------------------------
# Pure search kernels.


@jax.jit
def lookup_tables(queries: jax.Array, codebooks: jax.Array) -> jax.Array:
  """Per-query ADC lookup tables ``LUT[q, k, c] = ⟨q_k, codebook_kc⟩``.

  Args:
    queries: ``[b, d]``; codebooks: ``[K, C, d/K]``.

  Returns:
    ``[b, K, C]`` float32.
  """
  qz.check_codebooks("lookup_tables", queries, codebooks, "queries")
  nb = codebooks.shape[0]
  return jnp.einsum("bkd,kcd->bkc", qz.split_blocks(queries, nb), codebooks)


@jax.jit
def adc_scores(luts: jax.Array, codes: jax.Array) -> jax.Array:
  """Asymmetric inner products ``Σ_k LUT[b, k, codes[b, n, k]]`` for per-query candidate codes.

  Args:
    luts: ``[b, K, C]`` lookup tables.
    codes: ``[b, n, K]`` candidate codes per query, or ``[n, K]`` shared by all queries.

  Returns:
    ``[b, n]`` float32 scores, equal to ``⟨q, decode(codes)⟩``.
  """
  b, nb, nc = luts.shape
  if codes.ndim == 2:
    # Shared candidates: one matmul against the one-hot codes (BLAS/MXU friendly).
    onehot = jax.nn.one_hot(codes, nc, dtype=jnp.float32).reshape(codes.shape[0], nb * nc)
    return luts.reshape(b, nb * nc) @ onehot.T
  n = codes.shape[1]
  flat = luts.reshape(b, nb * nc)
  offs = (jnp.arange(nb, dtype=jnp.int32) * nc)[None, None, :]
  idx = (codes.astype(jnp.int32) + offs).reshape(b, n * nb)
  return jnp.take_along_axis(flat, idx, axis=1).reshape(b, n, nb).sum(-1)


@functools.partial(
  jax.jit, static_argnames=("k", "leaves_to_search", "reorder", "approx", "exhaustive")
)
def _search_batch(
  queries,
  leaf_centers,
  members,
  codes,
  codebooks,
  database,
  *,
  k,
  leaves_to_search,
  reorder,
  approx,
  exhaustive,
):
  b = queries.shape[0]
  m = members.shape[1]
  luts = lookup_tables(queries, codebooks)
  if exhaustive:
    # No tree (single zero-centre leaf holding every id in order): shared candidates.
    n = codes.shape[0]
    safe = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32)[None, :], (b, n))
    valid = jnp.ones((b, n), bool)
    scores = adc_scores(luts, codes)
  else:
    leaf_scores = queries @ leaf_centers.T
    top_leaf_scores, top_leaves = lax.top_k(leaf_scores, leaves_to_search)
    cand = members[top_leaves].reshape(b, leaves_to_search * m)
    valid = cand >= 0
    safe = jnp.maximum(cand, 0)
    base = jnp.repeat(top_leaf_scores, m, axis=1)
    scores = adc_scores(luts, codes[safe]) + base
  scores = jnp.where(valid, scores, -jnp.inf)
  topk = (lambda s, kk: lax.approx_max_k(s, kk)) if approx else lax.top_k
  if reorder:
    _, pos = topk(scores, reorder)
    ids = jnp.take_along_axis(safe, pos, axis=1)
    ok = jnp.take_along_axis(valid, pos, axis=1)
    exact = jnp.einsum("bd,brd->br", queries, database[ids])
    exact = jnp.where(ok, exact, -jnp.inf)
    s, p2 = lax.top_k(exact, k)
    out_ids = jnp.take_along_axis(ids, p2, axis=1)
    out_ok = jnp.take_along_axis(ok, p2, axis=1)
  else:
    s, pos = topk(scores, k)
    out_ids = jnp.take_along_axis(safe, pos, axis=1)
    out_ok = jnp.take_along_axis(valid, pos, axis=1)
  return jnp.where(out_ok, out_ids, -1), s


def _rerank(queries, database, ids, k):
  """Exact re-ranking of candidate ``ids [b, R]`` (``-1`` = none): top ``k`` by ``⟨q, x⟩``."""
  ok = ids >= 0
  exact = jnp.einsum("bd,brd->br", queries, database[jnp.maximum(ids, 0)])
  exact = jnp.where(ok, exact, -jnp.inf)
  s, pos = lax.top_k(exact, k)
  out = jnp.take_along_axis(ids, pos, axis=1)
  return jnp.where(jnp.take_along_axis(ok, pos, axis=1), out, -1), s


@functools.partial(
  jax.jit, static_argnames=("k", "leaves_to_search", "reorder", "lut", "simd", "num_threads")
)
def _search_batch_native(
  queries,
  centers_t,
  cbt,
  database,
  perm,
  offsets,
  codes,
  goffsets,
  *,
  k,
  leaves_to_search,
  reorder,
  lut,
  simd=True,
  num_threads=1,
):
  """Tree search in one native call (:func:`vision_jax.search.native.search`). ``codes``:
  CSR-sorted ``[n, K]`` for ``lut="float32"``, packed groups for ``lut="uint8"``."""
  return native.search(
    queries,
    centers_t,
    cbt,
    database,
    codes,
    offsets,
    goffsets,
    perm,
    k=k,
    leaves=leaves_to_search,
    reorder=reorder,
    lut=lut,
    simd=simd,
    num_threads=num_threads,
  )


@functools.partial(jax.jit, static_argnames=("k",))
def _exact_topk(q, db, *, k):
  return lax.top_k(q @ db.T, k)


def exact_mips(queries, database, k: int, *, batch_size: int = 1024):
  """Exact top-k inner products by chunked matmul. Returns ``(ids [nq, k], scores [nq, k])``.

  Args:
    queries: ``[nq, d]`` (or one ``[d]`` query).
    database: ``[n, d]``.
    k: number of neighbours, ``1 <= k <= n``.
    batch_size: queries per matmul.

  Raises:
    ValueError: non-finite queries or database rows (NaN scores would rank arbitrarily),
      ``k`` outside ``[1, n]``, a dimension mismatch, or ``batch_size < 1``.
    TypeError: non-numeric input.
  """
  q = np.asarray(queries)
  queries = _as_matrix("queries", q[None, :] if q.ndim == 1 else q)
  db_shape = jnp.shape(database)
  if len(db_shape) != 2 or 0 in db_shape:
    raise ValueError(f"database must be a non-empty [n, d] matrix, got shape {db_shape}")
  if not jnp.issubdtype(jnp.result_type(database), jnp.number):
    raise TypeError(f"database must be numeric, got dtype {jnp.result_type(database)}")
  if queries.shape[1] != db_shape[1]:
    raise ValueError(
      f"queries have dimension d={queries.shape[1]} but database has d={db_shape[1]} "
      f"(queries shape {queries.shape}, database shape {tuple(db_shape)})"
    )
  if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= db_shape[0]:
    raise ValueError(f"k={k!r} must be an integer in [1, database size n={db_shape[0]}]")
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f"batch_size={batch_size!r} must be an int >= 1")
  db = jnp.asarray(database, jnp.float32)
  # Reduced on device: only a [n] bool mask reaches the host when something is wrong.
  if not bool(jnp.all(jnp.isfinite(db))):
    row = int(np.flatnonzero(~np.asarray(jnp.all(jnp.isfinite(db), axis=1)))[0])
    raise ValueError(f"database contains non-finite values (first in row {row}); drop NaN/inf rows")
  ids, scores = [], []
  for s in range(0, len(queries), batch_size):
    sc, ix = _exact_topk(jnp.asarray(queries[s : s + batch_size]), db, k=int(k))
    ids.append(np.asarray(ix))
    scores.append(np.asarray(sc))
  return np.concatenate(ids), np.concatenate(scores)


def recall_at(found_ids, true_ids, *, n_true: int, k: int) -> float:
  """RecallN@k: mean fraction of the true top-``n_true`` found in the returned top-``k``.

  ``recall_at(ids, gt, n_true=1, k=10)`` is the paper's Recall1@10; ``n_true=k=10`` is
  ann-benchmarks' Recall10@10 (ties ignored).

  Raises:
    ValueError: different query counts, non-2-D ids, ``k`` / ``n_true`` outside the columns.
  """
  found, true = np.asarray(found_ids), np.asarray(true_ids)
  if found.ndim != 2 or true.ndim != 2:
    raise ValueError(
      f"found_ids and true_ids must be [num_queries, k] arrays; got shapes {found.shape} and "
      f"{true.shape}"
    )
  if found.shape[0] != true.shape[0]:
    raise ValueError(
      f"found_ids has {found.shape[0]} queries but true_ids has {true.shape[0]}; pass the ids "
      "of the same queries in the same order"
    )
  for name, v, have in (("k", k, found.shape[1]), ("n_true", n_true, true.shape[1])):
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or not 1 <= v <= have:
      arr = "found_ids" if name == "k" else "true_ids"
      raise ValueError(f"{name}={v!r} must be an int in [1, {have}] ({arr} has {have} columns)")
  found = found[:, :k]
  true = true[:, :n_true]
  hit = (found[:, None, :] == true[:, :, None]).any(-1)
  return float(hit.mean())


# ----------------------------------------------------------------------------------------------
# Input validation.


def _check_finite(name: str, x: np.ndarray):
  if not np.all(np.isfinite(x)):
    bad = np.argwhere(~np.isfinite(x))[0]
    raise ValueError(
      f"{name} contains non-finite values (first at index {tuple(int(i) for i in bad)}: "
      f"{x[tuple(bad)]!r}); remove or replace NaN/inf rows before indexing/searching"
    )


def _as_matrix(name: str, x) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
    raise ValueError(f"{name} must be a non-empty [n, d] matrix, got shape {x.shape}")
  if not np.issubdtype(x.dtype, np.number):
    raise TypeError(f"{name} must be numeric, got dtype {x.dtype}")
  x = x.astype(np.float32)
  _check_finite(name, x)
  return x


# ----------------------------------------------------------------------------------------------
# The index.


class AVQIndex:
  """Anisotropic-vector-quantization MIPS index (ScaNN-style tree + residual AH + reorder).

  Build with :meth:`build`, query with :meth:`search`, persist with :meth:`save` /
  :meth:`load` (a single ``.npz``). All arrays live on the default device; search is jit-compiled
  per ``(batch, k, leaves_to_search, reorder)`` and backend. The native backend's CSR / packed
  LUT16 layouts are derived from ``members`` and ``codes`` on first use and cached on the index.

  Attributes:
    database: ``[n, d]`` float32 originals (for exact re-ranking).
    codes: ``[n, K]`` uint8 PQ codes (of residuals ``x − c_leaf``).
    codebooks: ``[K, C, dk]`` float32.
    leaf_centers: ``[L, d]`` (a single zero centre when built without a tree).
    members: ``[L, m]`` int32 datapoint ids per leaf, ``-1``-padded.
    info: dict of build settings and statistics.
  """

  def __init__(self, database, codes, codebooks, leaf_centers, members, info):
    if jax.default_backend() == "cpu":  # re-ranking reads random rows: 2 MiB pages, no copy
      self.database = jax.device_put(native.huge_page_copy(np.asarray(database, np.float32)))
    else:
      self.database = jnp.asarray(database, jnp.float32)
    self.codes = jnp.asarray(codes, jnp.uint8)
    self.codebooks = jnp.asarray(codebooks, jnp.float32)
    self.leaf_centers = jnp.asarray(leaf_centers, jnp.float32)
    self.members = jnp.asarray(members, jnp.int32)
    self.info = dict(info)
    self._native = {}  # lut dtype -> (perm, offsets, codes, goffsets) device arrays, built lazily
    self._native_query = None  # (centres [d, nlp], codebooks [K, dk, C]) transposed, lazily

  def _native_arrays(self, lut: str):
    if lut not in self._native:
      perm, offsets, codes = native.csr_layout(np.asarray(self.members), np.asarray(self.codes))
      goff = offsets
      if lut == "uint8":
        codes, goff = native.pack_lut16(codes, offsets)
      self._native[lut] = tuple(jnp.asarray(a) for a in (perm, offsets, codes, goff))
    return self._native[lut]

  def _native_query_arrays(self):
    if self._native_query is None:
      ct, cbt = native.query_layout(np.asarray(self.leaf_centers), np.asarray(self.codebooks))
      self._native_query = (jnp.asarray(ct), jnp.asarray(cbt))
    return self._native_query

  # --- properties -------------------------------------------------------------------------------
  @property
  def num_points(self) -> int:
    return int(self.database.shape[0])

  @property
  def dim(self) -> int:
    return int(self.database.shape[1])

  @property
  def num_leaves(self) -> int:
    return int(self.leaf_centers.shape[0])

  @property
  def bits_per_vector(self) -> int:
    """PQ code bits per datapoint: ``K · log2(C)`` (leaf id not counted)."""
    nb, nc, _ = self.codebooks.shape
    return int(nb * math.log2(nc))

  def decoded(self) -> jax.Array:
    """``[n, d]`` approximations ``c_leaf + decode(codes)`` that ADC scores against."""
    leaf_of = jnp.asarray(self.info["leaf_of"], jnp.int32) if "leaf_of" in self.info else None
    rec = qz.pq_decode(self.codes, self.codebooks)
    if leaf_of is not None:
      rec = rec + self.leaf_centers[leaf_of]
    return rec

  # --- build ------------------------------------------------------------------------------------
  @classmethod
  def build(
    cls,
    database,
    *,
    num_leaves: int = 0,
    dims_per_block: int = 2,
    threshold: float | None = None,
    eta: float | None = None,
    num_centers: int = 16,
    exact_eta: bool = False,
    leaf_eta: float = 1.0,
    spherical_leaves: bool = False,
    leaf_iterations: int = 10,
    training_iterations: int = 10,
    training_sample_size: int = 100_000,
    anisotropic_encoding: bool = True,
    codebook_update: str = "none",
    codebook_update_rounds: int = 0,
    encode_batch: int = 8192,
    seed: int = 0,
  ) -> AVQIndex:
    """Builds the index.

    Args:
      database: ``[n, d]`` vectors (real MIPS: not normalised).
      num_leaves: k-means partition leaves (0 = no tree: exhaustive ADC over all points).
      dims_per_block: dimensions per PQ block (must divide d). Bits = (d / dims_per_block) ·
        log2(num_centers).
      threshold: ScaNN's ``anisotropic_quantization_threshold`` T: η per datapoint from its own
        norm (:func:`anisotropic_eta`); must be < min‖x‖. ``None``/0 → reconstruction loss.
      eta: a fixed η for every point instead of ``threshold`` (ScaNN's proto ``eta``). For
        data that are not unit-norm, ``eta=anisotropic_eta(T, 1, d)`` applies T as a cosine
        threshold.
      num_centers: codewords per block: 16 (LUT16, 4-bit), 256 (8-bit) or 2 with
        ``dims_per_block=1`` (binary quantization).
      exact_eta: use the exact finite-d η instead of ScaNN's asymptotic form.
      leaf_eta: η of the partition k-means (1 = plain k-means; >1 = tree AVQ).
      spherical_leaves: normalise leaf centres (ScaNN ``spherical=True``).
      leaf_iterations / training_iterations: Lloyd iterations for leaves / codebooks.
      training_sample_size: points sampled to train leaves and codebooks.
      anisotropic_encoding: encode by coordinate descent on the score-aware loss (else nearest).
      codebook_update: ``"none"`` (ScaNN default), ``"blockwise"`` or ``"joint"`` anisotropic
        least-squares codebook update (paper §4.2), alternated ``codebook_update_rounds`` times
        with re-encoding (on the training sample).
      encode_batch: points encoded per jit call.
      seed: PRNG seed.

    Returns:
      An :class:`AVQIndex`.

    Raises:
      ValueError / TypeError: non-finite or non-matrix database, dims_per_block not dividing d,
        threshold ≥ min‖x‖, both threshold and eta, bad num_leaves / num_centers / options.
    """
    x = _as_matrix("database", database)
    n, d = x.shape
    if not isinstance(dims_per_block, int | np.integer) or dims_per_block < 1 or d % dims_per_block:
      raise ValueError(
        f"dims_per_block={dims_per_block!r} must be a positive integer dividing the database "
        f"dimension d={d} (divisors: {[i for i in range(1, d + 1) if d % i == 0]})"
      )
    if num_centers not in (2, 4, 16, 256):
      raise ValueError(f"num_centers={num_centers!r} must be one of 2, 4, 16, 256")
    if num_centers > n:
      raise ValueError(f"num_centers={num_centers} exceeds the database size n={n}")
    if num_leaves < 0 or num_leaves > n:
      raise ValueError(f"num_leaves={num_leaves!r} must be in [0, n={n}]")
    if codebook_update not in ("none", "blockwise", "joint"):
      raise ValueError(
        f"codebook_update={codebook_update!r} must be 'none', 'blockwise' or 'joint'"
      )
    if threshold is not None and eta is not None:
      raise ValueError(f"give threshold or eta, not both (threshold={threshold!r}, eta={eta!r})")
    norms = np.linalg.norm(x, axis=1)
    if threshold is not None:
      if not np.isfinite(threshold) or threshold < 0:
        raise ValueError(f"threshold={threshold!r} must be finite and >= 0")
      if threshold >= norms.min():
        raise ValueError(
          f"threshold={threshold!r} must be below the smallest database norm min||x||="
          f"{norms.min():.6g} (point {int(norms.argmin())}); eta is undefined there. Lower "
          "the threshold, pass eta= instead, or drop tiny-norm points."
        )
    if eta is not None and (not np.isfinite(eta) or eta < 1.0):
      raise ValueError(f"eta={eta!r} must be finite and >= 1 (Theorem 3.3: h_par >= h_perp)")
    if leaf_eta < 1.0:
      raise ValueError(f"leaf_eta={leaf_eta!r} must be >= 1")

    key = jax.random.key(seed)
    k_sample, k_leaf, k_cb = jax.random.split(key, 3)
    sample_idx = np.asarray(
      jax.random.choice(k_sample, n, (min(n, training_sample_size),), replace=False)
    )
    xj = jnp.asarray(x)
    dirs = qz.normalize_rows(xj)
    eta_all = qz._eta_per_point(xj, threshold, eta, exact=exact_eta)

    # Partition tree.
    if num_leaves > 0:
      xs = xj[sample_idx]
      centers, _ = qz.anisotropic_kmeans(
        xs, num_centers=num_leaves, key=k_leaf, eta=leaf_eta, iterations=leaf_iterations
      )
      if spherical_leaves:
        centers = qz.normalize_rows(centers)
      leaf_of = np.concatenate(
        [
          np.asarray(
            qz.anisotropic_assign(
              xj[s : s + encode_batch],
              dirs[s : s + encode_batch],
              jnp.full((min(encode_batch, n - s),), leaf_eta, jnp.float32),
              centers,
            )[0]
          )
          for s in range(0, n, encode_batch)
        ]
      )
    else:
      centers = jnp.zeros((1, d), jnp.float32)
      leaf_of = np.zeros((n,), np.int32)
    nl = centers.shape[0]
    counts = np.bincount(leaf_of, minlength=nl)
    m = int(max(1, counts.max()))
    order = np.argsort(leaf_of, kind="stable")
    members = np.full((nl, m), -1, np.int32)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(n) - np.repeat(starts, counts)
    members[leaf_of[order], pos] = order

    targets = xj - centers[jnp.asarray(leaf_of)]
    nb = d // dims_per_block

    # Codebooks on a sample of residuals.
    ts, us, es = targets[sample_idx], dirs[sample_idx], eta_all[sample_idx]
    codebooks = qz.train_pq_codebooks(
      ts, num_blocks=nb, num_centers=num_centers, key=k_cb, iterations=training_iterations
    )
    for _ in range(codebook_update_rounds if codebook_update != "none" else 0):
      c = qz.pq_encode_anisotropic(ts, us, codebooks, es)
      upd = (
        qz.pq_update_codebooks_blockwise
        if codebook_update == "blockwise"
        else qz.pq_update_codebooks_joint
      )
      codebooks = upd(ts, us, c, codebooks, es)

    # Encode everything.
    codes = []
    for s in range(0, n, encode_batch):
      sl = slice(s, s + encode_batch)
      if anisotropic_encoding and (threshold is not None or eta is not None):
        c = qz.pq_encode_anisotropic(targets[sl], dirs[sl], codebooks, eta_all[sl])
      else:
        c = qz.pq_encode_nearest(targets[sl], codebooks)
      codes.append(np.asarray(c, np.uint8))
    codes = np.concatenate(codes)

    info = dict(
      num_leaves=int(num_leaves),
      dims_per_block=int(dims_per_block),
      num_centers=int(num_centers),
      threshold=None if threshold is None else float(threshold),
      eta=None if eta is None else float(eta),
      exact_eta=bool(exact_eta),
      leaf_eta=float(leaf_eta),
      spherical_leaves=bool(spherical_leaves),
      anisotropic_encoding=bool(anisotropic_encoding),
      codebook_update=codebook_update,
      codebook_update_rounds=int(codebook_update_rounds),
      seed=int(seed),
      mean_eta=float(jnp.mean(eta_all)),
      max_leaf_size=m,
    )
    idx = cls(x, codes, codebooks, centers, members, info)
    idx.info["leaf_of"] = leaf_of.astype(np.int32)
    return idx

  # --- search -----------------------------------------------------------------------------------
  def search(
    self,
    queries,
    k: int,
    *,
    leaves_to_search: int | None = None,
    reorder: int = 0,
    batch_size: int | None = None,
    approx_top_k: bool = False,
    backend: str | None = None,
    native_lut: str = "auto",
    num_threads: int | None = None,
  ) -> tuple[jax.Array, jax.Array]:
    """Approximate maximum-inner-product search.

    Args:
      queries: ``[nq, d]`` (or ``[d]``).
      k: neighbours to return (≤ database size).
      leaves_to_search: leaves probed per query (default: all leaves).
      reorder: top ADC candidates re-scored exactly (0 = none; else ≥ k).
      batch_size: queries per jit call (default from a ~64 MB working-set budget).
      approx_top_k: use ``lax.approx_max_k`` for the ADC top-k (TPU-friendly; XLA path only).
      backend: ``"xla"`` (pure XLA: padded ``[L, max_leaf]`` gather ADC + ``lax.top_k``; the
        path for GPU/TPU), ``"native"`` (one fused C++ call per batch via the XLA FFI: leaf
        scores, LUTs, ADC over a CSR leaf layout with in-kernel top-R, exact reorder;
        :func:`vision_jax.search.native.search`; CPU only) or ``"auto"``
        (native on a CPU backend for a tree index when the kernel builds, else XLA). ``None``
        reads ``$VISION_JAX_SEARCH_BACKEND`` (default ``"auto"``). If the kernel cannot be built
        a warning names the reason once and the XLA path is used.
      native_lut: ``"float32"`` (scores equal the XLA path's to float rounding), ``"uint8"``
        (LUT16 fast scan: needs 16 centres and ≤ 256 blocks; ADC estimates within
        ``K·Δ/2``, see :func:`~vision_jax.search.native.lut16_error_bound`) or ``"auto"``
        (uint8 when ``reorder > 0`` and the index is LUT16, since the returned scores are then
        exact anyway; float32 otherwise).
      num_threads: native backend: threads each batch's queries are split over (results do not
        depend on it); ``None`` = the cores this process may use.

    Returns:
      ``(ids [nq, k] int32, scores [nq, k] float32)``; scores are exact inner products when
      ``reorder > 0``, ADC estimates otherwise. Where fewer than k (or ``reorder``) points were
      probed the missing slots hold id ``-1`` and score ``-inf``.

    Raises:
      ValueError: NaN/inf queries, dimension mismatch, k outside [1, n], bad leaves_to_search,
        reorder, backend, native_lut or num_threads; ``backend="native"`` on a non-CPU
        default backend.
    """
    q = np.asarray(queries)
    if q.ndim == 1:
      q = q[None, :]
    q = _as_matrix("queries", q)
    if q.shape[1] != self.dim:
      raise ValueError(
        f"queries have dimension {q.shape[1]} but the index was built with d={self.dim}"
      )
    if not isinstance(k, int | np.integer) or k < 1 or k > self.num_points:
      raise ValueError(f"k={k!r} must be an integer in [1, database size={self.num_points}]")
    nl = self.num_leaves
    if leaves_to_search is None:
      leaves_to_search = nl
    if not 1 <= leaves_to_search <= nl:
      raise ValueError(f"leaves_to_search={leaves_to_search!r} must be in [1, num_leaves={nl}]")
    cand = leaves_to_search * int(self.members.shape[1])
    if reorder:
      if reorder < k:
        raise ValueError(f"reorder={reorder!r} must be 0 or >= k={k}")
      reorder = int(min(reorder, cand))
    if k > cand:
      raise ValueError(
        f"k={k} exceeds the {cand} candidate slots of leaves_to_search={leaves_to_search}; "
        "probe more leaves"
      )
    nb = int(self.codes.shape[1])
    nc = int(self.codebooks.shape[1])
    exhaustive = self.info.get("num_leaves", 0) == 0
    backend = backend or os.environ.get("VISION_JAX_SEARCH_BACKEND", "auto")
    if backend not in ("auto", "xla", "native"):
      raise ValueError(f"backend={backend!r} must be 'auto', 'xla' or 'native'")
    if native_lut not in ("auto", "float32", "uint8"):
      raise ValueError(f"native_lut={native_lut!r} must be 'auto', 'float32' or 'uint8'")
    if num_threads is not None and (
      isinstance(num_threads, bool)
      or not isinstance(num_threads, int | np.integer)
      or num_threads < 1
    ):
      raise ValueError(f"num_threads={num_threads!r} must be a positive int or None")
    lut16_ok = nc == 16 and nb <= 256
    if native_lut == "uint8" and not lut16_ok:
      raise ValueError(
        f"native_lut='uint8' needs num_centers=16 and <= 256 blocks (index has {nc} centres, "
        f"{nb} blocks); use native_lut='float32'"
      )
    on_cpu = jax.default_backend() == "cpu"
    if backend == "native" and not on_cpu:
      raise ValueError(
        f"backend='native' runs on the CPU only (default backend is {jax.default_backend()!r}); "
        "use backend='xla' or 'auto'"
      )
    if backend == "auto":
      use_native = not exhaustive and on_cpu and native.available()
    else:
      use_native = backend == "native" and native.available()
    if use_native:
      lut = native_lut if native_lut != "auto" else ("uint8" if reorder and lut16_ok else "float32")
      arrays = self._native_arrays(lut)
      fn = functools.partial(
        _search_batch_native,
        k=int(k),
        leaves_to_search=int(leaves_to_search),
        reorder=int(reorder),
        lut=lut,
        num_threads=default_num_threads() if num_threads is None else int(num_threads),
      )
      return self._batched(
        q,
        batch_size or min(len(q), 1024),
        lambda qb: fn(qb, *self._native_query_arrays(), self.database, *arrays),
      )
    if batch_size is None:
      per_query = cand * (1 if exhaustive else nb)
      batch_size = int(max(1, min(len(q), (1 << 24) // max(1, per_query))))
    fn = functools.partial(
      _search_batch,
      k=int(k),
      leaves_to_search=int(leaves_to_search),
      reorder=int(reorder),
      approx=bool(approx_top_k),
      exhaustive=bool(exhaustive),
    )
    return self._batched(
      q,
      batch_size,
      lambda qb: fn(qb, self.leaf_centers, self.members, self.codes, self.codebooks, self.database),
    )

  @staticmethod
  def _batched(q: np.ndarray, batch_size: int, run):
    # Fixed batch shape (the last batch zero-padded) so each setting compiles once.
    ids, scores = [], []
    for s in range(0, len(q), batch_size):
      qb = q[s : s + batch_size]
      pad = batch_size - len(qb)
      if pad and len(q) > batch_size:
        qb = np.concatenate([qb, np.zeros((pad, qb.shape[1]), np.float32)])
      i, sc = run(qb)  # numpy straight into jit: its C++ path copies it, no extra dispatch
      n_real = batch_size - pad if len(q) > batch_size else len(qb)
      if n_real < len(qb):  # a slice is a dispatched op (~0.25 ms): only for padded batches
        i, sc = i[:n_real], sc[:n_real]
      ids.append(i)
      scores.append(sc)
    if len(ids) == 1:
      return ids[0], scores[0]
    return jnp.concatenate(ids), jnp.concatenate(scores)

  # --- persistence ------------------------------------------------------------------------------
  def save(self, path: str) -> None:
    """Saves every array plus the build info to one ``.npz`` file (atomic rename)."""
    info = {k: v for k, v in self.info.items() if k != "leaf_of"}
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(
      tmp,
      database=np.asarray(self.database),
      codes=np.asarray(self.codes),
      codebooks=np.asarray(self.codebooks),
      leaf_centers=np.asarray(self.leaf_centers),
      members=np.asarray(self.members),
      leaf_of=np.asarray(self.info.get("leaf_of", np.zeros(self.num_points, np.int32))),
      info=np.asarray(json.dumps(info)),
      format_version=np.asarray(_FORMAT_VERSION),
    )
    os.replace(tmp, path)

  @classmethod
  def load(cls, path: str) -> AVQIndex:
    """Loads an index written by :meth:`save`.

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: the file is not a readable ``.npz`` (truncated, corrupt, another format) or
        an ``.npz`` without this index's arrays, or of another ``format_version``; the message
        names the path. The file is closed in every case.
    """
    if not os.path.exists(path):
      raise FileNotFoundError(f"no index file at path={path!r}")
    keys = ("database", "codes", "codebooks", "leaf_centers", "members", "leaf_of", "info")
    with open(path, "rb") as fh:  # our handle: closed even when np.load fails half-way
      try:
        z = np.load(fh, allow_pickle=False)
      except Exception as e:  # noqa: BLE001 - any parse failure is "not an index file"
        raise ValueError(
          f"index file {path!r} is not a readable .npz ({type(e).__name__}: {e}); it is "
          "truncated, corrupt or not written by AVQIndex.save"
        ) from e
      if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"index file {path!r} is a single .npy array, not an AVQIndex .npz")
      with z:
        missing = [k for k in ("format_version", *keys) if k not in z.files]
        if missing:
          raise ValueError(
            f"index file {path!r} is an .npz without {', '.join(missing)} (has "
            f"{', '.join(sorted(z.files)) or 'no arrays'}); not written by AVQIndex.save"
          )
        try:
          version = int(z["format_version"])
          arrays = {k: z[k] for k in keys} if version == _FORMAT_VERSION else None
          info = None if arrays is None else json.loads(str(arrays.pop("info")))
        except Exception as e:  # noqa: BLE001 - a member that does not decode
          raise ValueError(
            f"index file {path!r} is corrupt ({type(e).__name__}: {e}); rebuild and save it"
          ) from e
        if arrays is None:
          raise ValueError(
            f"index file {path!r} has format_version={version}, expected {_FORMAT_VERSION}"
          )
    leaf_of = np.asarray(arrays.pop("leaf_of"), np.int32)
    idx = cls(**arrays, info=info)
    idx.info["leaf_of"] = leaf_of
    return idx
