"""Frame graphs: cosine-similarity adjacency (dense or blockwise kNN) and GCN propagation.

Nodes are the frames (or pooled shots/events) of one video, ``x [B, N, D]`` with a node mask
``mask [B, N]``. The cosine matrix :math:`C_{ij} = \\hat f_i \\cdot \\hat f_j`,
:math:`\\hat f = f / \\max(\\lVert f \\rVert, \\epsilon)`, can be negative, so the plain GCN
normalisation :math:`D^{-1/2} C D^{-1/2}` could divide by a non-positive degree. Two fixes:

* ``"relu"`` (symmetric GCN normalisation of the clamped graph):

  .. math::
     \\tilde A_{ij} = m_i m_j \\max(C_{ij}, 0), \\quad \\tilde A_{ii} = m_i, \\quad
     d_i = \\textstyle\\sum_j \\tilde A_{ij} \\ge 1, \\quad
     \\hat A = D^{-1/2} \\tilde A D^{-1/2}.

* ``"softmax"`` (row-stochastic): :math:`\\hat A_{ij} = m_i\\,
  \\mathrm{softmax}_{j: m_j = 1}(C_{ij} / \\tau)` with :math:`C_{ii} = 1`.

Choice: the self-loop is the cosine matrix's own unit diagonal (set to exactly 1 for every valid
  node, so a zero feature vector still has degree >= 1); no extra ``+ I`` on top of it, which
  would weight a node twice against an identical neighbour. The relu/softmax choice is
  ``model.adjacency_norm``; ``"relu"`` is the default because it keeps Kipf & Welling's
  symmetric normalisation, which the DCGN write-up quotes.

The kNN variant keeps, for every node, itself plus the ``k`` most similar *other* valid nodes.
Similarities are computed block by block (``row_block`` x ``col_block`` tiles, a running top-k
merged per column tile), so peak memory is ``O(N k + row_block (k + col_block))``, never
``O(N^2)``. Its propagation uses the same normalisation restricted to the kept edges
(``d_i = 1 + \\sum_{j \\in kNN(i)} \\max(C_{ij}, 0)``; :math:`\\hat A_{ij} = \\tilde A_{ij} /
\\sqrt{d_i d_j}`), so with ``k = N - 1`` it equals the dense graph exactly.

References:
  Mao, Wu, Xue, Zhang. "Hierarchical Video Frame Sequence Representation with Deep Convolutional
  Graph Network." ECCV 2018 Workshops (arXiv:1906.00377).
  Kipf, Welling. "Semi-Supervised Classification with Graph Convolutional Networks." ICLR 2017.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

ADJACENCY_NORMS = ("relu", "softmax")
_NEG = -1e30  # finite "minus infinity": keeps softmax and top_k NaN-free on all-masked rows


def _check_nodes(x, mask, name="x"):
  if x.ndim != 3:
    raise ValueError(f"{name} must be [batch, nodes, dim]; got shape {x.shape}")
  if mask.shape != x.shape[:2]:
    raise ValueError(f"mask must be [batch, nodes] = {x.shape[:2]}; got shape {mask.shape}")


def _check_norm(norm, temperature):
  if norm not in ADJACENCY_NORMS:
    raise ValueError(f"adjacency_norm={norm!r}; valid: {', '.join(ADJACENCY_NORMS)}")
  if not (isinstance(temperature, int | float) and temperature > 0):
    raise ValueError(f"temperature={temperature!r}; expected a positive number")


def l2_normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
  """``x / max(||x||, eps)`` over the last axis (float32)."""
  x = x.astype(jnp.float32)
  # sqrt(max(|x|^2, eps^2)), not max(norm, eps): the norm's gradient at a zero (padded) node is NaN.
  sq = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


def cosine_similarity(x: jax.Array, mask: jax.Array, eps: float = 1e-6) -> jax.Array:
  """Dense ``C [B, N, N]`` with ``C_ii = 1`` for valid nodes, 0 wherever a node is padding."""
  _check_nodes(x, mask)
  xn = l2_normalize(x, eps)
  c = jnp.einsum("bid,bjd->bij", xn, xn)
  m = mask.astype(jnp.float32)
  pair = m[:, :, None] * m[:, None, :]
  eye = jnp.eye(x.shape[1], dtype=jnp.float32)[None]
  return (c * (1.0 - eye) + eye) * pair


def dense_adjacency(
  x: jax.Array,
  mask: jax.Array,
  *,
  norm: str = "relu",
  temperature: float = 1.0,
  eps: float = 1e-6,
) -> jax.Array:
  """Normalised propagation matrix :math:`\\hat A` ``[B, N, N]`` (see the module docstring).

  Args:
    x: node features ``[B, N, D]``.
    mask: ``[B, N]`` bool, True for real nodes. Rows and columns of padding are zero.
    norm: ``"relu"`` (symmetric, clamped) or ``"softmax"`` (row-stochastic).
    temperature: softmax temperature :math:`\\tau` (``"softmax"`` only).
    eps: norm floor of the cosine.

  Returns:
    ``A_hat [B, N, N]`` float32; ``A_hat @ h`` propagates ``h``.

  Raises:
    ValueError: bad shapes or an unknown ``norm``.
  """
  _check_norm(norm, temperature)
  c = cosine_similarity(x, mask, eps)
  m = mask.astype(bool)
  pair = m[:, :, None] & m[:, None, :]
  if norm == "relu":
    a = jnp.maximum(c, 0.0)
    d = jnp.sum(a, axis=-1)
    inv = jnp.where(d > 0, jax.lax.rsqrt(jnp.maximum(d, 1e-12)), 0.0)
    return a * inv[:, :, None] * inv[:, None, :]
  logits = jnp.where(pair, c / temperature, _NEG)
  p = jax.nn.softmax(logits, axis=-1)
  return p * pair.astype(jnp.float32)


def propagate_dense(a_hat: jax.Array, h: jax.Array) -> jax.Array:
  """``A_hat @ h``: ``[B, N, N] x [B, N, D] -> [B, N, D]``."""
  return jnp.einsum("bij,bjd->bid", a_hat, h.astype(jnp.float32))


class KnnGraph(NamedTuple):
  """Sparse frame graph: each node's ``k`` non-self neighbours and normalised weights.

  Attributes:
    index: ``[B, N, k]`` int32 neighbour ids.
    weight: ``[B, N, k]`` float32 :math:`\\hat A_{i, index}` (0 for padding / unused slots).
    self_weight: ``[B, N]`` float32 :math:`\\hat A_{ii}` (0 for padded nodes).
  """

  index: jax.Array
  weight: jax.Array
  self_weight: jax.Array


def knn_topk(
  x: jax.Array,
  mask: jax.Array,
  *,
  k: int,
  row_block: int = 128,
  col_block: int = 128,
  eps: float = 1e-6,
) -> tuple[jax.Array, jax.Array]:
  """Blockwise top-``k`` cosine neighbours (self excluded), never forming the ``N x N`` matrix.

  Rows are processed ``row_block`` at a time (``lax.map``); for each row tile a ``lax.scan`` over
  column tiles merges the tile's ``row_block x col_block`` similarities into a running top-``k``.

  Args:
    x: ``[B, N, D]`` node features.
    mask: ``[B, N]`` bool.
    k: neighbours per node, ``1 <= k``; slots beyond the number of valid other nodes get
      similarity ``-1e30`` (and weight 0 downstream).
    row_block: rows per tile.
    col_block: columns per tile.
    eps: norm floor of the cosine.

  Returns:
    ``(sim [B, N, k] float32, index [B, N, k] int32)``, sorted by decreasing similarity.

  Raises:
    ValueError: bad shapes or ``k``/block sizes < 1.
  """
  _check_nodes(x, mask)
  for name, v in (("k", k), ("row_block", row_block), ("col_block", col_block)):
    if not isinstance(v, int) or v < 1:
      raise ValueError(f"{name}={v!r}; expected an integer >= 1")
  b, n, dim = x.shape
  rb, cb = min(row_block, n), min(col_block, n)
  nr, nc = math.ceil(n / rb), math.ceil(n / cb)
  xn = l2_normalize(x, eps) * mask[..., None].astype(jnp.float32)
  valid = mask.astype(bool)
  xr = jnp.pad(xn, ((0, 0), (0, nr * rb - n), (0, 0)))
  xr = xr.reshape(b, nr, rb, dim).transpose(1, 0, 2, 3)
  xc = jnp.pad(xn, ((0, 0), (0, nc * cb - n), (0, 0))).reshape(b, nc, cb, dim)
  vc = jnp.pad(valid, ((0, 0), (0, nc * cb - n))).reshape(b, nc, cb)

  def row_tile(args):
    r, xq = args  # xq [B, rb, D]
    rows = r * rb + jnp.arange(rb, dtype=jnp.int32)

    def col_tile(carry, c):
      vals, idx = carry
      cols = c * cb + jnp.arange(cb, dtype=jnp.int32)
      s = jnp.einsum("bqd,bcd->bqc", xq, xc[:, c])
      ok = vc[:, c][:, None, :] & (rows[None, :, None] != cols[None, None, :])
      s = jnp.where(ok, s, _NEG)
      cat_v = jnp.concatenate([vals, s], axis=-1)
      cat_i = jnp.concatenate([idx, jnp.broadcast_to(cols[None, None, :], s.shape)], axis=-1)
      top_v, pos = jax.lax.top_k(cat_v, k)
      return (top_v, jnp.take_along_axis(cat_i, pos, axis=-1)), None

    init = (jnp.full((b, rb, k), _NEG, jnp.float32), jnp.zeros((b, rb, k), jnp.int32))
    (vals, idx), _ = jax.lax.scan(col_tile, init, jnp.arange(nc))
    return vals, idx

  vals, idx = jax.lax.map(row_tile, (jnp.arange(nr), xr))  # [nr, B, rb, k]
  vals = vals.transpose(1, 0, 2, 3).reshape(b, nr * rb, k)[:, :n]
  idx = idx.transpose(1, 0, 2, 3).reshape(b, nr * rb, k)[:, :n]
  return vals, jnp.minimum(idx, n - 1)


def knn_adjacency(
  x: jax.Array,
  mask: jax.Array,
  *,
  k: int,
  norm: str = "relu",
  temperature: float = 1.0,
  row_block: int = 128,
  col_block: int = 128,
  eps: float = 1e-6,
) -> KnnGraph:
  """Normalised kNN propagation graph (self + ``k`` neighbours per node), ``O(N k)`` memory.

  Same normalisations as :func:`dense_adjacency` restricted to the kept edges; with
  ``k = N - 1`` the two are equal.

  Args:
    x: ``[B, N, D]``; mask: ``[B, N]`` bool; k: neighbours; norm, temperature: as
      :func:`dense_adjacency`; row_block, col_block: tile sizes of :func:`knn_topk`.

  Returns:
    :class:`KnnGraph`.

  Raises:
    ValueError: bad shapes, ``k`` or ``norm``.
  """
  _check_norm(norm, temperature)
  sim, idx = knn_topk(x, mask, k=k, row_block=row_block, col_block=col_block, eps=eps)
  m = mask.astype(bool)
  used = (sim > _NEG / 2) & m[:, :, None]
  mf = m.astype(jnp.float32)
  if norm == "relu":
    w = jnp.where(used, jnp.maximum(sim, 0.0), 0.0)
    d = mf + jnp.sum(w, axis=-1)
    inv = jnp.where(d > 0, jax.lax.rsqrt(jnp.maximum(d, 1e-12)), 0.0)
    inv_j = jnp.take_along_axis(inv, idx.reshape(idx.shape[0], -1), axis=1).reshape(idx.shape)
    return KnnGraph(idx, w * inv[:, :, None] * inv_j, mf * inv * inv)
  logits = jnp.where(used, sim / temperature, _NEG)
  self_logit = jnp.full(m.shape + (1,), 1.0 / temperature, jnp.float32)
  p = jax.nn.softmax(jnp.concatenate([self_logit, logits], axis=-1), axis=-1)
  return KnnGraph(idx, p[..., 1:] * used.astype(jnp.float32), p[..., 0] * mf)


def propagate_knn(graph: KnnGraph, h: jax.Array) -> jax.Array:
  """``A_hat @ h`` for a :class:`KnnGraph`, one neighbour slot at a time (``O(N D)`` extra).

  Args:
    graph: from :func:`knn_adjacency`.
    h: ``[B, N, D]``.

  Returns:
    ``[B, N, D]`` float32.
  """
  h = h.astype(jnp.float32)
  out = graph.self_weight[..., None] * h
  gather = jax.vmap(lambda hb, ib: hb[ib])  # [N, D], [N] -> [N, D]

  def body(m, acc):
    nb = gather(h, graph.index[:, :, m])
    return acc + graph.weight[:, :, m][..., None] * nb

  return jax.lax.fori_loop(0, graph.index.shape[-1], body, out)
