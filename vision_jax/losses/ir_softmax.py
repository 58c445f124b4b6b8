"""IR-Softmax: margin-softmax losses whose class weights are the class centres.

The classifier weight of class j is replaced by the direction of its feature centre
:math:`c_j`, a non-trainable running mean of L2-normalised features (the embedding task keeps
them in ``TrainState.extra["centers"]``, checkpointed with the train state; no optimiser
touches them):

.. math::
  \\hat W_j = \\operatorname{sg}\\!\\Big(\\frac{c_j}{\\lVert c_j\\rVert}\\Big), \\qquad
  c_j \\leftarrow \\mu\\, c_j + (1-\\mu)\\, \\frac{1}{n_j}\\sum_{i: y_i=j} \\frac{x_i}{\\lVert x_i\\rVert}
  \\quad (n_j > 0)

where sg is stop-gradient. Any margin head then applies unchanged: IR-A-Softmax and
IR-AM-Softmax are the paper's two, IR-ArcFace is ours.

References:
  H. Zhu, Y. Yuan, G. Hu, X. Wu, N. Robertson. Imbalance Robust Softmax for Deep Embedding
  Learning. ACCV 2020. arXiv:2011.11155.

Choice: the paper's exact centre update is not available to us (no public code; see
``docs/ir_softmax.md``). We use a per-batch EMA of L2-normalised features (centre-loss style),
updated only for classes present in the batch, with the momentum a config field
(``ir_center_momentum`` gives an optional linear warm-up of the momentum from 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from vision_jax.losses import _chunked
from vision_jax.losses import margin as _m
from vision_jax.losses._validate import check_scalar, validate_head_inputs

Array = jax.Array


def init_class_centers(key, num_classes: int, dim: int, *, out_sharding=None) -> Array:
  """Initial class centres: i.i.d. Gaussian rows normalised to unit length, ``[C, D]`` float32.

  Choice: random unit vectors (the direction distribution of a freshly initialised normalised
  FC layer), so that IR logits at step 0 look like those of a NormFace head at init and every
  class has a distinct, nearly orthogonal direction before its first update. Zeros would give
  all unseen classes logit 0 and ties.

  Args:
    key: PRNG key.
    num_classes: C >= 1. dim: D >= 1.
    out_sharding: optional ``jax.sharding.Sharding`` (e.g. ``NamedSharding(mesh, P("model",
      None))``); the centres are then created already sharded (never materialised whole on one
      device), which is what a 1M-class head needs.

  Returns:
    ``[num_classes, dim]`` float32 unit rows.
  """
  if int(num_classes) < 1 or int(dim) < 1:
    raise ValueError(f"num_classes={num_classes} and dim={dim} must both be >= 1.")

  def init(k):
    return _m.l2_normalize(jax.random.normal(k, (num_classes, dim), jnp.float32))

  return jax.jit(init, out_shardings=out_sharding)(key)


def ir_weights(centers: Array) -> Array:
  """Classifier weights from centres: ``stop_gradient(normalize(centers))`` ``[C, D]`` float32."""
  return lax.stop_gradient(_m.l2_normalize(jnp.asarray(centers, jnp.float32)))


def ir_center_momentum(step, *, momentum: float, warmup_steps: int = 0) -> Array:
  """EMA momentum with an optional linear warm-up: ``momentum * min(1, step / warmup_steps)``.

  Choice: during warm-up the centres track the current batch means closely (momentum near 0)
  because the features move fast early in training; after warm-up the EMA averages over about
  ``1 / (1 - momentum)`` appearances of each class. ``warmup_steps=0`` disables it.
  """
  check_scalar("momentum", momentum, low=0.0, high=1.0)
  mu = jnp.asarray(momentum, jnp.float32)
  if warmup_steps <= 0:
    return mu
  return mu * jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / float(warmup_steps))


def batch_class_sums(embeddings, labels, num_classes: int, *, where=None, class_offset=0):
  """Sums of L2-normalised features per class present in the batch: ``O(B D)``, never ``[C, D]``.

  The batch is sorted by label and reduced into at most ``B`` segments, one per distinct class.

  Args:
    embeddings: ``[B, D]``. labels: ``[B]`` int (global ids). num_classes: ``C`` (local count).
    where: optional ``[B]`` bool mask; False rows are dropped.
    class_offset: global id of local class 0; labels outside
      ``[class_offset, class_offset + C)`` are dropped (a class-parallel shard sums only its own).

  Returns:
    ``ids [B]`` int32 local class of each segment (``C`` for unused segments), ``sums [B, D]``
    and ``counts [B]`` float32.
  """
  x = _m.l2_normalize(jnp.asarray(embeddings, jnp.float32))
  keep = jnp.ones(x.shape[:1], bool) if where is None else jnp.asarray(where, bool)
  local = jnp.asarray(labels).astype(jnp.int32) - class_offset
  keep = keep & (local >= 0) & (local < num_classes)
  local = jnp.where(keep, local, num_classes)  # dropped rows sort last, into class C
  order = jnp.argsort(local)
  sorted_ids = local[order]
  first = jnp.concatenate([jnp.ones((1,), bool), sorted_ids[1:] != sorted_ids[:-1]])
  seg = jnp.cumsum(first) - 1
  batch = x.shape[0]
  keep_sorted = keep[order].astype(jnp.float32)
  sums = jax.ops.segment_sum(x[order] * keep_sorted[:, None], seg, num_segments=batch)
  counts = jax.ops.segment_sum(keep_sorted, seg, num_segments=batch)
  ids = jnp.full((batch,), num_classes, jnp.int32).at[seg].set(sorted_ids)
  ids = jnp.where(counts > 0, ids, num_classes)
  return ids, sums, counts


def scatter_ema_centers(centers, ids, sums, counts, momentum):
  """``c_j <- mu c_j + (1 - mu) sums / counts`` for the rows ``ids`` (``ids == C``: no row).

  Only the at most ``B`` touched rows are computed; the result is a copy of ``centers`` with
  those rows replaced (in place when ``centers`` is donated), so the update needs no ``[C, D]``
  temporary besides its output.
  """
  centers = jnp.asarray(centers)
  num_classes = centers.shape[0]
  mu = jnp.asarray(momentum, jnp.float32)
  old = jnp.take(centers, jnp.minimum(ids, num_classes - 1), axis=0).astype(jnp.float32)
  rows = mu * old + (1.0 - mu) * sums / jnp.maximum(counts, 1.0)[:, None]
  return centers.at[ids].set(rows.astype(centers.dtype), mode="drop", unique_indices=True)


def update_class_centers(centers, embeddings, labels, *, momentum, where=None) -> Array:
  """EMA update of the class centres from one batch.

  .. math::
    c_j \\leftarrow \\mu\\, c_j + (1-\\mu)\\,\\bar x_j, \\qquad
    \\bar x_j = \\frac{1}{n_j} \\sum_{i: y_i = j} \\frac{x_i}{\\lVert x_i \\rVert},
    \\qquad c_j \\text{ unchanged if } n_j = 0

  Args:
    centers: ``[num_classes, dim]`` current centres (see ``init_class_centers``).
    embeddings: ``[batch, dim]`` features (gradient is not needed; they are not stopped here,
      wrap the call in ``stop_gradient`` if you differentiate through it).
    labels: ``[batch]`` int in ``[0, num_classes)``.
    momentum: :math:`\\mu \\in [0, 1]`: the fraction of the old centre kept (flax BatchNorm
      convention). 0 replaces present centres with the batch class mean.
    where: optional ``[batch]`` bool mask; False rows are ignored.

  Returns:
    ``[num_classes, dim]`` updated centres, same dtype as ``centers``.

  Raises:
    ValueError, TypeError: as the losses (eagerly: labels outside ``[0, num_classes)``). Under
      ``jit`` such rows update no centre; the loss of the same batch is NaN for them.

  Choice: centres are stored *unnormalised* (a running mean of unit vectors; its norm
  measures how concentrated the class is); only their direction is used as a weight. The
  update is the mean over the class's batch samples, not a per-sample sequential EMA, so it is
  independent of batch order. Call it after computing the loss of the same batch (the loss sees
  centres that do not yet contain the current samples). Only the rows of classes in the batch
  are computed (``batch_class_sums``), so the only ``[C, D]`` buffer is the output; donate
  ``centers`` to the jitted step to update them in place.
  """
  validate_head_inputs(embeddings, centers, labels, where=where)
  check_scalar("momentum", momentum, low=0.0, high=1.0, fix="Typical: 0.9-0.99.")
  num_classes = jnp.shape(centers)[0]
  labels = jnp.asarray(labels)
  ids, sums, counts = batch_class_sums(embeddings, labels, num_classes, where=where)
  return scatter_ema_centers(centers, ids, sums, counts, momentum)


def _head_weights(embeddings, centers, chunk_size):
  """``ir_weights(centers)``, or the stop-gradient raw centres when the head is chunked.

  Every IR head is a cosine head, which normalises its weights itself; chunked, it does so per
  block, so passing the raw centres avoids a normalised ``[C, D]`` copy (the cosines agree to
  float32 rounding).
  """
  chunk = _chunked.resolve_chunk_size(chunk_size, jnp.shape(embeddings)[0], jnp.shape(centers)[0])
  if chunk is None:
    return ir_weights(centers)
  return lax.stop_gradient(jnp.asarray(centers, jnp.float32))


def ir_a_softmax_loss(
  embeddings, centers, labels, *, margin: int = 4, lambda_=0.0, where=None, chunk_size=None
) -> Array:
  """IR-A-Softmax: ``a_softmax_loss`` with weights ``ir_weights(centers)``.

  .. math::
    f_{y_i} = \\lVert x_i\\rVert \\frac{\\lambda\\cos\\theta_{y_i} + \\psi(\\theta_{y_i})}{1+\\lambda},
    \\quad \\cos\\theta_j = \\hat x_i^\\top \\hat c_j

  Args:
    embeddings: ``[batch, dim]``. centers: ``[num_classes, dim]`` (no gradient flows into them).
    labels: ``[batch]`` int. margin, lambda_, where, chunk_size: as in ``a_softmax_loss``.

  Returns:
    ``[batch]`` float32 losses.

  References:
    H. Zhu et al. Imbalance Robust Softmax for Deep Embedding Learning. ACCV 2020.
    arXiv:2011.11155.
  """
  return _m.a_softmax_loss(
    embeddings,
    _head_weights(embeddings, centers, chunk_size),
    labels,
    margin=margin,
    lambda_=lambda_,
    where=where,
    chunk_size=chunk_size,
  )


def ir_am_softmax_loss(
  embeddings, centers, labels, *, scale=30.0, margin=0.35, where=None, chunk_size=None
) -> Array:
  """IR-AM-Softmax: ``am_softmax_loss`` with weights ``ir_weights(centers)``.

  .. math::
    \\ell_i = -\\log \\frac{e^{s(\\hat x_i^\\top \\hat c_{y_i} - m)}}
      {e^{s(\\hat x_i^\\top \\hat c_{y_i} - m)} + \\sum_{j\\ne y_i} e^{s\\, \\hat x_i^\\top \\hat c_j}}

  References:
    H. Zhu et al. Imbalance Robust Softmax for Deep Embedding Learning. ACCV 2020.
    arXiv:2011.11155.
  """
  return _m.am_softmax_loss(
    embeddings,
    _head_weights(embeddings, centers, chunk_size),
    labels,
    scale=scale,
    margin=margin,
    where=where,
    chunk_size=chunk_size,
  )


def ir_arcface_loss(
  embeddings,
  centers,
  labels,
  *,
  scale=64.0,
  margin=0.5,
  easy_margin=False,
  gradient: str = "exact",
  where=None,
  chunk_size=None,
) -> Array:
  """IR-ArcFace (ours, not in the paper): ``arcface_loss`` with weights ``ir_weights(centers)``.

  Choice: the paper re-formulates A-Softmax and AM-Softmax only; ArcFace is the natural third
  member of the family and is included for comparison.
  """
  return _m.arcface_loss(
    embeddings,
    _head_weights(embeddings, centers, chunk_size),
    labels,
    scale=scale,
    margin=margin,
    easy_margin=easy_margin,
    gradient=gradient,
    where=where,
    chunk_size=chunk_size,
  )


def weight_center_angles(weights, centers) -> Array:
  """Per-class angle in degrees between classifier weight ``W_j`` and class centre ``c_j``, ``[C]``.

  The IR-Softmax paper's diagnostic: under class imbalance this angle grows for tail classes
  with a learned softmax classifier; for IR it is 0 by construction.
  """
  if jnp.shape(weights) != jnp.shape(centers):
    raise ValueError(f"weights {jnp.shape(weights)} and centers {jnp.shape(centers)} differ.")
  w = _m.l2_normalize(jnp.asarray(weights, jnp.float32))
  c = _m.l2_normalize(jnp.asarray(centers, jnp.float32))
  # 2 atan2(|w - c|, |w + c|) is accurate near 0 and 180 degrees, unlike arccos(w . c).
  diff = jnp.sqrt(jnp.sum(jnp.square(w - c), axis=1))
  summ = jnp.sqrt(jnp.sum(jnp.square(w + c), axis=1))
  return jnp.degrees(2.0 * jnp.arctan2(diff, summ))
