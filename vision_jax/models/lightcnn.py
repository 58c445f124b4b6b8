"""LightCNN-9 and LightCNN-29 v2: max-feature-map (MFM) face-recognition backbones.

Input is grayscale ``[B, 128, 128, 1]`` in ``[0, 1]`` for the published models; other sizes work
(the flattened map size follows the input), each 2x2 pool floors odd sizes.

References:
  Wu, He, Sun, Tan. "A Light CNN for Deep Face Representation with Noisy Labels." IEEE TIFS 2018.
  arXiv:1511.02683. Layer lists follow AlfredXiangWu/LightCNN ``light_cnn.py`` (7b38a6f) and
  BradyFU/DVG-Face ``network/lightcnn.py`` (see shared/papers/ir_softmax-dvg_face-m2fpa.md §5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models.conv import Conv
from vision_jax.models.layers import check_nhwc, max_feature_map, max_plus_avg_pool, max_pool


class MFMConv(nn.Module):
  """Conv to ``2 * features`` channels (with bias), then max-feature-map to ``features``."""

  features: int
  kernel_size: int = 3
  padding: int = 1
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x):
    k, p = self.kernel_size, self.padding
    y = Conv(
      2 * self.features,
      (k, k),
      padding=((p, p), (p, p)),
      dtype=self.dtype,
      conv_impl=self.conv_impl,
      name="conv",
    )(x)
    return max_feature_map(y)


class MFMGroup(nn.Module):
  """LightCNN ``group``: MFM 1x1 (C_in -> C_in), then MFM kxk (C_in -> features)."""

  features: int
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x):
    x = MFMConv(x.shape[-1], 1, 0, self.dtype, self.conv_impl, name="conv_a")(x)
    return MFMConv(self.features, 3, 1, self.dtype, self.conv_impl, name="conv")(x)


class MFMResBlock(nn.Module):
  """LightCNN-29 v2 residual block: ``x + MFM3x3(MFM3x3(x))`` (no BN, no post-activation)."""

  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    y = MFMConv(c, 3, 1, self.dtype, self.conv_impl, name="conv1")(x)
    y = MFMConv(c, 3, 1, self.dtype, self.conv_impl, name="conv2")(y)
    return x + y


def _head(emb, train, dropout_rate, num_classes, use_bias, dtype):
  if num_classes is None:
    return emb
  h = nn.Dropout(dropout_rate, deterministic=not train or dropout_rate == 0.0)(emb)
  return nn.Dense(num_classes, use_bias=use_bias, dtype=dtype, name="fc2")(h).astype(jnp.float32)


class LightCNN9(nn.Module):
  """LightCNN-9: MFM conv 5x5 48, pool, groups 96 / 192 / 128 / 128 with pools, MFM-fc 256.

  Layers: ``MFM5x5(1->48)``, pool, ``group(48->96)``, pool, ``group(96->192)``, pool,
  ``group(192->128)``, ``group(128->128)``, pool, ``MFM-fc(H*W*128 -> 256)`` (the embedding),
  dropout, ``fc2(256 -> num_classes)`` with bias. Pools are 2x2/2 max-pools.

  Attributes:
    num_classes: logits size; ``None`` returns the 256-d embedding as output.
    dropout_rate: dropout before ``fc2`` in training (reference 0.5). Needs
      ``rngs={"dropout": key}`` in ``apply`` when > 0 and ``train=True``.
    dtype: compute dtype; params float32, outputs float32.
    conv_impl: ``"xla"`` | ``"einsum"`` | ``"auto"``.
    num_groups: how many of the four MFM groups to keep (4: LightCNN-9; fewer keeps
      ``group1..group<n>`` with their pools, a shallower net for tests, e.g. 1: ``MFM5x5``, pool,
      ``group1``, pool, ``MFM-fc``).

  Choice: ``dropout_rate`` defaults to 0 so that ``apply`` needs no rng (the train loop's model
    contract); the reference recipe sets 0.5. The flattened map is in NHWC (H, W, C) order, not
    PyTorch's (C, H, W): converted ``fc1`` weights must be permuted.
  """

  num_classes: int | None = None
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  conv_impl: str = "auto"
  num_groups: int = 4

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool):
    check_nhwc(x, "LightCNN9")
    if not 1 <= self.num_groups <= 4:
      raise ValueError(f"LightCNN9(num_groups={self.num_groups!r}): expected 1, 2, 3 or 4")
    x = x.astype(self.dtype)
    x = max_pool(MFMConv(48, 5, 2, self.dtype, self.conv_impl, name="conv1")(x))
    # (features, pool after) of group1..group4
    for i, (c, pool) in enumerate(((96, True), (192, True), (128, False), (128, True))):
      if i >= self.num_groups:
        break
      x = MFMGroup(c, self.dtype, self.conv_impl, name=f"group{i + 1}")(x)
      x = max_pool(x) if pool else x
    feat = x
    x = x.reshape(x.shape[0], -1)
    emb = max_feature_map(nn.Dense(2 * 256, dtype=self.dtype, name="fc1")(x)).astype(jnp.float32)
    out = _head(emb, train, self.dropout_rate, self.num_classes, True, self.dtype)
    return out, {"features": feat, "embedding": emb}


class LightCNN29v2(nn.Module):
  """LightCNN-29 v2: MFM convs with residual blocks (1, 2, 3, 4), max+avg pooling, fc 256.

  Layers: ``MFM5x5(1->48)``, pool, ``1 x res(48)``, ``group(48->96)``, pool, ``2 x res(96)``,
  ``group(96->192)``, pool, ``3 x res(192)``, ``group(192->128)``, ``4 x res(128)``,
  ``group(128->128)``, pool, plain ``fc(H*W*128 -> 256)`` (the embedding), dropout,
  ``fc2(256 -> num_classes)`` without bias. Every pool is ``max_pool2x2 + avg_pool2x2``.

  Attributes:
    num_classes: logits size; ``None`` returns the 256-d embedding as output.
    layers: residual blocks per stage.
    dropout_rate: dropout before ``fc2`` in training (reference 0.5). Needs
      ``rngs={"dropout": key}`` in ``apply`` when > 0 and ``train=True``.
    dtype: compute dtype; params float32, outputs float32.
    conv_impl: ``"xla"`` | ``"einsum"`` | ``"auto"``.

  Choice: as `LightCNN9` (dropout default 0; NHWC flatten order).
  """

  num_classes: int | None = None
  layers: Sequence[int] = (1, 2, 3, 4)
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool):
    check_nhwc(x, "LightCNN29v2")
    d, ci = self.dtype, self.conv_impl
    x = x.astype(d)
    x = max_plus_avg_pool(MFMConv(48, 5, 2, d, ci, name="conv1")(x))
    group_out = (96, 192, 128, 128)
    for s in range(4):
      for b in range(self.layers[s]):
        x = MFMResBlock(d, ci, name=f"block{s + 1}_{b + 1}")(x)
      x = MFMGroup(group_out[s], d, ci, name=f"group{s + 1}")(x)
      if s != 2:  # no pool between stage 3 and stage 4
        x = max_plus_avg_pool(x)
    feat = x
    x = x.reshape(x.shape[0], -1)
    emb = nn.Dense(256, dtype=d, name="fc")(x).astype(jnp.float32)
    out = _head(emb, train, self.dropout_rate, self.num_classes, False, d)
    return out, {"features": feat, "embedding": emb}
