"""Class-chunked margin cross-entropy: the softmax normaliser and its gradients, never ``[B, C]``.

A margin head's loss is a cross-entropy over ``C`` classes whose ``[B, C]`` logits (and their
cotangent) dominate the memory of a large head: at ``C = 10^6``, ``B = 512`` each is 2 GiB, as
much as the weight gradient itself. Here the classes are visited in blocks of ``K`` with
``lax.scan``; the forward keeps an online log-sum-exp per row, and the backward (a
``jax.custom_vjp``) recomputes each block's scores instead of storing them, the idea of cut
cross-entropy for language-model heads. Peak extra memory is then the gradients (``dW``,
``C x D``) plus ``O(B K)`` per block.

The kernel computes, for raw scores :math:`z_{ij}` (cosine :math:`n_j\\,\\hat x_i^\\top W_j` with
:math:`n_j = 1/\\lVert W_j\\rVert`, or :math:`x_i^\\top W_j + b_j` for plain softmax) and a
per-row scale :math:`a_i`,

.. math::
  \\operatorname{lse}_i = \\log \\sum_{j \\ne y_i} e^{a_i z_{ij}}, \\qquad
  z_{iy_i} = z_{i, y_i},

the non-target normaliser and the target score; the caller adds the target logit
:math:`t_i = g(z_{iy_i})`: :math:`\\ell_i = \\operatorname{softplus}(\\operatorname{lse}_i - t_i)
= \\log(e^{t_i} + \\sum_{j \\ne y_i} e^{a_i z_{ij}}) - t_i`. With upstream cotangents
:math:`\\bar\\ell_i` (of lse) and :math:`\\bar z_i` (of the target score), the backward is, per block,

.. math::
  \\bar z_{ij} = \\bar\\ell_i a_i e^{a_i z_{ij} - \\operatorname{lse}_i}\\,[j \\ne y_i]
    + \\bar z_i [j = y_i], \\qquad
  \\bar a_i = \\bar\\ell_i \\sum_{j \\ne y_i} e^{a_i z_{ij} - \\operatorname{lse}_i} z_{ij},

.. math::
  \\bar{\\hat x} = (\\bar z \\operatorname{diag} n) W, \\qquad
  \\bar W_j = n_j \\big((\\bar z^\\top \\hat x)_j\\big) - n_j^2 \\Big(\\sum_i \\bar z_{ij} z_{ij}\\Big) W_j

(the second term only where the norm is not clamped; plain softmax: :math:`\\bar x = \\bar z W`,
:math:`\\bar W = \\bar z^\\top x`, :math:`\\bar b_j = \\sum_i \\bar z_{ij}`). So the forward costs one
``B x D x C`` matmul and the backward three (recomputed scores, ``dX``, ``dW``): four in all,
against three for the unchunked head, which stores the scores instead.

The class-parallel head calls the same kernel per shard (``offset`` is the global id of the
shard's first class; a row whose label is on another shard has no target column here and a
zero target score, which the caller ``psum``-s).

Choice: the last block is ``[C - K, C)`` when ``K`` does not divide ``C``; its columns already
covered by the previous block are masked out (forward and backward), so every block has the same
static shape and no copy of ``W`` is padded.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

Array = jax.Array

#: Squared-norm floor of the weight rows (as ``margin.NORM_EPS``).
NORM_EPS = 1e-12
#: Target number of elements of one ``[B, K]`` block of scores (16 MiB in float32).
BLOCK_ELEMENTS = 1 << 22


def auto_chunk_size(batch: int, num_classes: int) -> int | None:
  """The class block size ``K`` chosen when ``chunk_size`` is not given; None means unchunked.

  Choice: a target ``K_0 = max(512, 128 floor(2^22 / (128 B)))`` (a ``[B, K]`` float32 block is
  at most 16 MiB, so the few per-block temporaries stay under ~3 % of ``dW`` at ``C = 10^6``,
  ``D = 512``, while each block's matmul is still large enough to run at full speed; 8,192 at
  ``B = 512``); then the largest multiple of 8 in ``[K_0 / 2, K_0]`` that divides ``C`` if there
  is one (the blocks' ``dW`` rows then stack into ``dW`` without a ``[C, D]`` accumulator: 8,000
  at ``C = 10^6``), else ``K_0``. No chunking when ``C <= 2 K_0``: there the ``[B, C]`` scores are
  small and the unchunked head, which stores them and so needs three matmuls instead of four, is
  faster.
  """
  k0 = max(512, (BLOCK_ELEMENTS // max(int(batch), 1)) // 128 * 128)
  if num_classes <= 2 * k0:
    return None
  for k in range(k0, k0 // 2 - 1, -8):
    if num_classes % k == 0:
      return k
  return k0


def resolve_chunk_size(chunk_size, batch: int, num_classes: int) -> int | None:
  """Validated block size: ``None`` -> ``auto_chunk_size``; ``>= num_classes`` -> None (unchunked).

  Raises:
    TypeError, ValueError: if ``chunk_size`` is not None or a positive Python int.
  """
  if chunk_size is None:
    return auto_chunk_size(batch, num_classes)
  if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
    raise TypeError(
      f"chunk_size={chunk_size!r} must be None (automatic) or a positive Python int (static: it "
      "sets the block shape)."
    )
  if chunk_size < 1:
    raise ValueError(f"chunk_size={chunk_size} must be >= 1 (or None for the automatic choice).")
  return None if chunk_size >= num_classes else int(chunk_size)


def _zero_if_symbolic(ct, like):
  return jnp.zeros_like(like) if ct is None or isinstance(ct, SymbolicZero) else ct


def _varying(a) -> frozenset:
  mat = getattr(jax.typeof(a), "manual_axis_type", None)
  return getattr(mat, "varying", frozenset())


def _vary_like(tree, *refs):
  """Marks scan-carry initial values as varying over the manual mesh axes of ``refs``.

  Inside ``jax.shard_map`` a carry computed from per-shard inputs varies over their mesh axes,
  so its initial value (a constant) must be cast to match; outside shard_map this is a no-op.
  """
  want = frozenset().union(*map(_varying, refs))

  def cast(x):
    missing = tuple(sorted(want - _varying(x)))
    return lax.pcast(x, missing, to="varying") if missing else x

  return jax.tree.map(cast, tree)


def _sum_to(ct, primal):
  """Cotangent of an input that is invariant over some mesh axes: ``psum`` over those axes."""
  if ct is None:
    return None
  extra = tuple(sorted(_varying(ct) - _varying(primal)))
  return lax.psum(ct, extra) if extra else ct


def nontarget_lse(xh, w, b, labels, a, offset, *, normalize: bool, chunk: int):
  """``(lse [B], z_y [B])`` of the module docstring, in blocks of ``chunk`` classes.

  Args:
    xh: ``[B, D]`` float32 features (already L2-normalised for cosine heads).
    w: ``[C, D]`` float32 raw class weights (normalised here, per block, for cosine heads).
    b: ``[C]`` float32 bias (used only when ``normalize`` is False).
    labels: ``[B]`` int32 global class ids (already made safe: any value, no wrap-around).
    a: ``[B]`` float32 scale of the non-target logits.
    offset: int32 scalar, global id of ``w``'s row 0.
    normalize: cosine scores (True) or dot products plus bias (False).
    chunk: static block size ``1 <= K <= C``.

  Returns:
    ``lse [B]`` (``-inf`` when a row has no non-target class here) and the target score
    ``z_y [B]`` (0 when the label is not in ``[offset, offset + C)``). Differentiable in reverse
    mode (``custom_vjp``) w.r.t. ``xh``, ``w``, ``b`` and ``a``; inputs that are not being
    differentiated (e.g. stop-gradient IR weights) get no backward matmul at all.
  """
  num_classes = w.shape[0]
  k = int(chunk)
  if not 1 <= k <= num_classes:
    raise ValueError(f"chunk={k} must be in [1, {num_classes}].")
  num_blocks = -(-num_classes // k)

  def block(xh, w, b, labels, a, offset, j):
    start = jnp.minimum(j * k, num_classes - k)
    cols = start + jnp.arange(k, dtype=jnp.int32)
    valid = cols >= j * k  # columns of the clamped last block already seen are masked
    w_blk = lax.dynamic_slice_in_dim(w, start, k, 0)
    r = xh @ w_blk.T
    if normalize:
      sq = jnp.sum(jnp.square(w_blk), axis=1)
      n = lax.rsqrt(jnp.maximum(sq, NORM_EPS))
      z = r * n[None, :]
    else:
      sq = n = None
      z = r + lax.dynamic_slice_in_dim(b, start, k, 0)[None, :]
    is_target = (labels[:, None] == (cols + offset)[None, :]) & valid[None, :]
    keep = valid[None, :] & ~is_target
    return start, w_blk, z, sq, n, keep, is_target

  def target_score(xh, w, b, labels, offset):
    local = labels - offset
    inside = (local >= 0) & (local < num_classes)
    idx = jnp.clip(local, 0, num_classes - 1)
    w_y = jnp.take(w, idx, axis=0)
    dot = jnp.sum(xh * w_y, axis=1)
    if normalize:
      dot = dot * lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(w_y), axis=1), NORM_EPS))
    else:
      dot = dot + jnp.take(b, idx)
    return jnp.where(inside, dot, 0.0)

  def forward(xh, w, b, labels, a, offset):
    batch = xh.shape[0]

    def body(carry, j):
      m, s = carry
      _, _, z, _, _, keep, _ = block(xh, w, b, labels, a, offset, j)
      logit = jnp.where(keep, a[:, None] * z, -jnp.inf)
      m_new = jnp.maximum(m, jnp.max(logit, axis=1))
      ref = jnp.where(m_new > -jnp.inf, m_new, 0.0)
      s = s * jnp.exp(m - ref) + jnp.sum(jnp.exp(logit - ref[:, None]), axis=1)
      return (m_new, s), None

    init = (jnp.full((batch,), -jnp.inf, jnp.float32), jnp.zeros((batch,), jnp.float32))
    init = _vary_like(init, xh, w, b, labels, a, offset)
    (m, s), _ = lax.scan(body, init, jnp.arange(num_blocks, dtype=jnp.int32))
    lse = m + jnp.log(s)
    return lse, target_score(xh, w, b, labels, offset)

  @jax.custom_vjp
  def kernel(xh, w, b, labels, a, offset):
    return forward(xh, w, b, labels, a, offset)

  # Symbolic zeros (skip the backward matmuls of inputs not being differentiated) are not
  # supported by JAX under shard_map; there every cotangent is computed and, under jit, XLA
  # drops the loop-carried ones nobody uses.
  sharded = any(_varying(v) for v in (xh, w, b, labels, a))

  def kernel_fwd(*args):
    names = ("xh", "w", "b", "a")
    if sharded:
      need = dict.fromkeys(names)
      vals = list(args)
    else:
      need = {n: None for n, p in zip(names, (args[0], args[1], args[2], args[4])) if p.perturbed}
      vals = [p.value for p in args]
    lse, z_y = forward(*vals)
    # ``need`` is a pytree without leaves: it carries which inputs need a cotangent.
    return (lse, z_y), (*vals, lse, need)

  def kernel_bwd(res, cts):
    xh, w, b, labels, a, offset, lse, need = res
    ct_lse = _zero_if_symbolic(cts[0], lse)
    ct_zy = _zero_if_symbolic(cts[1], lse)
    ref = jnp.where(lse > -jnp.inf, lse, 0.0)
    ga = ct_lse * a
    # K | C: each block's dW rows are a scan output and the stacked blocks are dW (no [C, D]
    # zeros, no read-modify-write); else they are added into a loop-carried dW.
    stacked = num_classes % k == 0
    carry = {}
    if "xh" in need:
      carry["xh"] = jnp.zeros_like(xh)
    if "w" in need and not stacked:
      carry["w"] = jnp.zeros_like(w)
    if "b" in need and not normalize:
      carry["b"] = jnp.zeros_like(b)
    if "a" in need:
      carry["a"] = jnp.zeros_like(a)

    def body(acc, j):
      start, w_blk, z, sq, n, keep, is_target = block(xh, w, b, labels, a, offset, j)
      e = jnp.where(keep, jnp.exp(a[:, None] * z - ref[:, None]), 0.0)
      dz = ga[:, None] * e + jnp.where(is_target, ct_zy[:, None], 0.0)
      acc = dict(acc)
      if "a" in acc:
        acc["a"] = acc["a"] + ct_lse * jnp.sum(e * z, axis=1)
      dr = dz * n[None, :] if normalize else dz
      if "xh" in acc:
        acc["xh"] = acc["xh"] + dr @ w_blk
      g = None
      if "w" in need:
        g = dr.T @ xh
        if normalize:
          u = jnp.where(sq > NORM_EPS, jnp.square(n) * jnp.sum(dz * z, axis=0), 0.0)
          g = g - u[:, None] * w_blk
      if "w" in acc:
        old = lax.dynamic_slice_in_dim(acc["w"], start, k, 0)
        acc["w"] = lax.dynamic_update_slice_in_dim(acc["w"], old + g, start, 0)
        g = None
      if "b" in acc:
        old = lax.dynamic_slice_in_dim(acc["b"], start, k, 0)
        acc["b"] = lax.dynamic_update_slice_in_dim(acc["b"], old + jnp.sum(dz, axis=0), start, 0)
      return acc, g

    if carry or "w" in need:
      carry = _vary_like(carry, xh, w, b, labels, a, offset, ct_lse, ct_zy)
      carry, dw_blocks = lax.scan(body, carry, jnp.arange(num_blocks, dtype=jnp.int32))
      if dw_blocks is not None:
        carry["w"] = dw_blocks.reshape(w.shape)
    # Inside shard_map an input used by every shard (x on the model axis) sums its cotangents.
    return (
      _sum_to(carry.get("xh"), xh),
      _sum_to(carry.get("w"), w),
      _sum_to(carry.get("b"), b),
      None,
      _sum_to(carry.get("a"), a),
      None,
    )

  kernel.defvjp(kernel_fwd, kernel_bwd, symbolic_zeros=not sharded)
  return kernel(xh, w, b, labels, a, jnp.asarray(offset, jnp.int32))
