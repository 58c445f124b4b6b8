"""Multi-label video classification as a :class:`~vision_jax.train.Task`.

Batch layout (every model in :mod:`vision_jax.video.model`): one array per modality
``batch[k] [B, T, D_k]`` (float32, or uint8 quantised as YouTube-8M stores it, dequantised on
device), ``num_frames [B]`` int and multi-hot ``labels [B, C]``. Eval batches also carry the
trainer's example ``mask [B]``.

Loss (the starter code's ``CrossEntropyLoss``): per video the sum over classes of the binary
cross-entropy, averaged over the batch,
:math:`\\mathcal L = -\\frac1B \\sum_b \\sum_c y_{bc} \\log p_{bc} + (1 - y_{bc}) \\log(1-p_{bc})`.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.data.youtube8m import dequantize
from vision_jax.metrics.video import youtube8m_metrics
from vision_jax.train.step import Task


def frame_mask(num_frames: jax.Array, max_frames: int) -> jax.Array:
  """``[B] -> [B, T]`` bool, True for the first ``num_frames[b]`` frames."""
  return jnp.arange(max_frames, dtype=jnp.int32)[None, :] < num_frames[:, None].astype(jnp.int32)


def _features(batch, keys):
  out = {}
  for k in keys:
    x = batch[k]
    out[k] = dequantize(x) if x.dtype == jnp.uint8 else x.astype(jnp.float32)
  return out


def video_classification_task(
  model: nn.Module,
  *,
  num_classes: int,
  feature_keys: Sequence[str] = ("rgb", "audio"),
  top_k: int = 20,
) -> Task:
  """Sigmoid cross-entropy training and GAP@k / Hit@1 / PERR / mAP evaluation for ``model``.

  Args:
    model: ``model.apply(variables, features, mask, train=...) -> (log_p, log_1mp)``.
    num_classes: ``C``; ``labels`` must be ``[B, C]``.
    feature_keys: batch keys of the modalities.
    top_k: ``k`` of GAP@k and mAP.

  Returns:
    A :class:`Task` whose ``summarize`` reports ``gap``, ``hit_at_1``, ``perr``, ``map``, ``loss``.

  Raises:
    ValueError: ``num_classes`` or ``top_k`` not a positive integer, or no ``feature_keys``.
  """
  for name, v in (("num_classes", num_classes), ("top_k", top_k)):
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
      raise ValueError(f"video_classification_task: {name}={v!r}; expected a positive integer")
  keys = tuple(feature_keys)
  if not keys:
    raise ValueError("video_classification_task: feature_keys is empty; e.g. ('rgb', 'audio')")

  def forward(params, batch, train, rng=None):
    t = batch[keys[0]].shape[1]
    mask = frame_mask(batch["num_frames"], t)
    rngs = {"dropout": rng} if rng is not None else {}
    return model.apply({"params": params}, _features(batch, keys), mask, train=train, rngs=rngs)

  def per_video_loss(log_p, log_1mp, labels):
    if labels.shape != log_p.shape:
      raise ValueError(f"labels must be [B, {num_classes}]; got {labels.shape}")
    y = labels.astype(jnp.float32)
    return -jnp.sum(y * log_p + (1.0 - y) * log_1mp, axis=-1)

  def init(rng, batch):
    t = batch[keys[0]].shape[1]
    variables = model.init(rng, _features(batch, keys), frame_mask(batch["num_frames"], t))
    return variables["params"], {}, {}

  def loss_fn(params, model_state, extra, batch, rng, step):
    del step
    log_p, log_1mp = forward(params, batch, True, rng)
    loss = jnp.mean(per_video_loss(log_p, log_1mp, batch["labels"]))
    y = batch["labels"] > 0
    hit = jnp.take_along_axis(y, jnp.argmax(log_p, axis=-1)[:, None], axis=-1)
    return loss, {
      "model_state": model_state,
      "extra": extra,
      "metrics": {"train_hit_at_1": jnp.mean(hit.astype(jnp.float32))},
    }

  def eval_fn(params, model_state, extra, batch):
    log_p, log_1mp = forward(params, batch, False)
    return {
      "scores": jnp.exp(log_p),
      "labels": batch["labels"],
      "loss": per_video_loss(log_p, log_1mp, batch["labels"]),
    }

  def summarize(out):
    res = youtube8m_metrics(out["scores"], out["labels"], top_k)
    res["loss"] = float(np.mean(out["loss"]))
    res["num_videos"] = float(out["scores"].shape[0])
    return res

  return Task(init=init, loss_fn=loss_fn, eval_fn=eval_fn, summarize=summarize)


def param_count(params) -> int:
  """Number of scalars in a params pytree."""
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))
