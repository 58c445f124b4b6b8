"""A single-stage face detector: ResNet backbone + FPN + shared one-anchor-per-position head."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models import Conv, ResNet
from vision_jax.models.layers import check_nhwc
from vision_jax.models.resnet import BasicBlock, Bottleneck


class FPNDetector(nn.Module):
  """Backbone stages -> FPN levels at ``strides`` -> per-anchor face logit and box offsets.

  ``__call__(x [B, H, W, C], train) -> (logits [B, A], deltas [B, A, 4])`` with anchors ordered
  as :func:`~vision_jax.detection.anchor_boxes` (level-major, row-major). Levels whose stride a
  backbone stage provides use that stage (lateral 1x1 conv, top-down nearest upsampling and sum,
  3x3 output conv); finer or coarser strides raise / are built by stride-2 3x3 convs on the
  previous level (RetinaNet's P6/P7).

  Attributes:
    backbone: a module returning ``(output, intermediates)`` with ``intermediates["stage{i}"]``
      (e.g. :class:`vision_jax.models.ResNet` with ``num_classes=None``).
    strides: FPN level strides, ascending.
    channels: FPN and head width.
    head_depth: 3x3 conv + ReLU layers in each head branch (shared across levels).
    prior_prob: initial face probability of the logit bias, ``b = -log((1 - pi) / pi)``.
    dtype: compute dtype.
    conv_impl: see :func:`vision_jax.models.conv2d`.

  References:
    Lin et al. "Feature Pyramid Networks for Object Detection." CVPR 2017. arXiv:1612.03144.
    Lin et al. "Focal Loss for Dense Object Detection." ICCV 2017. arXiv:1708.02002.

  Choice: no context module (SSH) and no normalisation in the head; the paper's context design
    was not available. Prior-probability bias init as RetinaNet (pi = 0.01).
  """

  backbone: nn.Module
  strides: Sequence[int] = (4, 8, 16)
  channels: int = 64
  head_depth: int = 2
  prior_prob: float = 0.01
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool):
    check_nhwc(x, "FPNDetector")
    h = x.shape[1]
    _, inter = self.backbone(x, train=train)
    stages = {}
    for k in sorted(k for k in inter if k.startswith("stage")):
      f = inter[k]
      stages[int(round(h / f.shape[1]))] = f
    strides = tuple(int(s) for s in self.strides)
    if list(strides) != sorted(set(strides)):
      raise ValueError(f"strides must be strictly ascending; got {strides}")
    from_backbone = [s for s in strides if s in stages]
    extra = [s for s in strides if s not in stages]
    if not from_backbone:
      raise ValueError(
        f"no backbone stage has a stride in {strides}; stage strides: {sorted(stages)}"
      )
    if any(s < max(from_backbone) for s in extra):
      raise ValueError(
        f"strides {extra} are not backbone stage strides {sorted(stages)} and not coarser than "
        f"the deepest one used; pick strides from {sorted(stages)} plus coarser extra levels."
      )
    conv = functools.partial(Conv, dtype=self.dtype, conv_impl=self.conv_impl)
    lat = {s: conv(self.channels, (1, 1), name=f"lateral_s{s}")(stages[s]) for s in from_backbone}
    top = None
    outs = {}
    for s in reversed(from_backbone):
      y = lat[s]
      if top is not None:
        up = jax.image.resize(top, y.shape[:3] + top.shape[3:], "nearest")
        y = y + up
      top = y
      outs[s] = conv(self.channels, (3, 3), name=f"fpn_s{s}")(y)
    prev = outs[max(from_backbone)]
    for s in extra:
      prev = conv(self.channels, (3, 3), (2, 2), name=f"extra_s{s}")(nn.relu(prev))
      outs[s] = prev
    bias = -math.log((1.0 - self.prior_prob) / self.prior_prob)
    cls_layers = [conv(self.channels, (3, 3), name=f"cls_{i}") for i in range(self.head_depth)]
    box_layers = [conv(self.channels, (3, 3), name=f"box_{i}") for i in range(self.head_depth)]
    cls_out = conv(1, (3, 3), name="cls_out", bias_init=nn.initializers.constant(bias),
                   kernel_init=nn.initializers.normal(0.01))  # fmt: skip
    box_out = conv(4, (3, 3), name="box_out", kernel_init=nn.initializers.normal(0.01))
    logits, deltas = [], []
    for s in strides:
      f = outs[s]
      want = (math.ceil(x.shape[1] / s), math.ceil(x.shape[2] / s))
      if f.shape[1:3] != want:
        raise ValueError(f"level stride {s}: feature map {f.shape[1:3]} != anchors' grid {want}")
      c, b = f, f
      for layer in cls_layers:
        c = nn.relu(layer(c))
      for layer in box_layers:
        b = nn.relu(layer(b))
      logits.append(cls_out(c).reshape(f.shape[0], -1))
      deltas.append(box_out(b).reshape(f.shape[0], -1, 4))
    return (
      jnp.concatenate(logits, 1).astype(jnp.float32),
      jnp.concatenate(deltas, 1).astype(jnp.float32),
    )


def build_detector(mcfg) -> FPNDetector:
  """An :class:`FPNDetector` from a ``config.model`` section.

  Fields: ``stage_sizes`` (blocks per ResNet stage), ``block`` (``"basic"`` | ``"bottleneck"``),
  ``width`` (channel multiplier on 64/128/256/512), ``stem`` (``"imagenet"``: stride-4 stem;
  ``"cifar"``: stride 1), ``strides``, ``channels``, ``head_depth``, ``prior_prob``, ``conv_impl``.

  Raises:
    ValueError: unknown ``block`` or ``stem``.
  """
  blocks = {"basic": BasicBlock, "bottleneck": Bottleneck}
  if mcfg.block not in blocks:
    raise ValueError(f"config.model.block={mcfg.block!r}; valid: {', '.join(blocks)}")
  backbone = ResNet(
    stage_sizes=tuple(mcfg.stage_sizes),
    block=blocks[mcfg.block],
    num_classes=None,
    stem=mcfg.stem,
    width=float(mcfg.width),
    conv_impl=mcfg.conv_impl,
  )
  return FPNDetector(
    backbone=backbone,
    strides=tuple(mcfg.strides),
    channels=int(mcfg.channels),
    head_depth=int(mcfg.head_depth),
    prior_prob=float(mcfg.prior_prob),
    conv_impl=mcfg.conv_impl,
  )
