"""Few-shot backbones: Conv-4 (Vinyals et al. / Snell et al.) and ResNet-12 (Oreshkin et al.).

Both follow the `get_model` contract: ``(output, intermediates)`` with ``output`` the embedding
``[B, D]`` when ``num_classes=None`` (the default: few-shot heads are metric heads on the
embedding) or float32 logits from a linear ``head`` (pre-training, e.g. a base-class classifier);
BN stats live in ``batch_stats``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models.conv import Conv
from vision_jax.models.layers import batch_norm, check_nhwc, global_avg_pool, max_pool


def _head(module: nn.Module, emb: jax.Array, inter: dict):
  inter["embedding"] = emb
  if module.num_classes is None:
    return emb, inter
  logits = nn.Dense(module.num_classes, dtype=module.dtype, name="head")(emb)
  return logits.astype(jnp.float32), inter


class Conv4(nn.Module):
  """``4 x [conv3x3-C, BN, ReLU, maxpool2]``, flattened: the few-shot "Conv-4-C" embedding.

  On 84x84 input the output is ``5 * 5 * C`` (1,600 for C = 64, as in ProtoNet on miniImageNet);
  on 28x28 it is ``1 * 1 * C`` (Omniglot's 64-d embedding).

  Attributes:
    width: channels C of every conv (64 in the literature).
    num_classes: logits size; ``None`` (default) returns the embedding.
    depth: number of conv blocks (4).
    dtype: compute dtype; params float32, embedding float32.
    conv_impl: see `vision_jax.models.conv2d`.

  References:
    Snell, Swersky, Zemel. "Prototypical Networks for Few-shot Learning." NeurIPS 2017,
    arXiv:1703.05175.

  Choice: conv with bias off (BN follows); max-pooling floors odd sizes (VALID), like PyTorch's
    ``MaxPool2d(2)`` in the reference code.
  """

  width: int = 64
  depth: int = 4
  dtype: Any = jnp.float32
  conv_impl: str = "auto"
  num_classes: int | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool):
    check_nhwc(x, "Conv4")
    if x.shape[1] < 2**self.depth or x.shape[2] < 2**self.depth:
      raise ValueError(
        f"Conv4 with depth={self.depth} needs H, W >= {2**self.depth}; got {x.shape}"
      )
    x = x.astype(self.dtype)
    inter = {}
    for i in range(self.depth):
      x = Conv(
        self.width, (3, 3), use_bias=False, dtype=self.dtype, conv_impl=self.conv_impl,
        name=f"conv{i + 1}",
      )(x)  # fmt: skip
      x = max_pool(nn.relu(batch_norm(train, self.dtype, name=f"bn{i + 1}")(x)), 2)
      inter[f"block{i + 1}"] = x
    emb = x.reshape(x.shape[0], -1).astype(jnp.float32)
    return _head(self, emb, inter)


class ResNet12Block(nn.Module):
  """``3 x [conv3x3, BN, LeakyReLU(0.1)]`` (no activation after the 3rd BN) + 1x1-conv-BN
  shortcut, add, LeakyReLU, 2x2 max-pool."""

  features: int
  dtype: Any = jnp.float32
  conv_impl: str = "auto"
  slope: float = 0.1

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv = functools.partial(Conv, use_bias=False, dtype=self.dtype, conv_impl=self.conv_impl)
    y = x
    for i in range(3):
      y = conv(self.features, (3, 3), name=f"conv{i + 1}")(y)
      y = batch_norm(train, self.dtype, name=f"bn{i + 1}")(y)
      if i < 2:
        y = nn.leaky_relu(y, self.slope)
    s = conv(self.features, (1, 1), name="shortcut_conv")(x)
    s = batch_norm(train, self.dtype, name="shortcut_bn")(s)
    return max_pool(nn.leaky_relu(y + s, self.slope), 2)


class ResNet12(nn.Module):
  """ResNet-12: four `ResNet12Block` stages (widths 64-160-320-640), global average pool.

  84x84 input -> 5x5x640 -> 640-d embedding (the MetaOptNet / TADAM / FEAT backbone).

  Attributes:
    widths: channels of the four stages.
    num_classes: logits size; ``None`` (default) returns the embedding.
    dtype: compute dtype; params float32, embedding float32.
    conv_impl: see `vision_jax.models.conv2d`.

  References:
    Oreshkin, Rodriguez, Lacoste. "TADAM: Task dependent adaptive metric for improved few-shot
    learning." NeurIPS 2018, arXiv:1805.10123. Lee, Maji, Ravichandran, Soatto. "Meta-Learning with
    Differentiable Convex Optimization." CVPR 2019, arXiv:1904.03758 (64-160-320-640).

  Choice: no DropBlock (MetaOptNet regularises with it); LeakyReLU slope 0.1 as MetaOptNet.
  """

  widths: Sequence[int] = (64, 160, 320, 640)
  dtype: Any = jnp.float32
  conv_impl: str = "auto"
  num_classes: int | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool):
    check_nhwc(x, "ResNet12")
    x = x.astype(self.dtype)
    inter = {}
    for i, w in enumerate(self.widths):
      x = ResNet12Block(w, dtype=self.dtype, conv_impl=self.conv_impl, name=f"block{i + 1}")(
        x, train=train
      )
      inter[f"block{i + 1}"] = x
    emb = global_avg_pool(x).astype(jnp.float32)
    return _head(self, emb, inter)
