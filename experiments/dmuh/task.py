"""The hashing train task (DMUH / DPSH / CSQ) for the shared train loop.

DMUH keeps a momentum (EMA) copy of the hashing network in ``TrainState.extra["ema"]``
(params and BatchNorm statistics), updated after every optimizer step by
:func:`vision_jax.train.ema_update`, never by gradients. Each step runs the EMA network in
inference mode on the same batch to get :math:`\\tilde h`; the bit uncertainty
:math:`u = |h - \\tilde h|` weights the loss (:func:`vision_jax.hashing.dmuh_loss`).
Per-bit mean uncertainty is logged as ``ubit_00 ... ubit_{L-1}`` for the over-training plot.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from vision_jax import hashing as H
from vision_jax.data.transforms import image_to_float
from vision_jax.train.ema import ema_update
from vision_jax.train.state import split_variables
from vision_jax.train.step import Task
from vision_jax.utils.arrays import masked_mean

METHODS = ("dpsh", "csq", "dmuh")


def hashing_task(
  backbone,
  *,
  method: str,
  num_bits: int,
  num_classes: int,
  cfg,
  seed: int = 0,
  preprocess=image_to_float,
) -> Task:
  """Builds the Task; ``cfg`` holds the per-method sections ``dpsh``, ``csq``, ``dmuh``."""
  if method not in METHODS:
    raise ValueError(f"unknown hashing method {method!r}; valid: {', '.join(METHODS)}")
  net = H.HashNetwork(backbone, num_bits)
  centers = jnp.asarray(H.csq_hash_centers(num_classes, num_bits, seed=seed), jnp.float32)
  # CSQ: multi-label images get sign(sum of their label centres); zero bits take a fixed random
  # +-1 vector (ignored for single-label data).
  tie_breaker = jnp.asarray(
    np.random.default_rng(seed + 1).choice([-1.0, 1.0], size=num_bits), jnp.float32
  )
  targets_of = lambda labels: H.label_centers(labels, centers, tie_breaker=tie_breaker)
  dm = cfg.dmuh

  def apply(variables, x, train):
    if train:
      (h, _), new_state = net.apply(variables, x, train=True, mutable=["batch_stats"])
      return h, new_state
    h, _ = net.apply(variables, x, train=False)
    return h, None

  def init(rng, batch):
    variables = net.init(rng, preprocess(batch["image"]), train=False)
    params, model_state = split_variables(variables)
    extra = {}
    if method == "dmuh":
      extra["ema"] = {"params": params, **model_state}
    return params, model_state, extra

  def loss_fn(params, model_state, extra, batch, rng, step):
    x = preprocess(batch["image"])
    labels = batch["label"]
    where = batch.get("mask")
    h, new_state = apply({"params": params, **model_state}, x, True)
    metrics = {}
    if method == "dpsh":
      per_ex = H.dpsh_loss(h, labels, quantization_weight=cfg.dpsh.quantization_weight, where=where)
    elif method == "csq":
      per_ex = H.csq_loss(
        h, targets_of(labels), quantization_weight=cfg.csq.quantization_weight, where=where
      )
    else:
      h_ema, _ = apply(extra["ema"], x, False)
      kw = dict(
        base=dm.base,
        bit_weight=dm.bit_weight,
        image_weight=dm.image_weight,
        quantization_weight=dm.quantization_weight,
        discrepancy=dm.discrepancy,
        where=where,
      )
      if dm.base == "center":
        kw["targets"] = targets_of(labels)
      else:
        kw["labels"] = labels
      per_ex = H.dmuh_loss(h, h_ema, **kw)
      u = H.bit_uncertainty(h, h_ema, discrepancy=dm.discrepancy)
      ubit = jnp.mean(u, axis=0)
      metrics["uncertainty"] = jnp.mean(ubit)
      metrics.update({f"ubit_{k:02d}": ubit[k] for k in range(num_bits)})
    loss = masked_mean(per_ex, where)
    metrics["quantization_gap"] = jnp.mean(jnp.abs(jnp.abs(h) - 1.0))
    return loss, {"model_state": dict(new_state), "extra": extra, "metrics": metrics}

  def post_update(state):
    if method != "dmuh":
      return state
    ema = state.extra["ema"]
    new_ema = ema_update(ema, {"params": state.params, **state.model_state}, momentum=dm.momentum)
    return state.replace(extra=dict(state.extra, ema=new_ema))

  def eval_fn(params, model_state, extra, batch):
    h, _ = apply({"params": params, **model_state}, preprocess(batch["image"]), False)
    return {"code": H.binarize(h), "label": batch["label"]}

  return Task(init=init, loss_fn=loss_fn, eval_fn=eval_fn, post_update=post_update)


def retrieval_summary(num_query: int, *, topk: int = 0, radius: int = 2):
  """Host-side metrics; eval outputs are the query set followed by the database (in order)."""
  from vision_jax.metrics.retrieval import precision_at_hamming_radius, retrieval_map

  def summarize(out):
    codes, labels = np.asarray(out["code"]), np.asarray(out["label"])
    q, d = codes[:num_query], codes[num_query:]
    ql, dl = labels[:num_query], labels[num_query:]
    k = topk or None
    return {
      "map": retrieval_map(q, d, ql, dl, topk=k),
      "map_tie_aware": retrieval_map(q, d, ql, dl, topk=k, tie_aware=True),
      f"p_at_h{radius}": precision_at_hamming_radius(q, d, ql, dl, radius=radius),
    }

  return summarize
