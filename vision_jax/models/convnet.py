"""A small BN ConvNet for 28x28 grayscale (Fashion-MNIST) and other small images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models.conv import Conv
from vision_jax.models.layers import batch_norm, check_nhwc, max_pool


class ConvNet(nn.Module):
  """``[conv3x3-BN-ReLU] x2 -> maxpool2 -> [conv3x3-BN-ReLU] x2 -> maxpool2 -> dense-BN-ReLU``.

  With the default ``widths=(32, 32, 64, 64)`` and ``hidden=128`` on ``28x28x1`` input it has
  about 0.47M parameters (10 classes); the flattened ``7x7x64`` map feeds the ``hidden``-d
  embedding layer, then the classifier.

  Attributes:
    num_classes: logits size; ``None`` returns the embedding as output.
    widths: output channels of the convs; a max-pool follows every second conv.
    hidden: embedding size (dense layer after the conv trunk).
    dtype: compute dtype; params float32, outputs float32.
    conv_impl: ``"xla"`` | ``"einsum"`` | ``"auto"``, see `vision_jax.models.conv2d`.

  Choice: flatten + dense rather than global average pooling, because it reaches >= 90%
    Fashion-MNIST test accuracy in fewer epochs, which matters on a 2-core CPU.
  """

  num_classes: int | None = 10
  widths: Sequence[int] = (32, 32, 64, 64)
  hidden: int = 128
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool):
    check_nhwc(x, "ConvNet")
    x = x.astype(self.dtype)
    intermediates = {}
    for i, c in enumerate(self.widths):
      x = Conv(
        c, (3, 3), use_bias=False, dtype=self.dtype, conv_impl=self.conv_impl, name=f"conv{i + 1}"
      )(x)
      x = nn.relu(batch_norm(train, self.dtype, name=f"bn{i + 1}")(x))
      if i % 2 == 1:
        x = max_pool(x, 2)
        intermediates[f"block{i // 2 + 1}"] = x
    x = x.reshape(x.shape[0], -1)
    x = nn.Dense(self.hidden, use_bias=False, dtype=self.dtype, name="fc")(x)
    emb = nn.relu(batch_norm(train, self.dtype, name="fc_bn")(x)).astype(jnp.float32)
    intermediates["embedding"] = emb
    if self.num_classes is None:
      return emb, intermediates
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(emb)
    return logits.astype(jnp.float32), intermediates
