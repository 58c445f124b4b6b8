"""vision_jax.models: flax.linen backbones returning ``(output, intermediates)``.

All models take NHWC float32 input, keep BatchNorm statistics in the ``batch_stats`` collection,
compute in ``dtype`` with float32 params, and accept ``conv_impl="xla" | "einsum" | "auto"``
(see `conv2d`). Build them with `get_model(name, **kwargs)`.
"""

from vision_jax.models.conv import (
  AUTO_MIN_STRIDE,
  CONV_IMPLS,
  Conv,
  conv2d,
  resolve_conv_impl,
)
from vision_jax.models.convnet import ConvNet
from vision_jax.models.layers import batch_norm, max_feature_map, max_plus_avg_pool
from vision_jax.models.lightcnn import LightCNN9, LightCNN29v2, MFMConv, MFMGroup, MFMResBlock
from vision_jax.models.registry import (
  COMPUTE_DTYPES,
  MODEL_NAMES,
  backbone_from_config,
  compute_dtype,
  get_model,
)
from vision_jax.models.resnet import BasicBlock, Bottleneck, ResNet, ResNet18, ResNet34, ResNet50

__all__ = [
  "AUTO_MIN_STRIDE",
  "COMPUTE_DTYPES",
  "CONV_IMPLS",
  "BasicBlock",
  "Bottleneck",
  "Conv",
  "ConvNet",
  "LightCNN9",
  "LightCNN29v2",
  "MFMConv",
  "MFMGroup",
  "MFMResBlock",
  "MODEL_NAMES",
  "ResNet",
  "ResNet18",
  "ResNet34",
  "ResNet50",
  "backbone_from_config",
  "batch_norm",
  "compute_dtype",
  "conv2d",
  "get_model",
  "max_feature_map",
  "max_plus_avg_pool",
  "resolve_conv_impl",
]
