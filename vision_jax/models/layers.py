"""Small shared layers: BatchNorm with the library's defaults, pooling helpers, max-feature-map."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# PyTorch's BatchNorm2d defaults (momentum 0.1 there = 0.9 here, eps 1e-5), so that published
# recipes and converted weights behave the same.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def check_nhwc(x: jax.Array, model: str) -> None:
  """Raises ValueError unless ``x`` is a 4-d NHWC image batch ``[B, H, W, C]`` (static shape check,
  safe under jit)."""
  if x.ndim != 4:
    raise ValueError(f"{model} expects NHWC input [B, H, W, C]; got shape {x.shape}")


def batch_norm(train: bool, dtype: Any, name: str | None = None, zero_scale: bool = False):
  """``nn.BatchNorm`` over the last axis with stats in the ``batch_stats`` collection.

  Under ``jax.jit`` with the batch sharded over a mesh, the batch mean/variance are computed over
  the *global* batch (XLA inserts the all-reduce), i.e. this is synchronised BatchNorm.

  Args:
    train: use batch statistics and update the running averages (True), or use the running
      averages (False).
    dtype: compute dtype.
    name: submodule name.
    zero_scale: initialise gamma to 0 (the "zero-init last BN of each residual block" trick).

  Returns:
    A configured ``nn.BatchNorm``.
  """
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=BN_MOMENTUM,
    epsilon=BN_EPSILON,
    dtype=dtype,
    param_dtype=jnp.float32,
    scale_init=nn.initializers.zeros_init() if zero_scale else nn.initializers.ones_init(),
    name=name,
  )


def _tiled(x: jax.Array, window: int) -> jax.Array | None:
  """``[B, H, W, C] -> [B, H/k, k, W/k, k, C]`` (H, W cropped to multiples of k, like VALID)."""
  b, h, w, c = x.shape
  h2, w2 = h // window, w // window
  return x[:, : h2 * window, : w2 * window, :].reshape(b, h2, window, w2, window, c)


def max_pool(
  x: jax.Array, window: int = 2, stride: int | None = None, padding="VALID"
) -> jax.Array:
  """Max pooling over H, W of ``[B, H, W, C]``.

  Choice: non-overlapping VALID pooling (stride == window) is a reshape + max, whose backward pass
    is ~7x faster on XLA:CPU than ``reduce_window``'s select-and-scatter (measured on
    ``[128, 28, 28, 32]``: 10 ms vs 69 ms CPU time). On ties (e.g. a window of ReLU zeros) the
    gradient is split evenly instead of going to the first maximum; behind a ReLU this makes no
    difference because the ReLU's gradient at 0 is 0.
  """
  stride = stride or window
  if stride == window and padding == "VALID":
    return jnp.max(_tiled(x, window), axis=(2, 4))
  return nn.max_pool(x, (window, window), (stride, stride), padding=padding)


def avg_pool(x: jax.Array, window: int = 2, stride: int | None = None) -> jax.Array:
  """Average pooling (VALID) over H, W of ``[B, H, W, C]`` (reshape + mean when non-overlapping)."""
  stride = stride or window
  if stride == window:
    return jnp.mean(_tiled(x, window), axis=(2, 4))
  return nn.avg_pool(x, (window, window), (stride, stride), padding="VALID")


def max_plus_avg_pool(x: jax.Array) -> jax.Array:
  """LightCNN-29v2's downsampling: ``max_pool2x2(x) + avg_pool2x2(x)`` (floor on odd sizes)."""
  return max_pool(x, 2) + avg_pool(x, 2)


def max_feature_map(y: jax.Array) -> jax.Array:
  """MFM activation: split the last axis ``[..., 2C]`` into halves and take the elementwise max.

  .. math:: \\hat y_c = \\max(y_c, y_{c + C}),\\quad c = 1..C

  Args:
    y: ``[..., 2 * channels]``.

  Returns:
    ``[..., channels]``.

  Raises:
    ValueError: if the last axis is odd.

  References:
    Wu, He, Sun, Tan. "A Light CNN for Deep Face Representation with Noisy Labels." IEEE TIFS
    2018. arXiv:1511.02683.
  """
  if y.shape[-1] % 2:
    raise ValueError(f"max_feature_map needs an even channel count; got shape {y.shape}")
  a, b = jnp.split(y, 2, axis=-1)
  return jnp.maximum(a, b)


global_avg_pool = functools.partial(jnp.mean, axis=(1, 2))
