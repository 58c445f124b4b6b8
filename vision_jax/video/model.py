"""DCGN (deep convolutional graph network) over frame sequences, and its baselines.

All models take ``features: dict[str, [B, T, D_k]]`` (e.g. ``rgb`` 1024 + ``audio`` 128 for
YouTube-8M) and ``mask [B, T]`` (True for real frames) and return ``(log_p, log_1mp)``, each
``[B, C]``: the log-probability that each label is present / absent. Scores are ``exp(log_p)``.
A padded frame changes nothing: every layer multiplies by the mask, adjacency/softmax/pooling
ignore padded nodes, and the LSTM reads its carry at the last real frame.

DCGN, one level ``l`` (levels frame -> shot -> event -> video):

.. math::
   \\hat A^{l} = \\mathrm{norm}(\\cos(h^{l-1})), \\qquad
   c^{l}_i = \\mathrm{ReLU}\\Big(\\mathrm{LN}\\big(\\textstyle\\sum_{r<K_l}
      (\\hat A^{l} h^{l-1})_{i K_l + r} W^{l}_r\\big)\\Big), \\qquad
   h^{l}_j = \\mathrm{pool}_{i \\in [j P_l, (j+1) P_l)} c^{l}_i,

with node convolution kernel = stride ``K_l`` and pooling window ``P_l``; ``pool`` is the masked
average or self-attention pooling :math:`\\sum_i \\alpha_i c_i`,
:math:`\\alpha = \\mathrm{softmax}_{window}(c W_{att} + b)`. The adjacency is recomputed from
each level's own nodes. ``h^0`` is the concatenation of the modalities, so the first graph is
the cosine graph of the pretrained frame features, as in the paper.

Choice: LayerNorm after each node convolution (the paper's normalisation is not known);
  readout = masked mean concatenated with masked max over the last level's nodes (the paper
  pools down to one "video" node; with a fixed frame budget the last level may keep a few);
  RGB and audio are fused early by concatenation (as the YouTube-8M starter code's frame-level
  models do), which the first node convolution projects to ``hidden``. Each is a config field.

References:
  Mao, Wu, Xue, Zhang. "Hierarchical Video Frame Sequence Representation with Deep Convolutional
  Graph Network." ECCV 2018 Workshops (arXiv:1906.00377).
  Abu-El-Haija et al. "YouTube-8M: A Large-Scale Video Classification Benchmark."
  arXiv:1609.08675 (starter-code MoE and LSTM baselines).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.utils.arrays import masked_mean
from vision_jax.video import graph as graph_lib

POOLINGS = ("avg", "attention")
HEADS = ("logistic", "moe")
ADJACENCIES = ("dense", "knn")


def fuse_features(features: Mapping[str, jax.Array], keys: Sequence[str]) -> jax.Array:
  """Concatenates ``features[k]`` for ``k in keys`` on the last axis (float32).

  Raises:
    KeyError: a key is missing (names it and the keys present).
    ValueError: the modalities disagree on ``[B, T]`` or are not rank 3.
  """
  missing = [k for k in keys if k not in features]
  if missing:
    raise KeyError(f"features lack {missing}; present: {sorted(features)}")
  xs = [jnp.asarray(features[k], jnp.float32) for k in keys]
  lead = {k: x.shape[:-1] for k, x in zip(keys, xs)}
  if any(x.ndim != 3 for x in xs) or len(set(lead.values())) != 1:
    raise ValueError(f"features must all be [B, T, D_k] with the same B, T; got {lead}")
  return jnp.concatenate(xs, axis=-1)


def _mask_f(mask):
  return mask.astype(jnp.float32)[..., None]


def _inputs(features, mask, keys):
  """Fused frames ``[B, T, D]`` with padding zeroed, and the bool mask (shape-checked)."""
  x = fuse_features(features, keys)
  if mask.shape != x.shape[:2]:
    raise ValueError(f"mask must be [B, T] = {x.shape[:2]}; got {mask.shape}")
  mask = mask.astype(bool)
  return x * _mask_f(mask), mask


def _windows(x, mask, size):
  """``[B, N, D] -> [B, ceil(N/size), size, D]`` (zero-padded) and the window mask."""
  b, n, d = x.shape
  n2 = -(-n // size) * size
  x = jnp.pad(x, ((0, 0), (0, n2 - n), (0, 0))).reshape(b, n2 // size, size, d)
  m = jnp.pad(mask.astype(bool), ((0, 0), (0, n2 - n))).reshape(b, n2 // size, size)
  return x, m


class NodeConv(nn.Module):
  """Convolution over ``kernel`` consecutive nodes with stride ``kernel``.

  :math:`c_i = \\sum_{r < K} h_{iK + r} W_r` = reshape ``[B, N/K, K D]`` then a dense layer.
  A window is valid when any of its nodes is; padded nodes are zero, so they add nothing.

  Attributes:
    features: output width.
    kernel: ``K`` (= stride).
  """

  features: int
  kernel: int = 1

  @nn.compact
  def __call__(self, h: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    if self.kernel < 1:
      raise ValueError(f"NodeConv kernel={self.kernel}; expected >= 1")
    w, wm = _windows(h * _mask_f(mask), mask, self.kernel)
    b, n, k, d = w.shape
    out = nn.Dense(self.features, name="proj")(w.reshape(b, n, k * d))
    new_mask = jnp.any(wm, axis=-1)
    return out * _mask_f(new_mask), new_mask


class GraphPool(nn.Module):
  """Average or self-attention pooling over non-overlapping windows of ``window`` nodes.

  Attention: :math:`\\alpha = \\mathrm{softmax}_{valid\\ nodes\\ of\\ the\\ window}(h W + b)`,
  :math:`W \\in R^{D \\times 1}`; with equal logits it is the masked average.
  """

  window: int
  kind: str = "avg"

  @nn.compact
  def __call__(self, h: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    if self.kind not in POOLINGS:
      raise ValueError(f"pooling={self.kind!r}; valid: {', '.join(POOLINGS)}")
    if self.window < 1:
      raise ValueError(f"pool window={self.window}; expected >= 1")
    w, wm = _windows(h, mask, self.window)
    new_mask = jnp.any(wm, axis=-1)
    if self.kind == "avg":
      out = masked_mean(w, wm, axis=2)
    else:
      logits = nn.Dense(1, name="att")(w)[..., 0]
      alpha = jax.nn.softmax(jnp.where(wm, logits, graph_lib._NEG), axis=-1)
      alpha = alpha * wm.astype(jnp.float32)
      out = jnp.einsum("bnk,bnkd->bnd", alpha, w)
    return out * _mask_f(new_mask), new_mask


class MultiLabelHead(nn.Module):
  """Multi-label classifier returning ``(log p, log (1 - p))`` per class.

  ``"logistic"``: :math:`p = \\sigma(x W + b)`. ``"moe"`` (the starter code's
  ``MoeModel``): :math:`p_c = \\sum_{m<M} g_{cm} \\sigma(e_{cm})`, gates
  :math:`g_c = \\mathrm{softmax}(\\cdot)` over ``M + 1`` entries whose last is a dummy expert with
  :math:`p = 0`; computed in log space for a stable cross-entropy.
  """

  num_classes: int
  kind: str = "moe"
  num_mixtures: int = 2

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    if self.kind not in HEADS:
      raise ValueError(f"head={self.kind!r}; valid: {', '.join(HEADS)}")
    if self.kind == "logistic":
      z = nn.Dense(self.num_classes, name="logits")(x).astype(jnp.float32)
      return jax.nn.log_sigmoid(z), jax.nn.log_sigmoid(-z)
    m, c = self.num_mixtures, self.num_classes
    gates = nn.Dense(c * (m + 1), name="gates")(x).reshape(*x.shape[:-1], c, m + 1)
    experts = nn.Dense(c * m, name="experts")(x).reshape(*x.shape[:-1], c, m)
    log_g = jax.nn.log_softmax(gates.astype(jnp.float32), axis=-1)
    e = experts.astype(jnp.float32)
    log_p = jax.nn.logsumexp(log_g[..., :m] + jax.nn.log_sigmoid(e), axis=-1)
    log_1mp = jax.nn.logsumexp(
      jnp.concatenate([log_g[..., :m] + jax.nn.log_sigmoid(-e), log_g[..., m:]], axis=-1),
      axis=-1,
    )
    return log_p, log_1mp


class DCGN(nn.Module):
  """Deep convolutional graph network: levels of (graph conv with node conv, pooling).

  Attributes:
    num_classes: labels (3862 for YouTube-8M 2018).
    feature_keys: modalities, concatenated in this order.
    hidden: width of every level.
    conv_kernels: node-conv kernel = stride ``K_l`` per level (its length = number of levels).
    pool_windows: pooling window ``P_l`` per level (same length; 1 = no pooling).
    pooling: ``"avg"`` | ``"attention"``.
    adjacency: ``"dense"`` | ``"knn"``; knn_k: neighbours of the kNN graph.
    adjacency_norm: ``"relu"`` | ``"softmax"``; temperature: softmax temperature.
    layer_norm: LayerNorm after each node convolution.
    readout: ``"meanmax"`` | ``"mean"`` over the last level's nodes.
    head: ``"moe"`` | ``"logistic"``; num_mixtures: MoE experts.
    dropout: before the head.
  """

  num_classes: int
  feature_keys: Sequence[str] = ("rgb", "audio")
  hidden: int = 256
  conv_kernels: Sequence[int] = (2, 2, 1)
  pool_windows: Sequence[int] = (5, 5, 3)
  pooling: str = "attention"
  adjacency: str = "dense"
  knn_k: int = 16
  adjacency_norm: str = "relu"
  temperature: float = 1.0
  layer_norm: bool = True
  readout: str = "meanmax"
  head: str = "moe"
  num_mixtures: int = 2
  dropout: float = 0.0

  @nn.compact
  def __call__(self, features, mask, *, train: bool = False):
    if len(self.conv_kernels) != len(self.pool_windows) or not self.conv_kernels:
      raise ValueError(
        f"conv_kernels {tuple(self.conv_kernels)} and pool_windows {tuple(self.pool_windows)} "
        "must be non-empty and of equal length (one entry per level)"
      )
    if self.adjacency not in ADJACENCIES:
      raise ValueError(f"adjacency={self.adjacency!r}; valid: {', '.join(ADJACENCIES)}")
    if self.readout not in ("meanmax", "mean"):
      raise ValueError(f"readout={self.readout!r}; valid: meanmax, mean")
    h, mask = _inputs(features, mask, self.feature_keys)
    for lvl, (k, p) in enumerate(zip(self.conv_kernels, self.pool_windows)):
      if self.adjacency == "dense":
        a = graph_lib.dense_adjacency(
          h, mask, norm=self.adjacency_norm, temperature=self.temperature
        )
        h = graph_lib.propagate_dense(a, h)
      else:
        g = graph_lib.knn_adjacency(
          h,
          mask,
          k=int(self.knn_k),
          norm=self.adjacency_norm,
          temperature=self.temperature,
        )
        h = graph_lib.propagate_knn(g, h)
      h, mask = NodeConv(self.hidden, int(k), name=f"conv{lvl}")(h, mask)
      if self.layer_norm:
        h = nn.LayerNorm(name=f"ln{lvl}")(h)
      h = nn.relu(h) * _mask_f(mask)
      h, mask = GraphPool(int(p), self.pooling, name=f"pool{lvl}")(h, mask)
    v = masked_mean(h, mask, axis=1)
    if self.readout == "meanmax":
      v = jnp.concatenate([v, jnp.max(jnp.where(mask[..., None], h, 0.0), axis=1)], axis=-1)
    v = nn.Dropout(self.dropout, deterministic=not train)(v)
    return MultiLabelHead(self.num_classes, self.head, self.num_mixtures, name="head")(v)


class MeanPoolModel(nn.Module):
  """Baseline: masked mean over frames -> MLP -> multi-label head (starter video-level MoE).

  Attributes:
    num_classes, feature_keys, head, num_mixtures, dropout: as :class:`DCGN`.
    hidden: widths of the MLP's hidden layers (empty: head on the mean directly).
  """

  num_classes: int
  feature_keys: Sequence[str] = ("rgb", "audio")
  hidden: Sequence[int] = (256,)
  head: str = "moe"
  num_mixtures: int = 2
  dropout: float = 0.0

  @nn.compact
  def __call__(self, features, mask, *, train: bool = False):
    x, mask = _inputs(features, mask, self.feature_keys)
    v = masked_mean(x, mask, axis=1)
    for i, w in enumerate(self.hidden):
      v = nn.relu(nn.Dense(int(w), name=f"fc{i}")(v))
    v = nn.Dropout(self.dropout, deterministic=not train)(v)
    return MultiLabelHead(self.num_classes, self.head, self.num_mixtures, name="head")(v)


class LstmModel(nn.Module):
  """Baseline: stacked LSTM over frames, last real frame's state -> head (starter ``LstmModel``).

  Attributes:
    num_classes, feature_keys, head, num_mixtures, dropout: as :class:`DCGN`.
    hidden: LSTM cells per layer; num_layers: stacked layers (starter: 2 x 1024).
    unroll: time steps per loop iteration of the scan (speed only; same result).
  """

  num_classes: int
  feature_keys: Sequence[str] = ("rgb", "audio")
  hidden: int = 256
  num_layers: int = 2
  head: str = "moe"
  num_mixtures: int = 2
  dropout: float = 0.0
  unroll: int = 1

  @nn.compact
  def __call__(self, features, mask, *, train: bool = False):
    x, mask = _inputs(features, mask, self.feature_keys)
    lengths = jnp.maximum(jnp.sum(mask.astype(jnp.int32), axis=1), 1)
    carry = None
    for i in range(self.num_layers):
      rnn = nn.RNN(
        nn.OptimizedLSTMCell(self.hidden), return_carry=True, unroll=self.unroll, name=f"lstm{i}"
      )
      carry, x = rnn(x, seq_lengths=lengths)
    v = carry[1]  # (c, h): the last layer's hidden state at each video's last real frame
    v = nn.Dropout(self.dropout, deterministic=not train)(v)
    return MultiLabelHead(self.num_classes, self.head, self.num_mixtures, name="head")(v)


MODELS = {"dcgn": DCGN, "meanpool": MeanPoolModel, "lstm": LstmModel}


def video_model(name: str, num_classes: int, **kwargs) -> nn.Module:
  """``MODELS[name](num_classes=num_classes, **kwargs)``; raises ValueError on an unknown name."""
  if name not in MODELS:
    raise ValueError(f"unknown video model {name!r}; valid: {', '.join(MODELS)}")
  return MODELS[name](num_classes=num_classes, **kwargs)
