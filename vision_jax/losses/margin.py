"""Softmax and the margin-softmax family (NormFace, SphereFace, CosFace/AM-Softmax, ArcFace).

All public losses take ``(embeddings [B, D], weights [C, D], labels [B] int)`` plus keyword-only
hyperparameters and return the per-example cross-entropy ``[B]`` (float32). Each has a
``*_logits`` twin returning the margin-adjusted logits ``[B, C]``. Large heads are computed in
blocks of classes (``chunk_size``, chosen automatically), never holding ``[B, C]``: see
``_chunked.py``.

Bad input: shapes and dtypes are checked always; label range and finiteness eagerly (raising
``ValueError`` naming the argument and the first bad index). Under ``jit`` a label outside
``[0, C)`` (negative included) makes that row's loss (and logits) NaN, unless the row is masked
by ``where``; ``checked`` turns the same checks into a host-side exception.

Every head has the same structure, which the class-parallel version (``class_parallel.py``)
reuses: with :math:`z_{ij}` the raw score (a cosine, or a dot product for plain softmax),
:math:`a_i` a per-example scale and :math:`g` the target transform,

.. math::
  \\ell_i = -\\log \\frac{e^{a_i g(z_{i y_i})}}
                     {e^{a_i g(z_{i y_i})} + \\sum_{j \\ne y_i} e^{a_i z_{ij}}}.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from vision_jax.losses import _chunked
from vision_jax.losses._validate import (
  check_scalar,
  is_concrete,
  poison_bad_labels,
  safe_labels,
  validate_head_inputs,
)

Array = jax.Array

#: Squared-norm floor of ``l2_normalize`` (norm floor 1e-6): zero rows map to zero, finite grads.
NORM_EPS = 1e-12
#: Floor used only in the *derivative* of ``sin θ = sqrt(1 - cos²θ)`` (the value stays exact), so
#: that ``d/dcos`` is bounded by ``1 / (2 sqrt(SIN_GRAD_EPS))`` at θ = 0 and θ = π.
SIN_GRAD_EPS = 1e-7


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def l2_normalize(x: Array, axis: int = -1, eps: float = NORM_EPS) -> Array:
  r"""``x / max(||x||, sqrt(eps))`` along ``axis``; zero vectors stay zero with finite gradient.

  The derivative is written out (``custom_jvp``) as the projection
  :math:`\dot y = (\dot x - y\,\langle y, \dot x\rangle)/\lVert x\rVert` (just
  :math:`\dot x / \sqrt{eps}` where the norm is clamped), so that reverse mode is one row
  reduction plus one fused elementwise pass; autodiff of the expression above materialises a
  broadcast of the norm over ``x``'s shape (a full extra pass over a ``[C, D]`` weight matrix).
  """
  sq = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
  return x * lax.rsqrt(jnp.maximum(sq, eps))


@l2_normalize.defjvp
def _l2_normalize_jvp(axis, eps, primals, tangents):
  (x,), (t,) = primals, tangents
  sq = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
  r = lax.rsqrt(jnp.maximum(sq, eps))
  y = x * r
  proj = jnp.where(sq > eps, jnp.sum(y * t, axis=axis, keepdims=True), 0.0)
  return y, r * (t - y * proj)


@jax.custom_jvp
def _sqrt_clamped_grad(x):
  return jnp.sqrt(jnp.maximum(x, 0.0))


@_sqrt_clamped_grad.defjvp
def _sqrt_clamped_grad_jvp(primals, tangents):
  (x,), (t,) = primals, tangents
  return _sqrt_clamped_grad(x), t * 0.5 * lax.rsqrt(jnp.maximum(x, SIN_GRAD_EPS))


def _sin_from_cos(c: Array) -> Array:
  return _sqrt_clamped_grad(1.0 - jnp.square(c))


def _chebyshev(c: Array, m: int) -> Array:
  """cos(m θ) as the Chebyshev polynomial T_m(cos θ) (no arccos, exact gradient)."""
  t_prev, t = jnp.ones_like(c), c
  if m == 0:
    return t_prev
  for _ in range(m - 1):
    t_prev, t = t, 2.0 * c * t - t_prev
  return t


@dataclasses.dataclass(frozen=True)
class MarginHead:
  """Internal description of a head: raw scores, per-example scale and target transform.

  Attributes:
    normalize: if True, ``z`` is the cosine between L2-normalised embeddings and weights;
      otherwise the raw dot product ``x · w`` (plain softmax).
    scale_fn: ``||x|| [B] -> a [B]``, the scale of the non-target logits.
    target_fn: ``(z_y [B], ||x|| [B]) -> target logit [B]`` (already scaled).
  """

  normalize: bool
  scale_fn: Callable[[Array], Array]
  target_fn: Callable[[Array, Array], Array]


def _const_scale(scale):
  return lambda xnorm: jnp.broadcast_to(jnp.asarray(scale, jnp.float32), xnorm.shape)


def _check_scale(scale):
  check_scalar(
    "scale",
    scale,
    low=0.0,
    low_inclusive=False,
    high=1e4,
    fix="Typical values: 30 (AM-Softmax), 64 (ArcFace/CosFace).",
  )


def softmax_head() -> MarginHead:
  return MarginHead(False, _const_scale(1.0), lambda z, xn: z)


def normface_head(*, scale) -> MarginHead:
  _check_scale(scale)
  return MarginHead(True, _const_scale(scale), lambda z, xn: scale * z)


def a_softmax_head(*, margin: int = 4, lambda_=0.0) -> MarginHead:
  if is_concrete(margin):
    if isinstance(margin, bool) or int(margin) != margin or not 1 <= int(margin) <= 10:
      raise ValueError(
        f"margin={margin!r} is out of range; A-Softmax needs an integer margin m in [1, 10] "
        "(SphereFace uses 4)."
      )
  else:
    raise TypeError("A-Softmax margin must be a static Python int (it sets the polynomial degree).")
  m = int(margin)
  check_scalar("lambda_", lambda_, low=0.0, fix="Use sphereface_lambda(step) for the annealing.")

  def target(c, xnorm):
    theta = jnp.arccos(lax.stop_gradient(jnp.clip(c, -1.0, 1.0)))
    k = jnp.clip(jnp.floor(m * theta / math.pi), 0, m - 1)
    sign = 1.0 - 2.0 * jnp.mod(k, 2.0)
    psi = sign * _chebyshev(c, m) - 2.0 * k
    lam = jnp.asarray(lambda_, jnp.float32)
    return xnorm * (lam * c + psi) / (1.0 + lam)

  return MarginHead(True, lambda xnorm: xnorm, target)


def am_softmax_head(*, scale=30.0, margin=0.35) -> MarginHead:
  _check_scale(scale)
  check_scalar("margin", margin, low=0.0, high=1.0, fix="CosFace/AM-Softmax use 0.35-0.4.")
  return MarginHead(True, _const_scale(scale), lambda z, xn: scale * (z - margin))


def arcface_head(
  *, scale=64.0, margin=0.5, easy_margin=False, gradient: str = "exact"
) -> MarginHead:
  _check_scale(scale)
  check_scalar(
    "margin",
    margin,
    low=0.0,
    high=math.pi / 2,
    high_inclusive=False,
    fix="ArcFace uses 0.5 rad (pytorch-metric-learning takes degrees: 28.6 = 0.5 rad).",
  )
  if gradient not in ("exact", "straight_through"):
    raise ValueError(f"gradient={gradient!r}; expected 'exact' or 'straight_through'.")
  # jnp (not math) so that a traced margin (e.g. a margin schedule under jit) works.
  m = jnp.asarray(margin, jnp.float32)
  cos_m, sin_m = jnp.cos(m), jnp.sin(m)
  threshold = -cos_m  # theta + m > pi  <=>  cos(theta) < cos(pi - m) = -cos(m)

  def phi(c):
    c = jnp.clip(c, -1.0, 1.0)
    cos_theta_m = c * cos_m - _sin_from_cos(c) * sin_m
    if easy_margin:
      return jnp.where(c > 0.0, cos_theta_m, c)
    return jnp.where(c > threshold, cos_theta_m, c - m * sin_m)

  def target(z, xn):
    if gradient == "exact":
      return scale * phi(z)
    return scale * (z + lax.stop_gradient(phi(z) - z))

  return MarginHead(True, _const_scale(scale), target)


# ------------------------------------------------------------------------------------ core ----


def _prepare(embeddings, weights, labels, where, bias=None):
  """Validated float32 ``(x, w, labels, where, label_ok)``.

  ``label_ok [B]`` is False for rows whose label is outside ``[0, C)``; their labels are
  replaced by 0 so the loss stays finite, and the caller poisons their output with NaN
  (``poison_bad_labels``). Eagerly such labels already raised; this is the path under ``jit``.
  """
  validate_head_inputs(embeddings, weights, labels, where=where, bias=bias)
  x = jnp.asarray(embeddings).astype(jnp.float32)
  w = jnp.asarray(weights).astype(jnp.float32)
  labels = jnp.asarray(labels)
  if where is not None:
    where = jnp.asarray(where, bool)
    # Padded rows: zero features and a valid label, so no NaN can leak into real rows' grads.
    x = jnp.where(where[:, None], x, 0.0)
    labels = jnp.where(where, labels, 0)
  labels, label_ok = safe_labels(labels, w.shape[0])
  return x, w, labels, where, label_ok


def head_scores(head: MarginHead, x: Array, w: Array, bias=None) -> tuple[Array, Array]:
  """Raw scores ``z [B, C]`` and feature norms ``||x|| [B]`` (float32)."""
  xnorm = jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=1), NORM_EPS))
  if head.normalize:
    z = l2_normalize(x) @ l2_normalize(w).T
  else:
    z = x @ w.T
  if bias is not None:
    z = z + jnp.asarray(bias, jnp.float32)[None, :]
  return z, xnorm


def target_scores(z: Array, labels: Array, class_offset=0) -> tuple[Array, Array]:
  """Target mask ``[B, C_local]`` and target score ``z_y [B]`` from scores ``z``.

  ``class_offset`` is the global id of column 0 (class-parallel shards); the target score is
  gathered locally and is zero for rows whose label lives on another shard.
  """
  num_local = z.shape[1]
  is_target = labels[:, None] == (jnp.arange(num_local) + class_offset)[None, :]
  z_y = jnp.sum(jnp.where(is_target, z, 0.0), axis=1)
  return is_target, z_y


def _gather_target(z: Array, labels: Array) -> tuple[Array, Array]:
  """Target mask ``[B, C]`` (fused into consumers, never materialised) and ``z_y`` by gather."""
  is_target = labels[:, None] == jnp.arange(z.shape[1])[None, :]
  z_y = jnp.take_along_axis(z, labels[:, None].astype(jnp.int32), axis=1)[:, 0]
  return is_target, z_y


def _logits_and_target(head, embeddings, weights, labels, where, bias=None):
  x, w, labels, where, label_ok = _prepare(embeddings, weights, labels, where, bias)
  z, xnorm = head_scores(head, x, w, bias)
  is_target, z_y = _gather_target(z, labels)
  target = head.target_fn(z_y, xnorm)
  logits = jnp.where(is_target, target[:, None], head.scale_fn(xnorm)[:, None] * z)
  return poison_bad_labels(logits, label_ok), poison_bad_labels(target, label_ok), where


def _margin_xent(target_fn, normalize: bool):
  r"""Cross-entropy of the margin logits of ``(x̂, W)``, with a written-out JVP.

  ``f(x̂ [B,D], W [C,D], b [C], labels [B], a [B], xnorm [B]) = logsumexp_j(l_ij) - t_i`` with
  scores ``z_ij = n_j (x̂_i · W_j)``, ``n_j = 1/‖W_j‖`` (cosine heads; ``x̂`` is already
  normalised) or ``z_ij = x̂_i · W_j + b_j`` (plain softmax), ``l_ij = a_i z_ij`` (j ≠ y_i) and
  ``l_iy = t_i = target_fn(z_iy, xnorm_i)``. The derivative is

  .. math::
    \dot f_i = \sum_{j \ne y_i} p_{ij} (a_i \dot z_{ij} + \dot a_i z_{ij})
      + (p_{iy_i} - 1)\,\dot t_i, \qquad
    \dot z = (\dot{\hat x} W^\top) \operatorname{diag}(n) + \hat x \dot V^\top, \quad
    \dot V_j = n_j (\dot W_j - n_j^2 (W_j \cdot \dot W_j) W_j)

  with ``p = softmax(l)`` (``V̇`` is the tangent of the normalised weights, written without
  forming them). In reverse mode JAX transposes this into exactly three ``B×D×C`` matmuls
  (``(∂z·n) W``, ``∂zᵀ x̂``) plus one fused elementwise pass over ``[B, C]`` and two over
  ``[C, D]``.

  Why written out (``benchmarks/bench_margin_loss.py`` measures it): autodiff of the plain
  forward materialises the normalised ``[C, D]`` weights, a masked copy of ``z`` for the target
  gather and two ``where`` transposes as extra ``[B, C]`` arrays, and lets XLA:CPU fuse ``exp``
  into a library reduction that runs it ~5x slower than a loop fusion. Here
  ``e = exp(l - max l)`` is computed once and reused for ``Σ e`` and for ``p``. ``custom_jvp``
  rather than ``custom_vjp`` so forward mode (``jax.jvp``, ``jax.jacfwd``) works too.
  """

  def scores(xh, w, b):
    r = xh @ w.T
    if not normalize:
      return r + b[None, :], None
    sq = jnp.sum(jnp.square(w), axis=1)
    n = lax.rsqrt(jnp.maximum(sq, NORM_EPS))
    return r * n[None, :], (sq, n)

  @jax.custom_jvp
  def xent(xh, w, b, labels, a, xnorm):
    z, _ = scores(xh, w, b)
    is_target, z_y = _gather_target(z, labels)
    t = target_fn(z_y, xnorm)
    logits = jnp.where(is_target, t[:, None], a[:, None] * z)
    return jax.nn.logsumexp(logits, axis=1) - t

  def xent_jvp(primals, tangents):
    xh, w, b, labels, a, xnorm = primals
    # Symbolic zeros (inputs not being differentiated, e.g. IR's stop-gradient centres) are
    # None here, so their matmuls are never built.
    xh_dot, w_dot, b_dot, _, a_dot, xnorm_dot = (
      None if isinstance(t, SymbolicZero) else t for t in tangents
    )
    z, aux = scores(xh, w, b)
    is_target, z_y = _gather_target(z, labels)
    t, t_lin = jax.linearize(target_fn, z_y, xnorm)
    logits = jnp.where(is_target, t[:, None], a[:, None] * z)
    m = jnp.max(logits, axis=1)
    e = jnp.exp(logits - m[:, None])
    total = jnp.sum(e, axis=1)
    lse = m + jnp.log(total)
    p = e / total[:, None]
    terms = []
    if xh_dot is not None:
      terms.append(xh_dot @ w.T)
    if w_dot is not None and normalize:
      sq, n = aux
      # Rows with a clamped norm have a constant n: their V̇ is just n Ẇ.
      u = jnp.where(sq > NORM_EPS, jnp.square(n) * jnp.sum(w * w_dot, axis=1), 0.0)
      terms.append(xh @ (w_dot - w * u[:, None]).T)
    elif w_dot is not None:
      terms.append(xh @ w_dot.T)
    z_dot = sum(terms[1:], terms[0]) if terms else None
    if z_dot is not None and normalize:
      # n factored out of both terms, so the transpose scales ∂z once and feeds both matmuls.
      z_dot = z_dot * aux[1][None, :]
    if b_dot is not None and not normalize:
      z_dot = b_dot[None, :] if z_dot is None else z_dot + b_dot[None, :]
    zeros = jnp.zeros_like(z_y)
    # The target tangent as a masked row sum (its transpose is a select, fused with the rest).
    z_y_dot = zeros if z_dot is None else jnp.sum(jnp.where(is_target, z_dot, 0.0), axis=1)
    t_dot = t_lin(z_y_dot, zeros if xnorm_dot is None else xnorm_dot)
    l_dot = None if z_dot is None else a[:, None] * z_dot
    if a_dot is not None:
      l_dot = a_dot[:, None] * z if l_dot is None else l_dot + a_dot[:, None] * z
    f_dot = zeros if l_dot is None else jnp.sum(jnp.where(is_target, 0.0, p * l_dot), axis=1)
    return lse - t, f_dot + (jnp.exp(t - lse) - 1.0) * t_dot

  xent.defjvp(xent_jvp, symbolic_zeros=True)
  return xent


def _loss(head, embeddings, weights, labels, where, bias=None, chunk_size=None):
  x, w, labels, where, label_ok = _prepare(embeddings, weights, labels, where, bias)
  chunk = _chunked.resolve_chunk_size(chunk_size, x.shape[0], w.shape[0])
  xnorm = jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=1), NORM_EPS))
  xh = l2_normalize(x) if head.normalize else x
  if bias is None:
    b = jnp.zeros((w.shape[0],), jnp.float32)
  else:
    b = jnp.asarray(bias, jnp.float32)
  a = head.scale_fn(xnorm)
  labels = labels.astype(jnp.int32)
  if chunk is None:
    loss = _margin_xent(head.target_fn, head.normalize)(xh, w, b, labels, a, xnorm)
  else:
    lse, z_y = _chunked.nontarget_lse(xh, w, b, labels, a, 0, normalize=head.normalize, chunk=chunk)
    # log(e^t + sum_{j != y} e^{l_j}) - t, stable for any sign of lse - t.
    loss = jax.nn.softplus(lse - head.target_fn(z_y, xnorm))
  # [B] select: NaN for out-of-range labels under jit (their gradient contribution is zero).
  loss = poison_bad_labels(loss, label_ok)
  if where is not None:
    loss = jnp.where(where, loss, 0.0)
  return loss


def _logits(head, embeddings, weights, labels, where, bias=None):
  return _logits_and_target(head, embeddings, weights, labels, where, bias)[0]


# ---------------------------------------------------------------------------------- public ----


def softmax_loss(embeddings, weights, labels, *, bias=None, where=None, chunk_size=None) -> Array:
  """Softmax cross-entropy of a plain fully connected classifier.

  .. math::
    \\ell_i = -\\log \\frac{e^{W_{y_i}^\\top x_i + b_{y_i}}}{\\sum_j e^{W_j^\\top x_i + b_j}}

  Args:
    embeddings: ``[batch, dim]`` features :math:`x_i` (any float dtype; computed in float32).
    weights: ``[num_classes, dim]`` classifier weights :math:`W_j`.
    labels: ``[batch]`` integer class ids in ``[0, num_classes)``.
    bias: optional ``[num_classes]`` bias :math:`b_j`.
    where: optional ``[batch]`` bool mask; False rows (padding) give loss 0 and no gradient,
      and their labels are not validated.
    chunk_size: classes per block of the class-chunked computation (static int), ``None`` for
      the automatic choice (``_chunked.auto_chunk_size``: unchunked up to ``C = 2K``, with
      ``K = 8192`` at ``B = 512``), or ``>= num_classes`` for unchunked. Chunked, the
      ``[batch, num_classes]`` logits are never stored (see "Memory" below).

  Returns:
    ``[batch]`` float32 per-example losses.

  Raises:
    ValueError, TypeError: on bad shapes/dtypes, and (outside jit) labels outside
      ``[0, num_classes)`` or non-finite embeddings.

  Under ``jit`` (labels traced, so they cannot be checked on the host) a row whose label is
  outside ``[0, num_classes)``, negative ones included, gets loss NaN (and contributes no
  gradient), so a train loop's non-finite-loss guard stops at that step; rows with
  ``where=False`` are exempt. Wrap the loss with ``checked`` to raise instead. The same holds
  for every loss in this module and its ``*_logits`` twin (the row's logits are NaN).

  Memory: unchunked, a step holds the ``[batch, num_classes]`` scores and their softmax (at
  ``C = 10^6``, ``B = 512``: 2 GiB each, as much as ``dW``). Chunked (``_chunked.py``), the loss
  scans the classes in blocks with an online log-sum-exp and the backward recomputes each block's
  scores, so a step holds ``dW`` plus ``O(batch x chunk_size)``, for four ``B x D x C`` matmuls
  instead of three. The chunked path is reverse-mode only (``custom_vjp``); for ``jax.jvp`` pass
  ``chunk_size >= num_classes``. Chunked and unchunked agree to float32 rounding (the sums are
  taken in a different order). The same holds for every loss in this module.

  Example:
    >>> import jax.numpy as jnp
    >>> softmax_loss(jnp.ones((2, 3)), jnp.zeros((4, 3)), jnp.array([0, 3])).round(4)
    Array([1.3863, 1.3863], dtype=float32)
  """
  return _loss(softmax_head(), embeddings, weights, labels, where, bias, chunk_size)


def softmax_logits(embeddings, weights, labels, *, bias=None, where=None) -> Array:
  """Logits ``x W^T + b`` ``[batch, num_classes]`` of ``softmax_loss`` (labels only validated)."""
  return _logits(softmax_head(), embeddings, weights, labels, where, bias)


def normface_loss(embeddings, weights, labels, *, scale, where=None, chunk_size=None) -> Array:
  """NormFace: softmax over scaled cosines between normalised features and weights.

  .. math::
    \\ell_i = -\\log \\frac{e^{s \\cos\\theta_{y_i}}}{\\sum_j e^{s \\cos\\theta_j}}, \\qquad
    \\cos\\theta_j = \\frac{W_j^\\top x_i}{\\lVert W_j\\rVert \\lVert x_i\\rVert}

  Args:
    embeddings: ``[batch, dim]``. weights: ``[num_classes, dim]``. labels: ``[batch]`` int.
    scale: :math:`s > 0` (required; NormFace learns or fixes it, 16-64 are common).
    where: optional ``[batch]`` bool padding mask (False rows give 0).
    chunk_size: class block size, as in ``softmax_loss`` (None: automatic).

  Returns:
    ``[batch]`` float32 losses.

  References:
    F. Wang, X. Xiang, J. Cheng, A. L. Yuille. NormFace: L2 Hypersphere Embedding for Face
    Verification. ACM MM 2017. arXiv:1704.06369.
  """
  return _loss(normface_head(scale=scale), embeddings, weights, labels, where, None, chunk_size)


def normface_logits(embeddings, weights, labels, *, scale, where=None) -> Array:
  """Logits ``s cos θ`` ``[batch, num_classes]`` of ``normface_loss``."""
  return _logits(normface_head(scale=scale), embeddings, weights, labels, where)


def sphereface_lambda(step, *, base=1000.0, gamma=0.12, power=1.0, lambda_min=5.0) -> Array:
  """SphereFace's annealing of the A-Softmax blend weight :math:`\\lambda`.

  .. math::
    \\lambda(t) = \\max\\big(\\lambda_{min},\\; \\text{base} \\cdot (1 + \\gamma t)^{-\\text{power}}\\big)

  The step is an argument (works under jit), never hidden state. With the defaults λ(0)=1000
  and λ reaches 5 at t ≈ 1,650.

  Args:
    step: iteration counter (int or scalar array).
    base, gamma, power, lambda_min: the Caffe ``MarginInnerProduct`` parameters.

  Returns:
    scalar float32 λ.

  References:
    W. Liu, Y. Wen, Z. Yu, M. Li, B. Raj, L. Song. SphereFace: Deep Hypersphere Embedding for
    Face Recognition. CVPR 2017. arXiv:1704.08063.
    Official Caffe code wy1iu/sphereface (``margin_inner_product_layer``).
  """
  t = jnp.asarray(step, jnp.float32)
  return jnp.maximum(lambda_min, base * jnp.power(1.0 + gamma * t, -power)).astype(jnp.float32)


def a_softmax_loss(
  embeddings, weights, labels, *, margin: int = 4, lambda_=0.0, where=None, chunk_size=None
) -> Array:
  """A-Softmax (SphereFace): multiplicative angular margin with normalised weights.

  Weights are normalised, features are not. With :math:`\\cos\\theta_j = \\hat W_j^\\top \\hat x_i`:

  .. math::
    f_{y_i} = \\lVert x_i\\rVert \\frac{\\lambda \\cos\\theta_{y_i} + \\psi(\\theta_{y_i})}{1 + \\lambda},
    \\quad f_j = \\lVert x_i\\rVert \\cos\\theta_j \\; (j \\ne y_i), \\quad
    \\psi(\\theta) = (-1)^k \\cos(m\\theta) - 2k,\\; \\theta \\in [\\tfrac{k\\pi}{m}, \\tfrac{(k+1)\\pi}{m}]

  :math:`\\cos(m\\theta)` is the Chebyshev polynomial :math:`T_m(\\cos\\theta)` (exact gradient, no
  arccos); :math:`k` comes from arccos of the clamped cosine under ``stop_gradient`` (it is
  piecewise constant). With ``margin=1`` and ``lambda_=0`` this is a weight-normalised softmax
  with logits :math:`\\lVert x\\rVert\\cos\\theta_j = \\hat W_j^\\top x`.

  Args:
    embeddings: ``[batch, dim]``. weights: ``[num_classes, dim]``. labels: ``[batch]`` int.
    margin: integer :math:`m \\in [1, 10]` (static), SphereFace uses 4.
    lambda_: blend weight :math:`\\lambda \\ge 0`; pass ``sphereface_lambda(step)`` to anneal.
    where: optional ``[batch]`` bool padding mask.
    chunk_size: class block size, as in ``softmax_loss`` (None: automatic).

  Returns:
    ``[batch]`` float32 losses.

  References:
    W. Liu, Y. Wen, Z. Yu, M. Li, B. Raj, L. Song. SphereFace: Deep Hypersphere Embedding for
    Face Recognition. CVPR 2017. arXiv:1704.08063.

  Choice: ``lambda_`` defaults to 0 (the pure A-Softmax of the paper); SphereFace's training used
  the annealed λ, which the caller passes explicitly.
  """
  head = a_softmax_head(margin=margin, lambda_=lambda_)
  return _loss(head, embeddings, weights, labels, where, None, chunk_size)


def a_softmax_logits(
  embeddings, weights, labels, *, margin: int = 4, lambda_=0.0, where=None
) -> Array:
  """Margin-adjusted logits ``[batch, num_classes]`` of ``a_softmax_loss``."""
  return _logits(a_softmax_head(margin=margin, lambda_=lambda_), embeddings, weights, labels, where)


def am_softmax_loss(
  embeddings, weights, labels, *, scale=30.0, margin=0.35, where=None, chunk_size=None
) -> Array:
  """AM-Softmax / CosFace: additive cosine margin on normalised features and weights.

  .. math::
    \\ell_i = -\\log \\frac{e^{s(\\cos\\theta_{y_i} - m)}}
      {e^{s(\\cos\\theta_{y_i} - m)} + \\sum_{j\\ne y_i} e^{s\\cos\\theta_j}}

  Args:
    embeddings: ``[batch, dim]``. weights: ``[num_classes, dim]``. labels: ``[batch]`` int.
    scale: :math:`s \\in (0, 10^4]`; AM-Softmax uses 30, CosFace 64.
    margin: :math:`m \\in [0, 1]`; 0.35. With m=0 this is ``normface_loss``.
    where: optional ``[batch]`` bool padding mask.
    chunk_size: class block size, as in ``softmax_loss`` (None: automatic).

  Returns:
    ``[batch]`` float32 losses.

  References:
    F. Wang, J. Cheng, W. Liu, H. Liu. Additive Margin Softmax for Face Verification. IEEE SPL
    2018. arXiv:1801.05599. H. Wang et al. CosFace: Large Margin Cosine Loss for Deep Face
    Recognition. CVPR 2018. arXiv:1801.09414.
  """
  head = am_softmax_head(scale=scale, margin=margin)
  return _loss(head, embeddings, weights, labels, where, None, chunk_size)


def am_softmax_logits(embeddings, weights, labels, *, scale=30.0, margin=0.35, where=None) -> Array:
  """Margin-adjusted logits ``[batch, num_classes]`` of ``am_softmax_loss``."""
  return _logits(am_softmax_head(scale=scale, margin=margin), embeddings, weights, labels, where)


def arcface_loss(
  embeddings,
  weights,
  labels,
  *,
  scale=64.0,
  margin=0.5,
  easy_margin=False,
  gradient: str = "exact",
  where=None,
  chunk_size=None,
) -> Array:
  """ArcFace: additive angular margin with the monotonic fallback.

  .. math::
    \\phi(\\theta) = \\begin{cases} \\cos(\\theta + m) & \\theta + m \\le \\pi \\\\
      \\cos\\theta - m \\sin m & \\text{otherwise} \\end{cases}, \\qquad
    \\ell_i = -\\log \\frac{e^{s\\,\\phi(\\theta_{y_i})}}
      {e^{s\\,\\phi(\\theta_{y_i})} + \\sum_{j\\ne y_i} e^{s\\cos\\theta_j}}

  :math:`\\cos(\\theta+m) = \\cos\\theta\\cos m - \\sin\\theta \\sin m` with
  :math:`\\sin\\theta = \\sqrt{1 - \\cos^2\\theta}` on the clamped cosine; the value is exact and
  its derivative is floored (``SIN_GRAD_EPS``) so gradients stay finite at θ = 0 and θ = π.

  Args:
    embeddings: ``[batch, dim]``. weights: ``[num_classes, dim]``. labels: ``[batch]`` int.
    scale: :math:`s \\in (0, 10^4]`, default 64.
    margin: :math:`m \\in [0, \\pi/2)` in radians, default 0.5.
    easy_margin: apply the margin only where :math:`\\cos\\theta > 0` (else keep
      :math:`\\cos\\theta`) instead of the fallback (insightface option).
    gradient: ``"exact"`` (default; the derivative of φ, as in the original ArcFace code,
      face.evoLVe and pytorch-metric-learning) or ``"straight_through"`` (forward φ, backward
      as if the target logit were :math:`s\\cos\\theta`, as current insightface ``arcface_torch``).
    where: optional ``[batch]`` bool padding mask.
    chunk_size: class block size, as in ``softmax_loss`` (None: automatic).

  Returns:
    ``[batch]`` float32 losses.

  References:
    J. Deng, J. Guo, N. Xue, S. Zafeiriou. ArcFace: Additive Angular Margin Loss for Deep Face
    Recognition. CVPR 2019. arXiv:1801.07698.

  Choice: exact gradient by default; the fallback ``cos θ - m sin m`` (insightface legacy
  ``mm = sin(π - m)·m``) keeps the target logit monotonic in θ.
  """
  head = arcface_head(scale=scale, margin=margin, easy_margin=easy_margin, gradient=gradient)
  return _loss(head, embeddings, weights, labels, where, None, chunk_size)


def arcface_logits(
  embeddings,
  weights,
  labels,
  *,
  scale=64.0,
  margin=0.5,
  easy_margin=False,
  gradient: str = "exact",
  where=None,
) -> Array:
  """Margin-adjusted logits ``[batch, num_classes]`` of ``arcface_loss``."""
  head = arcface_head(scale=scale, margin=margin, easy_margin=easy_margin, gradient=gradient)
  return _logits(head, embeddings, weights, labels, where)


HEADS = {
  "softmax": softmax_head,
  "normface": normface_head,
  "a_softmax": a_softmax_head,
  "am_softmax": am_softmax_head,
  "arcface": arcface_head,
}


def make_head(loss: str, **hyperparameters) -> MarginHead:
  """The ``MarginHead`` of a loss by name (``HEADS`` keys), validating its hyperparameters."""
  if loss not in HEADS:
    raise ValueError(f"loss={loss!r} is unknown; expected one of {sorted(HEADS)}.")
  return HEADS[loss](**hyperparameters)


def margin_loss(
  loss: str, embeddings, weights, labels, *, bias=None, where=None, **hyperparameters
) -> Array:
  """The per-example loss of ``HEADS[loss]`` by name, e.g. ``margin_loss("arcface", x, w, y,
  scale=64.0, margin=0.5)`` equals ``arcface_loss(x, w, y, scale=64.0, margin=0.5)``.

  ``HEADS`` is the one name -> loss registry (the embedding task and the class-parallel head
  dispatch through it); ``bias`` is ``softmax``'s only.

  Raises:
    ValueError: unknown ``loss`` (lists the valid names), a ``bias`` for another loss, bad
      hyperparameters, or the validation errors of the named loss.
  """
  if bias is not None and loss != "softmax":
    raise ValueError(f"bias is an argument of loss='softmax' only; got it with loss={loss!r}.")
  return _loss(make_head(loss, **hyperparameters), embeddings, weights, labels, where, bias)
