r"""Score-aware (anisotropic) quantization: η, the loss, anisotropic k-means and product quantization.

Notation follows Guo et al. (2020). A datapoint :math:`x` is quantized to :math:`\tilde x`; the
residual :math:`r = x - \tilde x` splits into a part parallel to the *datapoint* and the rest:

.. math::
  r_\parallel = \frac{\langle r, x\rangle}{\lVert x\rVert^2}\, x, \qquad
  r_\perp = r - r_\parallel .

For a score weight :math:`w(t)` and queries :math:`q` uniform on the unit sphere, the
score-aware loss is (Theorem 3.2)

.. math::
  \ell(x, \tilde x) = \mathbb E_q\big[w(\langle q, x\rangle)\,
    \langle q, x - \tilde x\rangle^2\big]
  = h_\parallel \lVert r_\parallel\rVert^2 + h_\perp \lVert r_\perp\rVert^2 ,

and for :math:`w(t) = \mathbb 1[t \ge T]` the ratio :math:`\eta = h_\parallel / h_\perp` tends to
(Theorem 3.4; the exact finite-:math:`d` integral is :func:`anisotropic_eta` with ``exact=True``)

.. math::
  \eta = (d - 1)\, \frac{T^2 / \lVert x\rVert^2}{1 - T^2 / \lVert x\rVert^2} .

Everything here is normalised by :math:`h_\perp`, so the loss is
:math:`\eta \lVert r_\parallel\rVert^2 + \lVert r_\perp\rVert^2 = (\eta - 1)\langle r, \hat x\rangle^2
+ \lVert r\rVert^2` (:func:`anisotropic_cost`), with :math:`\eta = 1` the plain reconstruction
loss: ordinary k-means / PQ is the :math:`\eta = 1` case of the same code path. Anisotropic
k-means alternates the assignment :math:`\arg\min_j \ell(x_i, c_j)` with the closed-form centre
(:func:`anisotropic_centroids`)

.. math::
  c_j = \Big(\sum_{i \in j} I + (\eta_i - 1)\, \hat x_i \hat x_i^\top\Big)^{-1}
    \sum_{i \in j} \big(t_i + (\eta_i - 1)\, \hat x_i \langle \hat x_i, t_i\rangle\big),

and product quantization writes :math:`\tilde x = [C_1[i_1]; \dots; C_K[i_K]]`, one codeword per
block, with the codes chosen to minimise the same loss (:func:`pq_encode_anisotropic`).

Under residual quantization (a partition leaf centre :math:`c` is subtracted first) the vector
being quantized is the *target* :math:`t = x - c` while the parallel direction stays
:math:`\hat x = x / \lVert x\rVert` of the original datapoint, as in ScaNN. Functions therefore
take ``targets`` and ``directions`` separately; ``directions`` defaults to the normalised targets.

Choice: η is clamped to η ≥ 1 (Theorem 3.3 proves :math:`h_\parallel \ge h_\perp`; the
  asymptotic formula dips below 1 for small T), so T = 0 is the reconstruction loss.
Choice: like stock ScaNN, PQ codebooks are trained with the reconstruction loss by default
  (:func:`train_pq_codebooks` with η = 1); the score-aware loss enters through the encoding
  (coordinate descent over blocks, ScaNN's) and the optional codebook update.
Choice: the codebook update (:func:`pq_update_codebooks_blockwise`) sweeps exact per-block
  least-squares solves, the same fixed point as the paper's joint solve
  (:func:`pq_update_codebooks_joint`, kept for small problems).

References:
  Ruiqi Guo, Philip Sun, Erik Lindgren, Quan Geng, David Simcha, Felix Chern, Sanjiv Kumar.
  "Accelerating Large-Scale Inference with Anisotropic Vector Quantization". ICML 2020,
  arXiv:1908.10396.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from vision_jax.utils.arrays import is_concrete

_EPS = 1e-12

# Gauss-Legendre nodes/weights on [0, 1] for the exact (finite-d) η integrals.
_GL_X, _GL_W = np.polynomial.legendre.leggauss(512)
_GL_X = ((_GL_X + 1.0) / 2.0).astype(np.float64)
_GL_W = (_GL_W / 2.0).astype(np.float64)


def normalize_rows(x: jax.Array, eps: float = _EPS) -> jax.Array:
  """Returns ``x / max(‖x‖, eps)`` row-wise (float32)."""
  x = jnp.asarray(x, jnp.float32)
  n = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
  return x / jnp.maximum(n, eps)


def anisotropic_eta(threshold, sq_norm, dim, *, exact: bool = False) -> jax.Array:
  """η = h∥/h⊥ for the weight ``w(t) = 1[t ≥ T]`` (Theorem 3.4, or the exact Theorem 3.2 form).

  Asymptotic form (ScaNN's ``ComputeParallelCostMultiplier``)::

      η = (d − 1) · (T²/‖x‖²) / (1 − T²/‖x‖²)

  Exact finite-d form, θ the query–datapoint angle with density ∝ sin^{d−2}θ and
  θ_T = arccos(T/‖x‖)::

      η = (d − 1) ∫_0^{θ_T} sin^{d−2}θ cos²θ dθ / ∫_0^{θ_T} sin^d θ dθ

  evaluated with 512-node Gauss–Legendre quadrature in log space (no underflow for large d).
  Reference values: d=100, T=0.2, ‖x‖=1 → 4.125 (asymptotic), ≈5.95 (exact).

  Args:
    threshold: score threshold ``T``, scalar or broadcastable array, ``0 ≤ T < ‖x‖``.
    sq_norm: squared datapoint norm ``‖x‖²``, broadcastable with ``threshold``.
    dim: dimension ``d`` (python int or scalar).
    exact: use the exact finite-d integral instead of the asymptotic formula.

  Returns:
    float32 array of η with the broadcast shape of ``threshold`` and ``sq_norm``.

  Raises:
    ValueError: (for concrete inputs) if ``threshold`` is negative or ``T² ≥ ‖x‖²`` for some
      entry (η undefined: no query on the unit sphere can score above T), or ``dim < 2``.

  Choice: the result is clamped to η ≥ 1. Theorem 3.3 proves h∥ ≥ h⊥ for any non-decreasing
  w; the asymptotic formula dips below 1 only for small T (it gives 0 at T=0, where the exact
  value is 1), and the jvector port clamps the same way. T=0 therefore means reconstruction loss.

  References:
    Guo et al., "Accelerating Large-Scale Inference with Anisotropic Vector Quantization",
    ICML 2020, arXiv:1908.10396 (Theorems 3.2–3.4).
  """
  if is_concrete(threshold) and is_concrete(sq_norm) and is_concrete(dim):
    t = np.asarray(threshold, np.float64)
    s = np.asarray(sq_norm, np.float64)
    if np.any(~np.isfinite(t)) or np.any(t < 0):
      raise ValueError(f"threshold must be finite and >= 0, got {threshold!r}")
    if np.any(np.square(t) >= s):
      raise ValueError(
        f"threshold={float(np.max(t))} must be below every datapoint norm (min sqrt(sq_norm)="
        f"{float(np.sqrt(np.min(s))):.6g}); eta is undefined when T >= ||x||. Lower the threshold "
        "or rescale/drop tiny-norm points."
      )
    if int(np.asarray(dim)) < 2:
      raise ValueError(f"dim must be >= 2, got {dim!r}")
  t = jnp.asarray(threshold, jnp.float32)
  s = jnp.asarray(sq_norm, jnp.float32)
  d = jnp.asarray(dim, jnp.float32)
  ratio = jnp.square(t) / s
  if not exact:
    eta = (d - 1.0) * ratio / (1.0 - ratio)
    return jnp.maximum(eta, 1.0)
  cos_t = jnp.clip(jnp.sqrt(ratio), 0.0, 1.0)
  theta_t = jnp.arccos(cos_t)
  lead = (1,) * theta_t.ndim
  theta = theta_t[..., None] * jnp.asarray(_GL_X, jnp.float32).reshape(lead + (-1,))
  w = jnp.asarray(_GL_W, jnp.float32).reshape(lead + (-1,))
  log_sin = jnp.log(jnp.maximum(jnp.sin(theta), 1e-30))
  log_base = (d - 2.0) * log_sin
  log_base = log_base - jnp.max(log_base, axis=-1, keepdims=True)
  base = jnp.exp(log_base)
  num = (d - 1.0) * jnp.sum(w * base * jnp.square(jnp.cos(theta)), axis=-1)
  den = jnp.sum(w * base * jnp.square(jnp.sin(theta)), axis=-1)
  return jnp.maximum(num / den, 1.0)


def _eta_per_point(
  directions_source: jax.Array, threshold, eta, *, exact: bool = False
) -> jax.Array:
  """Per-point η from (threshold or eta); η=1 when both are None."""
  n, d = directions_source.shape
  if threshold is not None and eta is not None:
    raise ValueError(f"give threshold or eta, not both (threshold={threshold!r}, eta={eta!r})")
  if threshold is None and eta is None:
    return jnp.ones((n,), jnp.float32)
  if eta is not None:
    e = jnp.broadcast_to(jnp.asarray(eta, jnp.float32), (n,))
    return e
  if is_concrete(threshold) and float(np.asarray(threshold)) == 0.0:
    return jnp.ones((n,), jnp.float32)
  sq = jnp.sum(jnp.square(jnp.asarray(directions_source, jnp.float32)), axis=-1)
  return anisotropic_eta(threshold, sq, d, exact=exact)


def anisotropic_cost(residual: jax.Array, directions: jax.Array, eta) -> jax.Array:
  """Per-point ``η⟨r, x̂⟩² + (‖r‖² − ⟨r, x̂⟩²)`` for residuals ``[n, d]`` and unit directions."""
  p = jnp.sum(residual * directions, axis=-1)
  return (jnp.asarray(eta, jnp.float32) - 1.0) * jnp.square(p) + jnp.sum(jnp.square(residual), -1)


def score_aware_loss(
  x: jax.Array,
  x_quantized: jax.Array,
  *,
  threshold=None,
  eta=None,
  exact: bool = False,
) -> jax.Array:
  """Per-point score-aware quantization loss ``h∥‖r∥‖² + h⊥‖r⊥‖²`` normalised by ``h⊥``.

  .. math::
     \\ell(x, \\tilde x) = \\eta\\,\\|r_\\parallel\\|^2 + \\|r_\\perp\\|^2,\\qquad
     r = x - \\tilde x,\\; r_\\parallel = \\frac{\\langle r, x\\rangle}{\\|x\\|^2} x

  Args:
    x: datapoints ``[n, d]``.
    x_quantized: their quantizations ``[n, d]``.
    threshold: score threshold T; η per point from ``‖x‖`` via :func:`anisotropic_eta`.
    eta: a fixed η (scalar or ``[n]``) instead of ``threshold``. Neither → η=1 (‖r‖²).
    exact: use the exact finite-d η.

  Returns:
    ``[n]`` float32 losses.

  Raises:
    ValueError: shape mismatch, both threshold and eta given, or threshold ≥ some ‖x‖.

  References:
    Guo et al., ICML 2020, arXiv:1908.10396, Theorem 3.2.
  """
  x = jnp.asarray(x, jnp.float32)
  xq = jnp.asarray(x_quantized, jnp.float32)
  if x.ndim != 2 or x.shape != xq.shape:
    raise ValueError(f"x and x_quantized must both be [n, d]; got {x.shape} and {xq.shape}")
  e = _eta_per_point(x, threshold, eta, exact=exact)
  return anisotropic_cost(x - xq, normalize_rows(x), e)


# ----------------------------------------------------------------------------------------------
# Anisotropic k-means (one code path; η = 1 is Lloyd's k-means).


def _pad_rows(a: jax.Array, multiple: int):
  n = a.shape[0]
  pad = (-n) % multiple
  if pad:
    a = jnp.concatenate([a, jnp.zeros((pad,) + a.shape[1:], a.dtype)], axis=0)
  return a


def anisotropic_assign(
  targets: jax.Array,
  directions: jax.Array,
  eta: jax.Array,
  centers: jax.Array,
  *,
  isotropic: bool = False,
) -> tuple[jax.Array, jax.Array]:
  """Assigns each target to ``argmin_c η⟨t−c, x̂⟩² + ‖t−c‖² − ⟨t−c, x̂⟩²``.

  Args:
    targets: ``[n, d]``; directions: unit ``[n, d]``; eta: ``[n]``; centers: ``[k, d]``.
    isotropic: static shortcut for η ≡ 1 (skips the parallel term).

  Returns:
    ``(assignments [n] int32, costs [n] float32)``.
  """
  tc = targets @ centers.T
  dist = (
    jnp.sum(jnp.square(targets), -1)[:, None] - 2.0 * tc + jnp.sum(jnp.square(centers), -1)[None, :]
  )
  if isotropic:
    cost = dist
  else:
    p = jnp.sum(targets * directions, -1)[:, None] - directions @ centers.T
    cost = (eta[:, None] - 1.0) * jnp.square(p) + dist
  a = jnp.argmin(cost, axis=-1).astype(jnp.int32)
  return a, jnp.take_along_axis(cost, a[:, None], axis=1)[:, 0]


def anisotropic_centroids(
  targets: jax.Array,
  directions: jax.Array,
  eta: jax.Array,
  assignments: jax.Array,
  old_centers: jax.Array,
  *,
  isotropic: bool = False,
) -> jax.Array:
  """Closed-form weighted least-squares centroid update.

  For cluster j (h⊥ = 1, h∥ = η_i)::

      c_j = (Σ_i [I + (η_i − 1) x̂_i x̂_iᵀ])⁻¹ Σ_i [t_i + (η_i − 1) x̂_i ⟨x̂_i, t_i⟩]

  which is ``(Σ[h⊥I + (h∥−h⊥)x̂x̂ᵀ])⁻¹ Σ h∥ x`` when ``t = x`` and the plain mean when η = 1.
  Empty clusters keep their old centre.

  Args:
    targets: ``[n, d]``; directions: unit ``[n, d]``; eta: ``[n]``; assignments: ``[n]`` int;
    old_centers: ``[k, d]``.
    isotropic: static shortcut for η ≡ 1 (the mean; no d×d systems).

  Returns:
    ``[k, d]`` float32 centres.

  Choice: the per-cluster ``Σ w x̂x̂ᵀ`` is a one-hot matmul when ``k·d²`` is small (PQ blocks)
  and a chunked segment-sum otherwise (partition leaves), both O(n·d²)-ish on CPU.
  """
  k, d = old_centers.shape
  n = targets.shape[0]
  onehot = jax.nn.one_hot(assignments, k, dtype=jnp.float32)  # [n, k]
  counts = jnp.sum(onehot, 0)
  empty = (counts == 0).astype(jnp.float32)
  if isotropic:
    sums = onehot.T @ targets
    return (sums + empty[:, None] * old_centers) / (counts + empty)[:, None]
  wt = eta - 1.0
  b = onehot.T @ (targets + (wt * jnp.sum(directions * targets, -1))[:, None] * directions)
  if k * d * d <= (1 << 16):
    outer = (directions[:, :, None] * directions[:, None, :]).reshape(n, d * d)
    a_mat = ((onehot * wt[:, None]).T @ outer).reshape(k, d, d)
  else:
    chunk = int(max(1, min(n, (1 << 22) // max(1, d * d))))
    xs = _pad_rows(directions, chunk).reshape(-1, chunk, d)
    ws = _pad_rows(wt, chunk).reshape(-1, chunk)
    as_ = _pad_rows(assignments, chunk).reshape(-1, chunk)

    def body(acc, inp):
      xc, wc, ac = inp
      outer = (wc[:, None, None] * xc[:, :, None]) * xc[:, None, :]
      return acc + jax.ops.segment_sum(outer, ac, k), None

    a_mat, _ = lax.scan(body, jnp.zeros((k, d, d), jnp.float32), (xs, ws, as_))
  eye = jnp.eye(d, dtype=jnp.float32)
  a_mat = a_mat + (counts + empty)[:, None, None] * eye[None]
  b = b + empty[:, None] * old_centers
  return jnp.linalg.solve(a_mat, b[..., None])[..., 0]


@functools.partial(jax.jit, static_argnames=("num_centers", "iterations", "isotropic"))
def _kmeans(targets, directions, eta, init, key, *, num_centers, iterations, isotropic):
  n = targets.shape[0]
  if init is None:
    idx = jax.random.choice(key, n, (num_centers,), replace=False)
    init = targets[idx]

  def step(c, _):
    a, _ = anisotropic_assign(targets, directions, eta, c, isotropic=isotropic)
    return anisotropic_centroids(targets, directions, eta, a, c, isotropic=isotropic), None

  centers, _ = lax.scan(step, init, None, length=iterations)
  a, _ = anisotropic_assign(targets, directions, eta, centers, isotropic=isotropic)
  return centers, a


def anisotropic_kmeans(
  targets: jax.Array,
  *,
  num_centers: int,
  key: jax.Array,
  eta: jax.Array | float = 1.0,
  directions: jax.Array | None = None,
  iterations: int = 10,
  init: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Anisotropic vector quantization by Lloyd iterations (paper §4.1).

  Assignment by the anisotropic cost (:func:`anisotropic_assign`), update by the closed-form
  weighted least squares (:func:`anisotropic_centroids`). With η = 1 this is Lloyd's k-means
  (a python ``eta=1.0`` takes a static shortcut; an array of ones gives the same result).

  Args:
    targets: ``[n, d]`` vectors to cluster (``n ≥ num_centers``).
    num_centers: k.
    key: PRNG key for the initialisation (k distinct random points).
    eta: scalar or ``[n]`` η ≥ 1.
    directions: unit parallel directions ``[n, d]``; default normalised targets.
    iterations: Lloyd iterations.
    init: optional ``[k, d]`` initial centres.

  Returns:
    ``(centers [k, d], assignments [n])`` — assignments are those of the returned centres.

  References:
    Guo et al., ICML 2020, arXiv:1908.10396, §4.1; ScaNN ``GmmUtils::
    RecomputeCentroidsWithParallelCostMultiplier``.
  """
  targets = jnp.asarray(targets, jnp.float32)
  n = targets.shape[0]
  if num_centers > n:
    raise ValueError(f"num_centers={num_centers} exceeds the number of points n={n}")
  isotropic = isinstance(eta, int | float) and float(eta) == 1.0
  if directions is None:
    directions = targets if isotropic else normalize_rows(targets)
  eta = jnp.broadcast_to(jnp.asarray(eta, jnp.float32), (n,))
  return _kmeans(
    targets,
    directions,
    eta,
    init,
    key,
    num_centers=num_centers,
    iterations=iterations,
    isotropic=isotropic,
  )


# ----------------------------------------------------------------------------------------------
# Product quantization.


def split_blocks(x: jax.Array, num_blocks: int) -> jax.Array:
  """``[n, d] → [n, K, d/K]``.

  Raises:
    ValueError: ``x`` not 2-D, or ``num_blocks`` not a positive divisor of ``d`` (shapes are
      static, so this also holds under ``jit``).
  """
  shape = jnp.shape(x)
  if len(shape) != 2:
    raise ValueError(f"split_blocks: x must be [n, d], got shape {shape}")
  n, d = shape
  if isinstance(num_blocks, bool) or not isinstance(num_blocks, int | np.integer):
    raise ValueError(f"split_blocks: num_blocks={num_blocks!r} must be an int")
  if num_blocks < 1 or d % num_blocks:
    divisors = [k for k in range(1, d + 1) if d % k == 0]
    raise ValueError(
      f"split_blocks: num_blocks={num_blocks} does not divide the dimension d={d}; "
      f"choose one of {divisors} (dims per block = d / num_blocks)"
    )
  return jnp.reshape(x, (n, num_blocks, d // num_blocks))


def check_codebooks(fn: str, targets, codebooks, name: str = "targets") -> None:
  """Static shape checks of ``targets [n, d]`` against ``codebooks [K, C, d/K]``."""
  cb, t = jnp.shape(codebooks), jnp.shape(targets)
  if len(cb) != 3:
    raise ValueError(f"{fn}: codebooks must be [K, C, d/K], got shape {cb}")
  if len(t) != 2 or t[1] != cb[0] * cb[2]:
    raise ValueError(
      f"{fn}: {name} has shape {t} but codebooks {cb} encode d = K * d/K = {cb[0] * cb[2]}; "
      f"{name} must be [n, {cb[0] * cb[2]}]"
    )


def train_pq_codebooks(
  targets: jax.Array,
  *,
  num_blocks: int,
  num_centers: int,
  key: jax.Array,
  iterations: int = 10,
  eta: jax.Array | float = 1.0,
  directions: jax.Array | None = None,
) -> jax.Array:
  """Per-block codebooks by k-means on each block (ScaNN's default AH training).

  Args:
    targets: ``[n, d]``; ``d`` divisible by ``num_blocks``.
    num_blocks: K; num_centers: C (16 → LUT16 / 4-bit codes, 256 → 8-bit, 2 → binary).
    key: PRNG key; iterations: Lloyd iterations per block.
    eta / directions: optional per-block anisotropic k-means (η for norm 1, ScaNN's
      ``use_noise_shaped_training``); directions are the normalised *blocks*.

  Returns:
    ``[K, C, d/K]`` float32 codebooks.

  Choice: like stock ScaNN, the default (η = 1) trains codebooks with the reconstruction loss;
  the score-aware loss then enters through encoding and the optional codebook update.
  """
  blocks = jnp.transpose(split_blocks(jnp.asarray(targets, jnp.float32), num_blocks), (1, 0, 2))
  if directions is None:
    dirs = normalize_rows(blocks.reshape(-1, blocks.shape[-1])).reshape(blocks.shape)
  else:
    dirs = jnp.transpose(split_blocks(directions, num_blocks), (1, 0, 2))
  keys = jax.random.split(key, num_blocks)
  n = blocks.shape[1]
  isotropic = isinstance(eta, int | float) and float(eta) == 1.0
  eta = jnp.broadcast_to(jnp.asarray(eta, jnp.float32), (n,))
  return _train_blocks(
    blocks, dirs, keys, eta, num_centers=num_centers, iterations=iterations, isotropic=isotropic
  )


@functools.partial(jax.jit, static_argnames=("num_centers", "iterations", "isotropic"))
def _train_blocks(blocks, dirs, keys, eta, *, num_centers, iterations, isotropic):
  fn = lambda b, dr, k: _kmeans.__wrapped__(
    b, dr, eta, None, k, num_centers=num_centers, iterations=iterations, isotropic=isotropic
  )[0]
  return jax.vmap(fn)(blocks, dirs, keys)


@jax.jit
def pq_decode(codes: jax.Array, codebooks: jax.Array) -> jax.Array:
  """Decodes ``[n, K]`` codes with ``[K, C, dk]`` codebooks to ``[n, K·dk]``."""
  k_idx = jnp.arange(codebooks.shape[0])[None, :]
  blocks = codebooks[k_idx, codes.astype(jnp.int32)]
  return blocks.reshape(codes.shape[0], -1)


@jax.jit
def pq_residual_stats(
  targets: jax.Array, directions: jax.Array, codebooks: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """Per-block, per-centre squared residual norms ``R`` and parallel components ``P``.

  ``R[i,k,c] = ‖t_ik − c_kc‖²`` and ``P[i,k,c] = ⟨t_ik − c_kc, x̂_ik⟩`` where ``x̂`` is the
  unit direction of the *original* datapoint (ScaNN's ``ComputeResidualStatsForCluster``).

  Returns:
    ``(R, P)`` each ``[n, K, C]``.
  """
  nb = codebooks.shape[0]
  t = split_blocks(targets, nb)
  u = split_blocks(directions, nb)
  tc = jnp.einsum("nkd,kcd->nkc", t, codebooks)
  r = jnp.sum(jnp.square(t), -1)[..., None] - 2.0 * tc + jnp.sum(jnp.square(codebooks), -1)[None]
  p = jnp.sum(t * u, -1)[..., None] - jnp.einsum("nkd,kcd->nkc", u, codebooks)
  return jnp.maximum(r, 0.0), p


def pq_encode_nearest(targets: jax.Array, codebooks: jax.Array) -> jax.Array:
  """Isotropic PQ encoding: nearest centre per block. Returns ``[n, K]`` int32.

  Raises:
    ValueError: ``targets`` not ``[n, K * d/K]`` for ``codebooks [K, C, d/K]``.
  """
  check_codebooks("pq_encode_nearest", targets, codebooks)
  return _encode_nearest(targets, codebooks)


@jax.jit
def _encode_nearest(targets: jax.Array, codebooks: jax.Array) -> jax.Array:
  nb = codebooks.shape[0]
  t = split_blocks(targets, nb)
  tc = jnp.einsum("nkd,kcd->nkc", t, codebooks)
  r = -2.0 * tc + jnp.sum(jnp.square(codebooks), -1)[None]
  return jnp.argmin(r, axis=-1).astype(jnp.int32)


def _encode_one(r: jax.Array, p: jax.Array, eta: jax.Array, max_rounds: int) -> jax.Array:
  """Coordinate descent for one datapoint (ScaNN ``IndexDatapointNoiseShaped``)."""
  nb, nc = r.shape
  codes = jnp.argmin(r, axis=-1).astype(jnp.int32)
  blocks = jnp.arange(nb)
  par = jnp.sum(p[blocks, codes])
  order = jnp.argsort(-r[blocks, codes], stable=True).astype(jnp.int32)
  cand = jnp.arange(nc, dtype=jnp.int32)

  def block_step(i, carry):
    codes, par, changed = carry
    k = order[i]
    cur = codes[k]
    new_par = par - p[k, cur] + p[k]
    par_delta = jnp.square(new_par) - jnp.square(par)
    res_delta = r[k] - r[k, cur]
    cost_delta = eta * par_delta + (res_delta - par_delta)
    valid = (par_delta <= 0.0) & (cand != cur)
    cost_delta = jnp.where(valid, cost_delta, jnp.inf)
    best = jnp.argmin(cost_delta).astype(jnp.int32)
    take = cost_delta[best] < 0.0
    codes = codes.at[k].set(jnp.where(take, best, cur))
    par = jnp.where(take, new_par[best], par)
    return codes, par, changed | take

  def round_cond(carry):
    _, _, changed, rnd = carry
    return changed & (rnd < max_rounds)

  def round_body(carry):
    codes, par, _, rnd = carry
    codes, par, changed = lax.fori_loop(0, nb, block_step, (codes, par, jnp.bool_(False)))
    return codes, par, changed, rnd + 1

  codes, _, _, _ = lax.while_loop(round_cond, round_body, (codes, par, jnp.bool_(True), 0))
  return codes


@functools.partial(jax.jit, static_argnames=("max_rounds",))
def pq_encode_anisotropic(
  targets: jax.Array,
  directions: jax.Array,
  codebooks: jax.Array,
  eta: jax.Array,
  *,
  max_rounds: int = 10,
) -> jax.Array:
  """Anisotropic PQ encoding by coordinate descent over blocks, as ScaNN does.

  Cost of a code assignment, with ``p = Σ_k P[k, code_k]`` and ``R = Σ_k R[k, code_k]``
  (:func:`pq_residual_stats`)::

      cost = η p² + (R − p²)

  Start from the nearest centre in every block; visit blocks in decreasing order of their
  residual norm; for each block take the candidate centre with the most negative cost change
  among those that do not increase ``p²``; up to ``max_rounds`` rounds, stopping early when a
  round changes nothing. Every accepted move lowers the cost, so the result never costs more
  than the nearest-centre codes.

  Args:
    targets: ``[n, d]`` vectors to encode (residuals under a partition tree).
    directions: ``[n, d]`` unit directions of the original datapoints.
    codebooks: ``[K, C, d/K]``.
    eta: ``[n]`` (or scalar) η.
    max_rounds: coordinate-descent rounds (ScaNN: 10).

  Returns:
    ``[n, K]`` int32 codes.

  References:
    Guo et al., ICML 2020, §4.2; ScaNN ``AhImpl::IndexDatapointNoiseShaped``.
  """
  check_codebooks("pq_encode_anisotropic", targets, codebooks)
  check_codebooks("pq_encode_anisotropic", directions, codebooks, "directions")
  n = targets.shape[0]
  eta = jnp.broadcast_to(jnp.asarray(eta, jnp.float32), (n,))
  r, p = pq_residual_stats(targets, directions, codebooks)
  return jax.vmap(functools.partial(_encode_one, max_rounds=max_rounds))(r, p, eta)


@jax.jit
def pq_update_codebooks_blockwise(
  targets: jax.Array,
  directions: jax.Array,
  codes: jax.Array,
  codebooks: jax.Array,
  eta: jax.Array,
) -> jax.Array:
  """One Gauss–Seidel sweep of exact per-block least-squares codebook updates.

  Holding every other block fixed, the total anisotropic loss is quadratic in the codewords of
  block k, and each codeword ``c`` separates::

      (Σ_{i: code_ik=c} [I + (η_i−1) x̂_ik x̂_ikᵀ]) c = Σ_i [t_ik + (η_i−1) x̂_ik (⟨x̂_ik, t_ik⟩ + s_i)]

  with ``s_i = Σ_{l≠k} ⟨x̂_il, t_il − c_l⟩`` the parallel residual of the other blocks. Sweeping
  blocks is block-coordinate descent on the same objective as the paper's joint update
  (:func:`pq_update_codebooks_joint`), so it never increases the loss and converges to the joint
  solution; it costs O(n·d·dk) instead of a (C·d)² dense solve.

  Args:
    targets, directions: ``[n, d]``; codes: ``[n, K]``; codebooks: ``[K, C, dk]``; eta: ``[n]``.

  Returns:
    updated ``[K, C, dk]`` codebooks.

  Choice: the paper's appendix describes a joint least-squares update of all codebooks; we sweep
  exact block updates (same fixed point) because the joint system is 16·d wide. The joint solve
  is available for small problems.
  """
  nb, nc, dk = codebooks.shape
  n = targets.shape[0]
  eta = jnp.broadcast_to(jnp.asarray(eta, jnp.float32), (n,))
  t = split_blocks(targets, nb)
  u = split_blocks(directions, nb)
  codes = codes.astype(jnp.int32)
  wt = eta - 1.0
  resid = t - codebooks[jnp.arange(nb)[None, :], codes]
  par_blocks = jnp.sum(resid * u, -1)  # [n, K]
  par = jnp.sum(par_blocks, -1)
  eye = jnp.eye(dk, dtype=jnp.float32)

  def body(carry, k):
    cbs, par = carry
    tk, uk, ck = t[:, k], u[:, k], codes[:, k]
    old = cbs[k]
    s = par - jnp.sum((tk - old[ck]) * uk, -1)
    rhs = tk + (wt * (jnp.sum(uk * tk, -1) + s))[:, None] * uk
    b = jax.ops.segment_sum(rhs, ck, nc)
    outer = (wt[:, None, None] * uk[:, :, None]) * uk[:, None, :]
    a = jax.ops.segment_sum(outer, ck, nc)
    cnt = jax.ops.segment_sum(jnp.ones((n,), jnp.float32), ck, nc)
    empty = (cnt == 0).astype(jnp.float32)
    a = a + (cnt + empty)[:, None, None] * eye[None]
    b = b + empty[:, None] * old
    new = jnp.linalg.solve(a, b[..., None])[..., 0]
    par = s + jnp.sum((tk - new[ck]) * uk, -1)
    return (cbs.at[k].set(new), par), None

  (cbs, _), _ = lax.scan(body, (codebooks, par), jnp.arange(nb))
  return cbs


@jax.jit
def pq_update_codebooks_joint(
  targets: jax.Array,
  directions: jax.Array,
  codes: jax.Array,
  codebooks: jax.Array,
  eta: jax.Array,
) -> jax.Array:
  """Joint least-squares update of all codebooks (paper §4.2), exact dense solve.

  Stack all ``K·C`` codewords into ``c ∈ R^{C·d}``; ``B_i`` selects x_i's codewords::

      c = (Σ_i B_iᵀ(I + (η_i−1) x̂_i x̂_iᵀ) B_i)⁻¹ Σ_i B_iᵀ(t_i + (η_i−1) x̂_i ⟨x̂_i, t_i⟩)

  Memory is ``n × C·d`` plus ``(C·d)²``; use for small problems (tests) or a sample.
  Unused codewords keep their old value.

  Returns:
    ``[K, C, dk]`` codebooks.
  """
  nb, nc, dk = codebooks.shape
  n = targets.shape[0]
  m = nb * nc * dk
  eta = jnp.broadcast_to(jnp.asarray(eta, jnp.float32), (n,))
  wt = eta - 1.0
  u = split_blocks(directions, nb)
  t = split_blocks(targets, nb)
  onehot = jax.nn.one_hot(codes, nc, dtype=jnp.float32)  # [n, K, C]
  big_u = (onehot[..., None] * u[:, :, None, :]).reshape(n, m)
  big_t = (onehot[..., None] * t[:, :, None, :]).reshape(n, m)
  cnt = jnp.repeat(jnp.sum(onehot, 0).reshape(-1), dk)  # [m]
  empty = (cnt == 0).astype(jnp.float32)
  a = (big_u * wt[:, None]).T @ big_u + jnp.diag(cnt + empty)
  b = (
    jnp.sum(big_t, 0)
    + big_u.T @ (wt * jnp.sum(directions * targets, -1))
    + empty * codebooks.reshape(-1)
  )
  return jnp.linalg.solve(a, b).reshape(nb, nc, dk)


def pq_loss(
  targets: jax.Array, directions: jax.Array, codes: jax.Array, codebooks: jax.Array, eta
) -> jax.Array:
  """Per-point anisotropic loss of the PQ reconstruction (``[n]``)."""
  return anisotropic_cost(targets - pq_decode(codes, codebooks), directions, eta)
