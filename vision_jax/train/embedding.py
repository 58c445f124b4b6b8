"""Deep embedding learning with a margin-softmax head, plain or IR (weights := class centres).

One :class:`~vision_jax.train.Task` covers the whole family used by IR-Softmax (and by face /
re-ID recognition generally):

.. math::
  z = \\mathrm{Proj}(\\mathrm{Backbone}(x)) \\in \\mathbb{R}^D, \\qquad
  \\ell = \\mathrm{loss}(z, W, y), \\qquad
  W = \\begin{cases} W_\\theta & \\text{(learned FC, plain)} \\\\
  \\mathrm{sg}(c / \\lVert c \\rVert) & \\text{(IR: class centres)} \\end{cases}

where ``loss`` is one of ``softmax | normface | a_softmax | am_softmax | arcface``
(:mod:`vision_jax.losses.margin`) and the class centres :math:`c` are an EMA of L2-normalised
features (:func:`vision_jax.losses.update_class_centers`) kept in ``TrainState.extra["centers"]``.
Centres are tracked for plain heads too, so the paper's diagnostic — the angle between a learned
weight :math:`W_j` and its class centre :math:`c_j` — can be measured for every method.

Choice: the projection is one linear layer (no activation) on top of the backbone's embedding,
so features can point anywhere on the sphere (a ReLU'd embedding lives in the positive orthant,
which caps the angular margin).
Choice: A-Softmax's lambda follows :func:`vision_jax.losses.sphereface_lambda` of the train step
(base 1000, gamma 0.12, lambda_min 5 by default), passed explicitly, never hidden state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax import losses as L
from vision_jax.data.transforms import image_to_float
from vision_jax.losses.margin import HEADS
from vision_jax.train.state import split_variables
from vision_jax.train.step import Task
from vision_jax.utils.arrays import masked_mean

LOSSES = tuple(HEADS)  # the loss names of the one registry, vision_jax.losses.margin.HEADS


class EmbeddingNet(nn.Module):
  """``backbone`` (returning ``(embedding, intermediates)``) followed by a linear projection."""

  backbone: nn.Module
  embed_dim: int = 64

  @nn.compact
  def __call__(self, x, *, train: bool):
    feat, inter = self.backbone(x, train=train)
    z = nn.Dense(self.embed_dim, name="proj")(feat.astype(jnp.float32))
    return z, dict(inter, embedding=z)


def _loss_value(loss: str, z, w, labels, *, bias, where, step, kw: dict[str, Any]):
  kw = dict(kw)
  if loss == "a_softmax":
    kw["lambda_"] = L.sphereface_lambda(step, **kw.pop("lambda_schedule", {}))
  return L.margin_loss(loss, z, w, labels, bias=bias, where=where, **kw)


def margin_softmax_task(
  backbone: nn.Module,
  *,
  num_classes: int,
  embed_dim: int = 64,
  loss: str = "am_softmax",
  ir: bool = False,
  loss_kwargs: dict[str, Any] | None = None,
  center_momentum: float = 0.9,
  center_warmup_steps: int = 0,
  preprocess: Callable[[jax.Array], jax.Array] = image_to_float,
) -> Task:
  """Builds the train/eval task for one margin-softmax method.

  Args:
    backbone: flax module returning ``(features [B, F], intermediates)`` (``num_classes=None``).
    num_classes: number of training classes C.
    embed_dim: D, the embedding size after the linear projection.
    loss: one of ``LOSSES``.
    ir: if True the classifier weights are the (stop-gradient, normalised) class centres and the
      head has no trainable weights (IR-Softmax); else a learned ``[C, D]`` FC (plus a bias for
      ``softmax``).
    loss_kwargs: hyper-parameters of the loss (e.g. ``scale``, ``margin``; for ``a_softmax`` also
      ``lambda_schedule`` = kwargs of ``sphereface_lambda``).
    center_momentum: EMA momentum mu of the centre update (fraction of the old centre kept).
    center_warmup_steps: linear warm-up of mu from 0 (``ir_center_momentum``).
    preprocess: uint8 image batch -> float input.

  Returns:
    A :class:`Task`; its eval outputs are ``embedding`` (L2-normalised), ``pred`` (closed-set
    argmax over the head's scores) and ``label``.
  """
  if loss not in LOSSES:
    raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
  if num_classes < 1:
    raise ValueError(f"num_classes must be >= 1, got {num_classes}")
  net = EmbeddingNet(backbone, embed_dim)
  kw = dict(loss_kwargs or {})

  def init(rng, batch):
    r1, r2, r3 = jax.random.split(rng, 3)
    variables = net.init(r1, preprocess(batch["image"]), train=False)
    net_params, model_state = split_variables(variables)
    params = {"net": net_params}
    if not ir:
      params["head"] = {"w": 0.05 * jax.random.normal(r2, (num_classes, embed_dim), jnp.float32)}
      if loss == "softmax":
        params["head"]["b"] = jnp.zeros((num_classes,), jnp.float32)
    centers = L.l2_normalize(jax.random.normal(r3, (num_classes, embed_dim), jnp.float32))
    return params, model_state, {"centers": centers}

  def weights(params, extra):
    if ir:
      return L.ir_weights(extra["centers"]), None
    return params["head"]["w"], params["head"].get("b")

  def loss_fn(params, model_state, extra, batch, rng, step):
    (z, _), new_state = net.apply(
      {"params": params["net"], **model_state},
      preprocess(batch["image"]),
      train=True,
      mutable=list(model_state.keys()),
      rngs={"dropout": rng},
    )
    labels = batch["label"]
    where = batch.get("mask")
    w, b = weights(params, extra)
    per_ex = _loss_value(loss, z, w, labels, bias=b, where=where, step=step, kw=kw)
    total = masked_mean(per_ex, where)
    mu = L.ir_center_momentum(step, momentum=center_momentum, warmup_steps=center_warmup_steps)
    centers = L.update_class_centers(
      extra["centers"], jax.lax.stop_gradient(z), labels, momentum=mu, where=where
    )
    wn = L.l2_normalize(w)
    acc = jnp.mean((jnp.argmax(L.l2_normalize(z) @ wn.T, -1) == labels).astype(jnp.float32))
    metrics = {"train_accuracy": acc, "feature_norm": jnp.mean(jnp.linalg.norm(z, axis=-1))}
    return total, {
      "model_state": dict(new_state),
      "extra": {"centers": centers},
      "metrics": metrics,
    }

  def eval_fn(params, model_state, extra, batch):
    z, _ = net.apply(
      {"params": params["net"], **model_state}, preprocess(batch["image"]), train=False
    )
    w, b = weights(params, extra)
    if loss == "softmax":
      scores = z @ w.T + (b[None, :] if b is not None else 0.0)
    else:
      scores = L.l2_normalize(z) @ L.l2_normalize(w).T
    return {"embedding": L.l2_normalize(z), "pred": jnp.argmax(scores, -1), "label": batch["label"]}

  def summarize(out):
    return {"accuracy": float(np.mean(out["pred"] == out["label"]))}

  return Task(init=init, loss_fn=loss_fn, eval_fn=eval_fn, summarize=summarize)


def head_weights_and_centers(state, *, ir: bool) -> tuple[np.ndarray, np.ndarray]:
  """Host copies of the classifier weights (centres for IR) and the tracked centres ``[C, D]``."""
  centers = np.asarray(jax.device_get(state.extra["centers"]))
  if ir:
    return centers, centers
  return np.asarray(jax.device_get(state.params["head"]["w"])), centers
