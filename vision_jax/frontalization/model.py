"""Frontalization networks: a TP-GAN-like encoder-decoder generator with skips, a global
discriminator, and the parsing-guided discriminator (one tower per parsing region).

Generator ``G`` (TP-GAN's global pathway, simplified): ``n`` encoder levels (strided 3x3 conv,
InstanceNorm, LeakyReLU(0.2), residual block) halve the side down to ``s = S / 2^n``; a bottleneck
``FC -> maxout -> FC`` (TP-GAN's 512-d FC + maxout identity code) is reshaped to ``s x s`` and
concatenated with the deepest features; the decoder doubles the side ``n`` times (2x2 transposed
conv), concatenating the encoder features of the same side (the skips), and a 3x3 conv + sigmoid
gives the frontal face ``ŷ = G(x) ∈ [0, 1]^{S x S x C}``.

Global discriminator ``D_g``: strided 4x4 convs (LeakyReLU(0.2), no normalisation) down to 4x4,
then a dense layer to one logit per image.

Parsing-guided discriminator ``D_p``: for each region ``r`` (see `vision_jax.frontalization.
parsing`) its own tower of strided 4x4 convs on ``x ⊙ m_r`` ends in a 1x1 conv to a patch-logit
map ``L_r``, pooled over the region's pixels into ``ℓ_r``.

Choice: no BatchNorm anywhere (G uses InstanceNorm, D nothing), so neither network has state.
Choice: sigmoid output in ``[0, 1]`` (the identity network's input range) instead of TP-GAN's
tanh; no noise input (TP-GAN concatenates 100-d noise at the bottleneck; frontalization is
deterministic here). Choice: TP-GAN's local (landmark patch) pathway is left out; the
parsing-guided D is where local structure enters. Choice: the region towers have separate
weights (the only unofficial code shares one tower by mistake).

References:
  Huang, Zhang, Li, He. "Beyond Face Rotation: Global and Local Perception GAN for Photorealistic
  and Identity Preserving Frontal View Synthesis." ICCV 2017, arXiv:1704.04086.
  Li, Wu, Hu, He, Sun. "M2FPA: A Multi-Yaw Multi-Pitch High-Quality Dataset and Benchmark for
  Facial Pose Analysis." ICCV 2019, arXiv:1904.00168.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.frontalization.parsing import DEFAULT_REGIONS, check_regions, region_pool
from vision_jax.hfr.model import instance_norm
from vision_jax.models.conv import Conv, lecun_normal_hwio
from vision_jax.models.layers import max_feature_map


def _lrelu(x):
  return nn.leaky_relu(x, 0.2)


def num_levels(image_size: int, *, min_side: int = 4, max_levels: int = 4) -> int:
  """Encoder levels of an ``image_size`` generator: the most halvings (<= ``max_levels``) that
  stay integer and ``>= min_side`` (32 px: 3 levels to 4x4, 48 px: 3 to 6x6, 128 px: 4 to 8x8).

  Raises:
    ValueError: ``image_size`` cannot be halved once to ``>= min_side``.
  """
  n, s = 0, int(image_size)
  while n < max_levels and s % 2 == 0 and s // 2 >= min_side:
    n, s = n + 1, s // 2
  if n == 0:
    raise ValueError(
      f"image_size={image_size} must be even and >= {2 * min_side} (e.g. 32, 48, 64, 128)"
    )
  return n


class _Res(nn.Module):
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    y = _lrelu(instance_norm(Conv(c, (3, 3), conv_impl=self.conv_impl, name="conv1")(x)))
    return x + instance_norm(Conv(c, (3, 3), conv_impl=self.conv_impl, name="conv2")(y))


class FrontalGenerator(nn.Module):
  """``ŷ = G(x)``: a profile face ``[B, S, S, C]`` in ``[0, 1]`` to its frontal view (see the
  module docstring).

  Attributes:
    image_size: ``S`` (its bottleneck FC makes the params resolution-specific).
    channels: ``C`` of input and output (1 grey, 3 RGB).
    width: channels of the first encoder level (doubling per level, capped at ``8 * width``).
    code_dim: the maxout bottleneck code size (TP-GAN: 256).
    res_blocks: residual blocks after each encoder level's strided conv (1; 0 gives a shallower
      test-size generator).
  """

  image_size: int = 32
  channels: int = 1
  width: int = 32
  code_dim: int = 256
  conv_impl: str = "auto"
  res_blocks: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    s = self.image_size
    if x.ndim != 4 or tuple(x.shape[1:]) != (s, s, self.channels):
      raise ValueError(
        f"FrontalGenerator(image_size={s}, channels={self.channels}) got input of shape "
        f"{tuple(x.shape)}; expected [B, {s}, {s}, {self.channels}]"
      )
    n = num_levels(s)
    ci = self.conv_impl
    widths = [min(self.width * 2**i, 8 * self.width) for i in range(n)]
    h = _lrelu(Conv(self.width, (3, 3), conv_impl=ci, name="stem")(x.astype(jnp.float32)))
    skips = [h]
    for i, c in enumerate(widths):
      h = _lrelu(instance_norm(Conv(c, (3, 3), strides=(2, 2), conv_impl=ci, name=f"down{i}")(h)))
      h = encoder_res_blocks(h, self.res_blocks, ci, i)
      skips.append(h)
    b, side = h.shape[0], h.shape[1]
    code = max_feature_map(nn.Dense(2 * self.code_dim, name="fc_code")(h.reshape(b, -1)))
    c0 = max(widths[-1] // 2, 1)
    g = _lrelu(nn.Dense(side * side * c0, name="fc_up")(code)).reshape(b, side, side, c0)
    h = jnp.concatenate([skips.pop(), g], -1)
    for i, c in enumerate(reversed([self.width] + widths[:-1])):
      h = nn.ConvTranspose(c, (2, 2), strides=(2, 2), kernel_init=lecun_normal_hwio, name=f"up{i}")(
        h
      )
      h = _lrelu(instance_norm(h))
      h = jnp.concatenate([h, skips.pop()], -1)
      h = _lrelu(instance_norm(Conv(c, (3, 3), conv_impl=ci, name=f"dec{i}")(h)))
    out = Conv(self.channels, (3, 3), conv_impl=ci, name="out")(h)
    return jax.nn.sigmoid(out.astype(jnp.float32))


def encoder_res_blocks(h, n: int, conv_impl: str, level: int):
  """``n`` residual blocks of encoder level ``level`` (the first named ``enc_res<level>``).

  Raises:
    ValueError: ``n < 0``.
  """
  if int(n) < 0:
    raise ValueError(f"res_blocks={n}: expected >= 0")
  for j in range(int(n)):
    h = _Res(conv_impl, name=f"enc_res{level}" if j == 0 else f"enc_res{level}_{j}")(h)
  return h


def _tower(x, width: int, n_down: int, conv_impl: str, prefix: str):
  c = width
  for i in range(n_down):
    x = _lrelu(Conv(c, (4, 4), strides=(2, 2), conv_impl=conv_impl, name=f"{prefix}conv{i}")(x))
    c = min(2 * c, 8 * width)
  return x


class GlobalDiscriminator(nn.Module):
  """``D_g(y) -> [B]`` logits: strided 4x4 convs (LeakyReLU 0.2) to a 4x4-ish map, then dense."""

  width: int = 32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, y: jax.Array) -> jax.Array:
    h = _tower(y.astype(jnp.float32), self.width, num_levels(y.shape[1]), self.conv_impl, "")
    return nn.Dense(1, name="out")(h.reshape(h.shape[0], -1))[:, 0].astype(jnp.float32)


class ParsingDiscriminator(nn.Module):
  """``D_p(y, masks) -> (logits [R, B], present [R, B], maps [R, B, h, w])``.

  Region ``r`` has its own tower of ``n_down`` strided 4x4 convs on ``y ⊙ m_r`` and a 1x1 conv to
  a patch-logit map, pooled over the region by `vision_jax.frontalization.region_pool`.

  Attributes:
    regions: ``((name, labels), ...)``; only the count and names are used here (the masks come
      in as an argument).
    width: channels of each tower's first conv.
    n_down: halvings per tower (patch side ``S / 2^n_down``; 2 at 32 px gives 8x8 patches, each
      seeing about a 10-pixel window: local consistency, not the whole face).
  """

  regions: tuple = DEFAULT_REGIONS
  width: int = 32
  n_down: int = 2
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, y: jax.Array, masks: jax.Array):
    regions = check_regions(self.regions)
    if masks.shape != (len(regions), *y.shape[:3]):
      raise ValueError(
        f"ParsingDiscriminator: masks {tuple(masks.shape)} must be [R={len(regions)}, B, H, W] "
        f"for images {tuple(y.shape)}"
      )
    if y.shape[1] % 2**self.n_down:
      raise ValueError(f"image side {y.shape[1]} is not divisible by 2^n_down = {2**self.n_down}")
    logits, present, maps = [], [], []
    for r, (name, _) in enumerate(regions):
      h = _tower(y.astype(jnp.float32) * masks[r][..., None], self.width, self.n_down,
                 self.conv_impl, f"{name}_")  # fmt: skip
      lmap = Conv(1, (1, 1), conv_impl=self.conv_impl, name=f"{name}_out")(h)[..., 0]
      logit, pres = region_pool(lmap, masks[r])
      logits.append(logit)
      present.append(pres)
      maps.append(lmap)
    return jnp.stack(logits), jnp.stack(present), jnp.stack(maps)


__all__ = ["FrontalGenerator", "GlobalDiscriminator", "ParsingDiscriminator", "num_levels"]
