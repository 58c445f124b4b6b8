r"""Deep hashing losses: DPSH, CSQ and Deep Momentum Uncertainty Hashing (DMUH).

All losses are pure functions of arrays returning **per-example** values ``[B]`` (average them
yourself), with keyword-only hyperparameters and float32 inside. Hash outputs ``h`` are the
relaxed codes in ``(-1, 1)`` (``tanh`` of the hash layer, see
:class:`vision_jax.hashing.HashNetwork`); binary codes are :math:`b = \mathrm{sign}(h)`.

DMUH trains the hashing network :math:`\theta` against a momentum network :math:`\tilde\theta`
(the same module with EMA weights, :func:`vision_jax.train.ema_update`, run in inference mode)
and weights every bit and image by how much the two disagree:

.. math::
  \tilde\theta \leftarrow m\,\tilde\theta + (1 - m)\,\theta, \qquad
  u_{ik} = |h_{ik} - \tilde h_{ik}|, \qquad U_i = \frac1L \sum_k u_{ik}, \qquad
  a_{ik} = 1 + \beta\, u_{ik}, \qquad b_i = 1 + \gamma\, U_i,

.. math::
  \ell_i = b_i \,\frac1L \sum_k a_{ik} \Big[\mathrm{BCE}\big(\tfrac{h_{ik}+1}{2},
    \tfrac{c_{ik}+1}{2}\big) + \lambda (|h_{ik}| - 1)^2\Big]

with :math:`c_i` the CSQ hash centre of image :math:`i`'s label(s) and :math:`a, b` constants
(stop-gradient). The baselines are the :math:`u = 0` cases: CSQ (:func:`csq_loss`, the bracket
averaged over bits) and DPSH (:func:`dpsh_loss`, with :math:`\Theta_{ij} = \frac12 h_i^\top h_j`):

.. math::
  \ell^{\mathrm{DPSH}}_i = \frac{1}{|\mathcal P_i|} \sum_{j \in \mathcal P_i}
    \big(\log(1 + e^{\Theta_{ij}}) - s_{ij} \Theta_{ij}\big)
    + \frac{\eta}{L} \sum_k (h_{ik} - \mathrm{sign}\, h_{ik})^2 .

Choice: only the paper's abstract is public, so the DMUH equations are our reading of it:
  the discrepancy is taken after ``tanh`` (``discrepancy="squared"`` also offered); the weights
  are linear in the uncertainty (``bit_weight`` = β, ``image_weight`` = γ, both 1 by default).
Choice: the image weight scales the whole per-image loss; bit weights scale every per-bit term
  (for the pairwise base, ``base="pairwise"``, only the quantisation term, since the pairwise
  likelihood has no per-bit split).
Choice: the default base is the CSQ centre loss (λ = 1e-4); the DPSH likelihood (η = 0.1) is the
  alternative.
Choice: the momentum network runs in inference mode, its BatchNorm statistics blended by the same
  EMA as its weights (``experiments/dmuh/task.py``).

Labels are int class ids ``[B]`` or multi-hot ``[B, C]``; two images are similar
(:math:`s_{ij} = 1`) when they share at least one label.

Bad input: shapes and hyperparameter ranges are checked always; values (non-finite codes, codes
outside ``[-1, 1]`` for the centre losses, class ids outside ``[0, C)``) eagerly, raising
``ValueError`` naming the argument and the first bad row. Under ``jit`` (no host sync) those
rows come out NaN instead — :func:`label_centers` gives a NaN centre for an out-of-range id and
:func:`csq_loss` / :func:`dmuh_loss` a NaN loss for a row with ``|h| > 1`` — so the train
loop's non-finite guard stops; rows masked by ``where`` are exempt.

References:
  Fu, Wang, Wu, Zhang, He. "Deep Momentum Uncertainty Hashing." Pattern Recognition 2022,
  arXiv:2009.08012.
  Li, Wang, Kang. "Feature Learning based Deep Supervised Hashing with Pairwise Labels."
  IJCAI 2016 (DPSH).
  Yuan, Wang, Wang, Bai, Fu, Yang, Feng. "Central Similarity Quantization for Efficient Image
  and Video Retrieval." CVPR 2020 (CSQ).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from vision_jax.losses._validate import (
  check_finite_rows,
  check_label_range,
  check_scalar,
  poison_bad_labels,
  safe_labels,
)
from vision_jax.utils.arrays import is_concrete

_LOG_CLAMP = -100.0  # PyTorch BCELoss clamps log terms at -100; keeps saturated tanh finite.


# ----------------------------------------------------------------------------- similarity


def pairwise_similarity(
  labels_a: jax.typing.ArrayLike, labels_b: jax.typing.ArrayLike
) -> jax.Array:
  r"""Label similarity :math:`s_{ij} = [\text{a}_i \text{ and } \text{b}_j \text{ share a label}]`.

  Args:
    labels_a: int ids ``[A]`` or multi-hot ``[A, C]``.
    labels_b: same kind, ``[B]`` or ``[B, C]``.

  Returns:
    float32 ``[A, B]`` in {0, 1}.

  Raises:
    ValueError: the two label arrays are of different kinds or class counts.
  """
  a, b = jnp.asarray(labels_a), jnp.asarray(labels_b)
  if a.ndim != b.ndim or a.ndim not in (1, 2) or (a.ndim == 2 and a.shape[1] != b.shape[1]):
    raise ValueError(
      f"labels must both be int ids [n] or both multi-hot [n, C]; got {a.shape} and {b.shape}."
    )
  if a.ndim == 1:
    return (a[:, None] == b[None, :]).astype(jnp.float32)
  return ((a.astype(jnp.float32) @ b.astype(jnp.float32).T) > 0).astype(jnp.float32)


# ----------------------------------------------------------------------------- DPSH


def _check_codes(h, name="h", *, where=None) -> jax.Array:
  """``h [B, L]`` as float32; eagerly rejects non-finite rows (not those masked by ``where``)."""
  h_arr = jnp.asarray(h)
  if h_arr.ndim != 2:
    raise ValueError(f"{name} must be [batch, bits], got shape {h_arr.shape}.")
  if where is not None and jnp.shape(where) != h_arr.shape[:1]:
    raise ValueError(f"where must have shape [batch]={h_arr.shape[:1]}, got {jnp.shape(where)}.")
  check_finite_rows(name, h, where=where, fix="Check the hash layer output / learning rate.")
  return h_arr.astype(jnp.float32)


def _check_labels(labels, batch: int, name: str = "labels", codes: str = "h") -> None:
  shape = jnp.shape(labels)
  if len(shape) not in (1, 2) or shape[0] != batch:
    raise ValueError(
      f"{name} must be int ids [{batch}] or multi-hot [{batch}, C] (one per row of {codes}); "
      f"got shape {shape}."
    )


def _outside_unit(h: jax.Array) -> jax.Array:
  """``[B]`` bool: some code of the row lies outside ``[-1, 1]`` (the relaxed-code range)."""
  return jnp.any(jnp.abs(h) > 1.0, axis=1)


def _check_unit_range(name: str, h, where=None) -> None:
  """Eager: relaxed codes of the centre losses must lie in [-1, 1] (``tanh`` outputs)."""
  if not is_concrete(h) or (where is not None and not is_concrete(where)):
    return
  with jax.ensure_compile_time_eval():
    bad = np.asarray(_outside_unit(jnp.asarray(h, jnp.float32)))
  if where is not None:
    bad = bad & np.asarray(where).astype(bool)
  if bad.any():
    i = int(np.flatnonzero(bad)[0])
    row = np.asarray(h)[i]
    j = int(np.flatnonzero(np.abs(row) > 1)[0])
    raise ValueError(
      f"{name} must hold relaxed codes in [-1, 1] (tanh of the hash layer); found "
      f"{name}[{i}, {j}]={float(row[j])!r} ({int(bad.sum())} bad rows). Apply tanh first."
    )


def dpsh_loss(
  h: jax.typing.ArrayLike,
  labels: jax.typing.ArrayLike,
  *,
  bank_h: jax.typing.ArrayLike | None = None,
  bank_labels: jax.typing.ArrayLike | None = None,
  quantization_weight: float = 0.1,
  where: jax.typing.ArrayLike | None = None,
) -> jax.Array:
  r"""DPSH pairwise-likelihood loss with quantisation, per example.

  .. math::
     \Theta_{ij} = \tfrac12 h_i^\top h_j, \qquad
     \ell_i = \frac{1}{|\mathcal{P}_i|} \sum_{j \in \mathcal{P}_i}
       \big(\log(1 + e^{\Theta_{ij}}) - s_{ij}\Theta_{ij}\big)
       + \frac{\eta}{L} \lVert h_i - \mathrm{sign}(h_i) \rVert^2

  The partners :math:`\mathcal{P}_i` are the other valid examples of the batch (``j != i``), or,
  when ``bank_h`` is given, every row of the memory bank (DeepHash-pytorch keeps a bank ``U`` of
  all training outputs, updated with the current batch before the loss; see
  :func:`update_memory_bank`).

  Choice: the likelihood is averaged over partners and the quantisation over bits (the
  DeepHash-pytorch ``mean`` reductions, η = 0.1); within a batch, self-pairs are excluded.

  Args:
    h: relaxed codes ``[B, L]``.
    labels: int ids ``[B]`` or multi-hot ``[B, C]``.
    bank_h: optional memory bank ``[M, L]`` (treated as constant: gradients flow through ``h``
      only).
    bank_labels: labels of the bank rows, ``[M]`` or ``[M, C]``; required with ``bank_h``.
    quantization_weight: η.
    where: optional bool ``[B]``; False rows (padding) give 0 and are not partners.

  Returns:
    float32 ``[B]``.

  Raises:
    ValueError: bad shapes (``labels`` / ``bank_labels`` of another batch size than ``h`` /
      ``bank_h``), ``bank_h`` without ``bank_labels``, ``quantization_weight < 0``, and (eager
      inputs) NaN/Inf in ``h`` or ``bank_h``; under ``jit`` such rows give NaN.

  References:
    Li, Wang, Kang. "Feature Learning based Deep Supervised Hashing with Pairwise Labels."
    IJCAI 2016, arXiv:1511.03855.
  """
  h = _check_codes(h, where=where)
  _check_labels(labels, h.shape[0])
  check_scalar("quantization_weight", quantization_weight, low=0.0, fix="DPSH uses eta = 0.1.")
  valid = jnp.ones(h.shape[0], bool) if where is None else jnp.asarray(where, bool)
  if bank_h is None:
    partners, sim = h, pairwise_similarity(labels, labels)
    mask = valid[:, None] & valid[None, :] & ~jnp.eye(h.shape[0], dtype=bool)
  else:
    if bank_labels is None:
      raise ValueError("bank_labels is required when bank_h is given.")
    partners = jax.lax.stop_gradient(_check_codes(bank_h, "bank_h"))
    if partners.shape[1] != h.shape[1]:
      raise ValueError(f"bank_h has {partners.shape[1]} bits, h has {h.shape[1]}.")
    _check_labels(bank_labels, partners.shape[0], "bank_labels", "bank_h")
    sim = pairwise_similarity(labels, bank_labels)
    mask = jnp.broadcast_to(valid[:, None], sim.shape)
  theta = 0.5 * (h @ partners.T)
  nll = jax.nn.softplus(theta) - sim * theta
  count = jnp.maximum(jnp.sum(mask, axis=1), 1)
  likelihood = jnp.sum(jnp.where(mask, nll, 0.0), axis=1) / count
  quant = jnp.mean(jnp.square(h - jnp.sign(h)), axis=1)
  return jnp.where(valid, likelihood + quantization_weight * quant, 0.0)


def hashnet_loss(
  h: jax.typing.ArrayLike,
  labels: jax.typing.ArrayLike,
  *,
  alpha: float = 0.1,
  where: jax.typing.ArrayLike | None = None,
) -> jax.Array:
  r"""HashNet weighted pairwise cross-entropy (within batch), per example.

  .. math::
     \ell_{ij} = \log(1 + e^{\alpha h_i^\top h_j}) - s_{ij}\,\alpha h_i^\top h_j, \quad
     w_{ij} = \frac{S}{S_1}[s_{ij}=1] + \frac{S}{S_0}[s_{ij}=0], \quad
     \ell_i = \frac{1}{B}\sum_j w_{ij} \ell_{ij}

  where :math:`S_1, S_0` count the similar / dissimilar pairs of the batch and
  :math:`S = S_0 + S_1 = B^2`, so that :math:`\mathrm{mean}_i \ell_i = \frac1S \sum_{ij}
  w_{ij}\ell_{ij}` is the DeepHash-pytorch batch loss. ``h`` should be
  :math:`\tanh(\beta z)` with the continuation scale β of :func:`hashnet_scale` (pass it as
  ``scale=`` to :class:`vision_jax.hashing.HashNetwork`).

  Choice: pairs include i = j and the balancing weights are per batch, as in DeepHash-pytorch.

  Args:
    h: relaxed codes ``[B, L]``.
    labels: int ids ``[B]`` or multi-hot ``[B, C]``.
    alpha: α, the inner-product scale of the sigmoid.
    where: optional bool ``[B]``; False rows give 0 and are not partners.

  Returns:
    float32 ``[B]``.

  References:
    Cao, Long, Wang, Yu. "HashNet: Deep Learning to Hash by Continuation." ICCV 2017,
    arXiv:1702.00758.
  """
  h = _check_codes(h, where=where)
  _check_labels(labels, h.shape[0])
  check_scalar("alpha", alpha, low=0.0, low_inclusive=False, fix="HashNet uses alpha = 0.1.")
  valid = jnp.ones(h.shape[0], bool) if where is None else jnp.asarray(where, bool)
  pair = valid[:, None] & valid[None, :]
  sim = pairwise_similarity(labels, labels)
  dot = alpha * (h @ h.T)
  nll = jax.nn.softplus(dot) - sim * dot
  pos = pair & (sim > 0)
  neg = pair & (sim <= 0)
  s1, s0 = jnp.sum(pos), jnp.sum(neg)
  total = (s1 + s0).astype(jnp.float32)
  w = jnp.where(pos, total / jnp.maximum(s1, 1), 0.0) + jnp.where(
    neg, total / jnp.maximum(s0, 1), 0.0
  )
  num_valid = jnp.maximum(jnp.sum(valid), 1).astype(jnp.float32)
  return jnp.where(valid, jnp.sum(w * nll, axis=1) / num_valid, 0.0)


def hashnet_scale(step, *, gamma: float = 0.005, power: float = 0.5, step_size: int = 200):
  r"""HashNet continuation scale :math:`\beta = (1 + \gamma \lfloor t / T \rfloor)^{p}`.

  Args:
    step: training step t (int or scalar array).
    gamma: γ.
    power: p.
    step_size: T, steps between increases.

  Returns:
    float32 scalar β (1 at step 0, growing so that :math:`\tanh(\beta z) \to \mathrm{sign}(z)`).

  References:
    Cao et al. "HashNet: Deep Learning to Hash by Continuation." ICCV 2017, arXiv:1702.00758.
  """
  t = jnp.floor_divide(jnp.asarray(step, jnp.int32), step_size).astype(jnp.float32)
  return jnp.power(1.0 + gamma * t, power)


def update_memory_bank(
  bank: jax.typing.ArrayLike, values: jax.typing.ArrayLike, indices: jax.typing.ArrayLike
) -> jax.Array:
  """Writes ``values [B, ...]`` into rows ``indices [B]`` of ``bank [M, ...]`` (pure)."""
  bank = jnp.asarray(bank)
  return bank.at[jnp.asarray(indices)].set(jnp.asarray(values).astype(bank.dtype))


# ----------------------------------------------------------------------------- CSQ


def hadamard_centers(num_bits: int) -> np.ndarray:
  r"""The :math:`2L` hash centres :math:`[H; -H]` of a Sylvester Hadamard matrix.

  Any two distinct centres are at Hamming distance :math:`L/2`, except each row and its
  negation (distance :math:`L`).

  Args:
    num_bits: L, a power of two.

  Returns:
    float32 ``[2L, L]`` with ±1 entries.

  Raises:
    ValueError: L is not a power of two.
  """
  if not isinstance(num_bits, int | np.integer) or num_bits < 1 or num_bits & (num_bits - 1):
    raise ValueError(f"Hadamard centres need num_bits a power of two, got {num_bits!r}.")
  h = scipy.linalg.hadamard(int(num_bits)).astype(np.float32)
  return np.concatenate([h, -h], axis=0)


def _pairwise_hamming(c: np.ndarray) -> np.ndarray:
  d = 0.5 * (c.shape[1] - c @ c.T)
  return d[np.triu_indices(c.shape[0], k=1)]


def csq_hash_centers(
  num_classes: int, num_bits: int, *, seed: int = 0, max_tries: int = 20
) -> np.ndarray:
  r"""CSQ hash centres: Hadamard rows first, random balanced ±1 rows for the rest.

  The first :math:`\min(C, 2L)` centres are rows of :math:`[H; -H]`; any further class gets a
  random centre with exactly :math:`L/2` bits at -1. The random part is resampled up to
  ``max_tries`` times until the minimum pairwise Hamming distance exceeds :math:`L/4` and the
  mean is at least :math:`L/2`.

  Choice: when L is not a power of two (e.g. 48) every centre is random balanced (CSQ's
  Bernoulli fallback); if no draw meets the criterion, the draw with the largest minimum
  distance is kept (CSQ keeps the last draw).

  Args:
    num_classes: C >= 1.
    num_bits: L >= 2.
    seed: NumPy seed for the random centres.
    max_tries: resampling attempts.

  Returns:
    float32 ``[C, L]`` ±1 centres.

  Raises:
    ValueError: bad ``num_classes`` / ``num_bits``.

  References:
    Yuan, Wang, Zhang, Tay, Jie, Feng, Feng. "Central Similarity Quantization for Efficient
    Image and Video Retrieval." CVPR 2020, arXiv:1908.00347.
  """
  if num_classes < 1 or num_bits < 2:
    raise ValueError(f"need num_classes >= 1 and num_bits >= 2, got {num_classes}, {num_bits}.")
  base = hadamard_centers(num_bits) if num_bits & (num_bits - 1) == 0 else np.zeros((0, num_bits))
  if num_classes <= base.shape[0]:
    return base[:num_classes].astype(np.float32)
  rng = np.random.default_rng(seed)
  extra = num_classes - base.shape[0]
  best, best_min = None, -1.0
  for _ in range(max(1, max_tries)):
    signs = np.ones((extra, num_bits), np.float32)
    for row in signs:
      row[rng.choice(num_bits, num_bits // 2, replace=False)] = -1.0
    cand = np.concatenate([base.astype(np.float32), signs], axis=0)
    d = _pairwise_hamming(cand)
    if d.min() > best_min:
      best, best_min = cand, d.min()
    if d.min() > num_bits / 4 and d.mean() >= num_bits / 2:
      return cand
  return best


def label_centers(
  labels: jax.typing.ArrayLike,
  centers: jax.typing.ArrayLike,
  *,
  tie_breaker: jax.typing.ArrayLike | None = None,
) -> jax.Array:
  r"""Target hash centre per example.

  Single-label: :math:`c_{y_i}`. Multi-label:
  :math:`c_i = \mathrm{sign}\big(\sum_k y_{ik} c_k\big)`, zero entries taken from
  ``tie_breaker`` (CSQ draws one fixed random ±1 vector for this).

  Args:
    labels: int ids ``[B]`` or multi-hot ``[B, C]``.
    centers: ``[C, L]`` ±1 centres.
    tie_breaker: ``[L]`` ±1 vector; required for multi-hot labels.

  Returns:
    float32 ``[B, L]``.

  Raises:
    ValueError: multi-hot labels without ``tie_breaker``, class-count mismatch, and (eager
      labels) an id outside ``[0, C)``. Under ``jit`` such a row's centre is NaN (so the loss
      is NaN and the train loop's guard stops).
    TypeError: non-integer ids.
  """
  raw = labels
  labels, centers = jnp.asarray(labels), jnp.asarray(centers, jnp.float32)
  if centers.ndim != 2:
    raise ValueError(f"centers must be [num_classes, bits], got shape {centers.shape}.")
  num_classes = centers.shape[0]
  if labels.ndim == 1:
    if not jnp.issubdtype(labels.dtype, jnp.integer):
      raise TypeError(f"labels must be integer class ids, got dtype {labels.dtype}.")
    check_label_range(raw, num_classes, fix="centers needs one hash centre per class.")
    safe, ok = safe_labels(labels, num_classes)
    # Under jit: a NaN centre for an out-of-range id (a plain gather clamps to the last centre).
    return poison_bad_labels(centers[safe], ok)
  if labels.ndim != 2:
    raise ValueError(f"labels must be int ids [B] or multi-hot [B, C], got shape {labels.shape}.")
  if labels.shape[1] != num_classes:
    raise ValueError(
      f"labels have {labels.shape[1]} classes (multi-hot [B, C]) but centers has {num_classes} "
      "rows; build one centre per class."
    )
  if tie_breaker is None:
    raise ValueError("multi-hot labels need tie_breaker: a fixed [bits] ±1 vector.")
  s = labels.astype(jnp.float32) @ centers
  tb = jnp.asarray(tie_breaker, jnp.float32)[None, :]
  return jnp.where(s > 0, 1.0, jnp.where(s < 0, -1.0, tb))


def _clamped_log_half(x: jax.Array) -> jax.Array:
  """max(log(x / 2), -100) for x = 1 ± h >= 0, with finite gradients at x = 0 (double where)."""
  ok = x > 0.0
  log = jnp.log(jnp.where(ok, x, 1.0)) - jnp.log(2.0)
  return jnp.where(ok, jnp.maximum(log, _LOG_CLAMP), _LOG_CLAMP)


def _bce_to_center(h: jax.Array, c: jax.Array) -> jax.Array:
  """Elementwise BCE between p = (h+1)/2 and t = (c+1)/2, log terms clamped at -100."""
  log_p = _clamped_log_half(1.0 + h)
  log_q = _clamped_log_half(1.0 - h)
  t = 0.5 * (c + 1.0)
  return -(t * log_p + (1.0 - t) * log_q)


def csq_loss(
  h: jax.typing.ArrayLike,
  targets: jax.typing.ArrayLike,
  *,
  quantization_weight: float = 1e-4,
  where: jax.typing.ArrayLike | None = None,
) -> jax.Array:
  r"""Central Similarity Quantization loss, per example.

  .. math::
     \ell_i = \frac{1}{L}\sum_{k} \Big[-t_{ik}\log p_{ik} - (1 - t_{ik})\log(1 - p_{ik})\Big]
       + \frac{\lambda}{L} \sum_k (|h_{ik}| - 1)^2,
     \quad p = \tfrac{h + 1}{2},\ t = \tfrac{c_i + 1}{2}

  Choice: means over bits as in DeepHash-pytorch (``BCELoss`` mean, λ = 1e-4); log terms are
  clamped at -100 like PyTorch's ``BCELoss`` so saturated ``tanh`` stays finite.

  Args:
    h: relaxed codes in [-1, 1], ``[B, L]``.
    targets: hash centres ``[B, L]`` (see :func:`label_centers`).
    quantization_weight: λ >= 0.
    where: optional bool ``[B]``; False rows give 0.

  Returns:
    float32 ``[B]``.

  Raises:
    ValueError: shape mismatch, λ < 0, and (eager ``h``) NaN/Inf or a code outside [-1, 1]
      (the BCE is only a loss there; outside it goes negative). Under ``jit`` such rows give NaN.

  References:
    Yuan et al. "Central Similarity Quantization for Efficient Image and Video Retrieval."
    CVPR 2020, arXiv:1908.00347.
  """
  h_in = h
  h = _check_codes(h, where=where)
  _check_unit_range("h", h_in, where)
  check_scalar("quantization_weight", quantization_weight, low=0.0, fix="CSQ uses 1e-4.")
  c = jnp.asarray(targets, jnp.float32)
  if c.shape != h.shape:
    raise ValueError(f"targets shape {c.shape} must equal h shape {h.shape}.")
  loss = jnp.mean(_bce_to_center(h, c), axis=1) + quantization_weight * jnp.mean(
    jnp.square(jnp.abs(h) - 1.0), axis=1
  )
  loss = poison_bad_labels(loss, ~_outside_unit(h))  # |h| > 1: NaN, not a negative loss
  return loss if where is None else jnp.where(jnp.asarray(where, bool), loss, 0.0)


# ----------------------------------------------------------------------------- DMUH

Discrepancy = Literal["abs", "squared"]


def bit_uncertainty(
  h: jax.typing.ArrayLike, h_ema: jax.typing.ArrayLike, *, discrepancy: Discrepancy = "abs"
) -> jax.Array:
  r"""Bit-level uncertainty :math:`u_{ik} = |h_{ik} - \tilde h_{ik}|` (or its square).

  Choice: measured after ``tanh`` on the relaxed codes of both networks, and treated as a
  constant (stop-gradient): it weights the loss but is not itself minimised.

  Args:
    h: hashing-network outputs ``[B, L]``.
    h_ema: momentum-network outputs ``[B, L]``.
    discrepancy: ``"abs"`` (|·|, in [0, 2]) or ``"squared"`` ((·)², in [0, 4]).

  Returns:
    float32 ``[B, L]``.

  References:
    Fu, Wang, Wu, Zhang, He. "Deep Momentum Uncertainty Hashing." Pattern Recognition 2022,
    arXiv:2009.08012.
  """
  diff = jnp.asarray(h, jnp.float32) - jnp.asarray(h_ema, jnp.float32)
  if diff.ndim != 2:
    raise ValueError(f"h and h_ema must be [batch, bits], got {diff.shape}.")
  if discrepancy == "abs":
    u = jnp.abs(diff)
  elif discrepancy == "squared":
    u = jnp.square(diff)
  else:
    raise ValueError(f"discrepancy must be 'abs' or 'squared', got {discrepancy!r}.")
  return jax.lax.stop_gradient(u)


def image_uncertainty(u: jax.typing.ArrayLike) -> jax.Array:
  r"""Image-level uncertainty :math:`U_i = \frac1L \sum_k u_{ik}`; ``[B, L] -> [B]``."""
  return jnp.mean(jnp.asarray(u, jnp.float32), axis=-1)


def dmuh_loss(
  h: jax.typing.ArrayLike,
  h_ema: jax.typing.ArrayLike,
  *,
  base: Literal["center", "pairwise"] = "center",
  targets: jax.typing.ArrayLike | None = None,
  labels: jax.typing.ArrayLike | None = None,
  bank_h: jax.typing.ArrayLike | None = None,
  bank_labels: jax.typing.ArrayLike | None = None,
  bit_weight: float = 1.0,
  image_weight: float = 1.0,
  quantization_weight: float | None = None,
  discrepancy: Discrepancy = "abs",
  where: jax.typing.ArrayLike | None = None,
) -> jax.Array:
  r"""Deep Momentum Uncertainty Hashing loss, per example.

  With :math:`u_{ik}` from :func:`bit_uncertainty` (hashing net vs. its EMA copy),
  :math:`U_i = \mathrm{mean}_k u_{ik}`, bit weights :math:`a_{ik} = 1 + \beta u_{ik}` and image
  weights :math:`b_i = 1 + \gamma U_i` (both constants, no gradient):

  ``base="center"`` (CSQ hash centres :math:`c_i`, default):

  .. math::
     \ell_i = b_i \Big[\frac1L \sum_k a_{ik}\,\mathrm{BCE}\big(\tfrac{h_{ik}+1}{2},
       \tfrac{c_{ik}+1}{2}\big) + \frac{\lambda}{L} \sum_k a_{ik} (|h_{ik}| - 1)^2\Big]

  ``base="pairwise"`` (DPSH likelihood, :math:`\Theta_{ij} = \frac12 h_i^\top h_j`):

  .. math::
     \ell_i = b_i \Big[\frac{1}{|\mathcal P_i|}\sum_{j \in \mathcal P_i}
       \big(\log(1+e^{\Theta_{ij}}) - s_{ij}\Theta_{ij}\big)
       + \frac{\eta}{L} \sum_k a_{ik} (h_{ik} - \mathrm{sign}\,h_{ik})^2\Big]

  With zero uncertainty (:math:`h = \tilde h`) or :math:`\beta = \gamma = 0` this is exactly
  :func:`csq_loss` / :func:`dpsh_loss`.

  Choice (the paper's equations are not public; only its abstract is): uncertainty is the
  absolute discrepancy after ``tanh``; weights are linear ``1 + β·u`` and ``1 + γ·U``, so more
  uncertain bits and images get more weight; the image weight scales the whole per-image loss
  (similarity + quantisation); bit weights scale every per-bit term (both terms for the centre
  base; only the quantisation term for the pairwise base, whose similarity term has no per-bit
  decomposition); the default base is the CSQ centre loss. The EMA momentum lives in
  :func:`vision_jax.train.ema_update`.

  Args:
    h: hashing-network relaxed codes ``[B, L]`` in (-1, 1).
    h_ema: momentum-network relaxed codes ``[B, L]`` for the same images.
    base: ``"center"`` or ``"pairwise"``.
    targets: hash centres ``[B, L]``; required for ``base="center"``.
    labels: int ids ``[B]`` or multi-hot ``[B, C]``; required for ``base="pairwise"``.
    bank_h: optional DPSH memory bank ``[M, L]`` (pairwise base).
    bank_labels: its labels.
    bit_weight: β >= 0.
    image_weight: γ >= 0.
    quantization_weight: λ (centre, default 1e-4) or η (pairwise, default 0.1).
    discrepancy: ``"abs"`` or ``"squared"``.
    where: optional bool ``[B]``; False rows give 0 (and are not pairwise partners).

  Returns:
    float32 ``[B]``.

  Raises:
    ValueError: unknown ``base`` or missing ``targets`` / ``labels``, a negative ``bit_weight``
      / ``image_weight`` / ``quantization_weight``, and the input checks of
      :func:`csq_loss` (centre base) or :func:`dpsh_loss` (pairwise base).

  References:
    Fu, Wang, Wu, Zhang, He. "Deep Momentum Uncertainty Hashing." Pattern Recognition 2022,
    arXiv:2009.08012.
  """
  h_in = h
  h = _check_codes(h, where=where)
  if np.shape(h_ema) != h.shape:
    raise ValueError(f"h_ema shape {np.shape(h_ema)} must equal h shape {h.shape}.")
  check_finite_rows("h_ema", h_ema, where=where, fix="Check the momentum network.")
  check_scalar("bit_weight", bit_weight, low=0.0, fix="beta >= 0 (1.0 by default).")
  check_scalar("image_weight", image_weight, low=0.0, fix="gamma >= 0 (1.0 by default).")
  check_scalar("quantization_weight", quantization_weight, low=0.0)
  u = bit_uncertainty(h, h_ema, discrepancy=discrepancy)
  a = 1.0 + bit_weight * u
  b = 1.0 + image_weight * image_uncertainty(u)
  valid = None if where is None else jnp.asarray(where, bool)
  if base == "center":
    if targets is None:
      raise ValueError("base='center' needs targets: hash centres [B, L] (label_centers).")
    c = jnp.asarray(targets, jnp.float32)
    if c.shape != h.shape:
      raise ValueError(f"targets shape {c.shape} must equal h shape {h.shape}.")
    _check_unit_range("h", h_in, where)
    lam = 1e-4 if quantization_weight is None else quantization_weight
    per_bit = _bce_to_center(h, c) + lam * jnp.square(jnp.abs(h) - 1.0)
    loss = poison_bad_labels(b * jnp.mean(a * per_bit, axis=1), ~_outside_unit(h))
  elif base == "pairwise":
    if labels is None:
      raise ValueError("base='pairwise' needs labels: int ids [B] or multi-hot [B, C].")
    eta = 0.1 if quantization_weight is None else quantization_weight
    likelihood = dpsh_loss(
      h, labels, bank_h=bank_h, bank_labels=bank_labels, quantization_weight=0.0, where=where
    )
    quant = jnp.mean(a * jnp.square(h - jnp.sign(h)), axis=1)
    loss = b * (likelihood + eta * quant)
  else:
    raise ValueError(f"base must be 'center' or 'pairwise', got {base!r}.")
  return loss if valid is None else jnp.where(valid, loss, 0.0)
