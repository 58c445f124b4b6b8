"""ResNet-18/34/50 with CIFAR (3x3 conv, no max-pool) and ImageNet (7x7/2 + max-pool) stems."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models.conv import Conv
from vision_jax.models.layers import batch_norm, check_nhwc, global_avg_pool, max_pool

STEMS = ("cifar", "imagenet")

# He et al. init as in torchvision (kaiming_normal_, mode="fan_out", nonlinearity="relu").
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _conv(dtype, conv_impl, **kwargs):
  """The bias-free, He-initialised conv every ResNet layer uses."""
  return functools.partial(
    Conv, use_bias=False, dtype=dtype, conv_impl=conv_impl, kernel_init=_conv_init, **kwargs
  )


class _Block(nn.Module):
  """Fields shared by :class:`BasicBlock` and :class:`Bottleneck`."""

  features: int
  strides: int = 1
  dtype: Any = jnp.float32
  conv_impl: str = "auto"
  zero_init_residual: bool = False


class BasicBlock(_Block):
  """Two 3x3 convs with BN; identity or 1x1-conv+BN projection shortcut (expansion 1)."""

  expansion = 1

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv = _conv(self.dtype, self.conv_impl)
    y = conv(self.features, (3, 3), (self.strides, self.strides), padding=((1, 1), (1, 1)))(x)
    y = nn.relu(batch_norm(train, self.dtype)(y))
    y = conv(self.features, (3, 3), padding=((1, 1), (1, 1)))(y)
    y = batch_norm(train, self.dtype, zero_scale=self.zero_init_residual)(y)
    if x.shape != y.shape:
      x = conv(self.features, (1, 1), (self.strides, self.strides), padding="VALID")(x)
      x = batch_norm(train, self.dtype)(x)
    return nn.relu(x + y)


class Bottleneck(_Block):
  """1x1 -> 3x3 (stride here, "ResNet v1.5" as torchvision) -> 1x1 x4, BN after each."""

  expansion = 4

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv = _conv(self.dtype, self.conv_impl)
    y = conv(self.features, (1, 1), padding="VALID")(x)
    y = nn.relu(batch_norm(train, self.dtype)(y))
    y = conv(self.features, (3, 3), (self.strides, self.strides), padding=((1, 1), (1, 1)))(y)
    y = nn.relu(batch_norm(train, self.dtype)(y))
    y = conv(self.features * 4, (1, 1), padding="VALID")(y)
    y = batch_norm(train, self.dtype, zero_scale=self.zero_init_residual)(y)
    if x.shape != y.shape:
      x = conv(self.features * 4, (1, 1), (self.strides, self.strides), padding="VALID")(x)
      x = batch_norm(train, self.dtype)(x)
    return nn.relu(x + y)


class ResNet(nn.Module):
  """ResNet v1.5 (torchvision layout) returning ``(output, intermediates)``.

  The embedding is the global-average-pooled output of the last stage, ``[B, 512 * width *
  expansion]`` (512 for ResNet-18/34, 2048 for ResNet-50 at ``width=1``).

  Attributes:
    stage_sizes: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
    block: `BasicBlock` or `Bottleneck`.
    num_classes: logits size; ``None`` returns the embedding as output.
    stem: ``"cifar"`` (3x3/1 conv, no max-pool; for 32x32 inputs) or ``"imagenet"`` (7x7/2 conv +
      3x3/2 max-pool).
    width: channel multiplier on the base widths 64/128/256/512 (rounded, at least 1).
    zero_init_residual: init the last BN gamma of each block to 0 (Goyal et al. 2017).
    dtype: compute dtype; params are float32, logits/embedding are returned in float32.
    conv_impl: ``"xla"`` | ``"einsum"`` | ``"auto"``, see `vision_jax.models.conv2d`.

  References:
    He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition." CVPR 2016.
    arXiv:1512.03385. Goyal et al. "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour."
    2017. arXiv:1706.02677 (zero-init residual gamma).

  Choice: stride-2 on the 3x3 conv of the bottleneck (torchvision's "v1.5"), not on the 1x1 as in
    the paper; the CIFAR stem follows the common 3x3/1 no-max-pool variant (He et al. used a
    different, narrower 6n+2 net for CIFAR).
  """

  stage_sizes: Sequence[int]
  block: Any = BasicBlock
  num_classes: int | None = 1000
  stem: str = "imagenet"
  width: float = 1.0
  zero_init_residual: bool = False
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool):
    check_nhwc(x, "ResNet")
    if self.stem not in STEMS:
      raise ValueError(f"ResNet stem must be one of {STEMS}; got {self.stem!r}")
    w = lambda c: max(1, int(round(c * self.width)))
    x = x.astype(self.dtype)
    stem_conv = _conv(self.dtype, self.conv_impl, name="stem_conv")
    if self.stem == "cifar":
      x = stem_conv(w(64), (3, 3), padding=((1, 1), (1, 1)))(x)
    else:
      x = stem_conv(w(64), (7, 7), (2, 2), padding=((3, 3), (3, 3)))(x)
    x = nn.relu(batch_norm(train, self.dtype, name="stem_bn")(x))
    if self.stem == "imagenet":
      x = max_pool(x, 3, 2, padding=((1, 1), (1, 1)))
    intermediates = {"stem": x}
    for i, n in enumerate(self.stage_sizes):
      for j in range(n):
        x = self.block(
          w(64 * 2**i),
          strides=2 if (i > 0 and j == 0) else 1,
          dtype=self.dtype,
          conv_impl=self.conv_impl,
          zero_init_residual=self.zero_init_residual,
          name=f"stage{i + 1}_block{j + 1}",
        )(x, train=train)
      intermediates[f"stage{i + 1}"] = x
    emb = global_avg_pool(x).astype(jnp.float32)
    intermediates["embedding"] = emb
    if self.num_classes is None:
      return emb, intermediates
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(emb)
    return logits.astype(jnp.float32), intermediates


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block=BasicBlock)
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block=Bottleneck)
