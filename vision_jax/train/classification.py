"""Supervised classification as a :class:`~vision_jax.train.Task` (softmax cross-entropy).

The baseline every method is compared against, and the foundation's end-to-end proof
(``experiments/classification``).
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vision_jax.data.transforms import image_to_float
from vision_jax.train.state import split_variables
from vision_jax.train.step import Task
from vision_jax.utils.arrays import masked_mean


def classification_task(
  model: nn.Module,
  *,
  num_classes: int,
  preprocess: Callable[[jax.Array], jax.Array] = image_to_float,
  label_smoothing: float = 0.0,
) -> Task:
  """Softmax cross-entropy classification with BatchNorm state and top-1 accuracy eval.

  ``model.apply(variables, x, train=...)`` must return ``(logits [B, C], intermediates)``.
  """

  def init(rng, batch):
    variables = model.init(rng, preprocess(batch["image"]), train=False)
    return *split_variables(variables), {}

  def loss_fn(params, model_state, extra, batch, rng, step):
    del step
    (logits, _), new_state = model.apply(
      {"params": params, **model_state},
      preprocess(batch["image"]),
      train=True,
      mutable=list(model_state.keys()),
      rngs={"dropout": rng},
    )
    labels = batch["label"]
    onehot = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
    per_ex = optax.softmax_cross_entropy(logits.astype(jnp.float32), onehot)
    mask = batch.get("mask")
    loss = masked_mean(per_ex, mask)
    acc = masked_mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32), mask)
    return loss, {
      "model_state": dict(new_state),
      "extra": extra,
      "metrics": {"train_accuracy": acc},
    }

  def eval_fn(params, model_state, extra, batch):
    logits, _ = model.apply(
      {"params": params, **model_state}, preprocess(batch["image"]), train=False
    )
    per_ex = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), batch["label"]
    )
    return {
      "correct": jnp.argmax(logits, -1) == batch["label"],
      "loss": per_ex,
      "label": batch["label"],
    }

  def summarize(out):
    return {
      "accuracy": float(np.mean(out["correct"])),
      "loss": float(np.mean(out["loss"])),
      "num_examples": float(out["correct"].shape[0]),
    }

  return Task(init=init, loss_fn=loss_fn, eval_fn=eval_fn, summarize=summarize)
