"""DVG-Face networks: attribute encoders, the shared AdaIN decoder, modality heads, the identity
sampler (a VAE whose decoder maps noise to identity features) and a pair discriminator.

A paired heterogeneous image ``(x_a, x_b)`` (NIR/VIS, sketch/photo) is generated from one identity
feature ``f`` in the frozen recognition network's space and one attribute code per modality:

.. math::

  z_m = E_m(x_m),\\qquad \\hat x_m = \\sigma\\big(H_m(D([f, z_m];\\ \\mathrm{AdaIN}(S_m(z_m))))\\big),
  \\qquad m \\in \\{a, b\\},

with ``E_m`` the modality's encoder (L2-normalised code), ``S_m`` its style MLP (AdaIN mean/std of
the decoder's last stage), ``D`` the shared decoder and ``H_m`` a 1x1 conv head.

Choice: sizes follow the official generator (BradyFU/DVG-Face ``network/G_net.py``, 128 px, ndf 32)
but scale with ``image_size``: the encoder halves the map until 4x4, the decoder doubles from 4x4;
the last decoder stage (one up-conv, two residual blocks, two convs = 7 AdaIN layers) is AdaIN.
The residual blocks per decoder stage (``mid_res_blocks = 1`` per intermediate stage,
``last_res_blocks = 2`` in the last one, the official layout) can be lowered for a shallower
test-size generator; the last stage then has ``3 + 2 * last_res_blocks`` AdaIN layers.

References:
  C. Fu, X. Wu, Y. Hu, H. Huang, R. He. "DVG-Face: Dual Variational Generation for Heterogeneous
  Face Recognition." IEEE TPAMI 2021. arXiv:2009.09399.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models.conv import Conv

MODALITIES = ("a", "b")
_ADAIN_LAYERS = 7  # of the official last decoder stage (two residual blocks)


def adain_layers(last_res_blocks: int = 2) -> int:
  """AdaIN layers of the decoder's last stage: up-conv, ``2 x last_res_blocks``, two convs."""
  return 3 + 2 * int(last_res_blocks)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """``x / max(||x||, eps)`` along the last axis (float32).

  Written as ``x * rsqrt(max(sum x², eps²))`` so that the gradient at ``x = 0`` is finite (a
  constant input image gives an all-zero code at init; ``jnp.linalg.norm``'s derivative there is
  0/0).
  """
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


def instance_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
  """Per-example, per-channel normalisation over H, W (PyTorch ``InstanceNorm2d``, affine off)."""
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)
  var = jnp.var(x, axis=(1, 2), keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + eps)


def adain(x: jax.Array, mean: jax.Array, std: jax.Array, eps: float = 1e-5) -> jax.Array:
  """Adaptive instance norm: ``std * IN(x) + mean``; ``x [B, H, W, C]``, ``mean, std [B, C]``.

  Choice: ``std`` is used raw (no ``1 + std``), as in the official code.
  """
  return std[:, None, None, :] * instance_norm(x, eps) + mean[:, None, None, :]


def _lrelu(x):
  return nn.leaky_relu(x, 0.2)


def _num_down(image_size: int) -> int:
  n = int(round(math.log2(image_size / 4)))
  if image_size < 8 or 4 * 2**n != image_size:
    raise ValueError(f"image_size={image_size} must be 4 * 2^k with k >= 1 (8, 16, 32, ..., 128)")
  return n


class AttributeEncoder(nn.Module):
  """Conv → InstanceNorm → LeakyReLU(0.2) blocks down to 4x4, FC to the unit attribute code.

  Attributes:
    attr_dim: code size (the identity feature size, so that orthogonality is defined).
    width: channels of the first conv (official ``ndf = 32``); doubled per stride-2 block up to
      ``8 * width``.
    variational: add μ / log σ² heads (reparameterised code; needed by the KL term).
    conv_impl: see `vision_jax.models.conv2d`.

  Returns (``__call__(x, rng=None)``):
    ``{"z": [B, attr_dim] unit vectors, "mu", "logvar"}`` (``mu``, ``logvar`` only when
    variational; without ``rng`` the code is ``normalize(mu)``).

  Choice: in variational mode the code is ``normalize(mu + sigma * eps)``: the official
  deterministic encoder's L2 normalisation is kept so that orthogonality and the decoder see unit
  codes either way.
  """

  attr_dim: int = 256
  width: int = 32
  variational: bool = False
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, rng: jax.Array | None = None) -> dict[str, jax.Array]:
    n_down = _num_down(x.shape[1])
    h = _lrelu(instance_norm(Conv(self.width, (5, 5), conv_impl=self.conv_impl, name="conv0")(x)))
    c = self.width
    for i in range(n_down):
      c = min(2 * c, 8 * self.width)
      h = Conv(c, (3, 3), strides=(2, 2), conv_impl=self.conv_impl, name=f"down{i}")(h)
      h = _lrelu(instance_norm(h))
    h = h.reshape(h.shape[0], -1)
    out = {}
    if self.variational:
      mu = nn.Dense(self.attr_dim, name="mu")(h)
      logvar = nn.Dense(self.attr_dim, name="logvar")(h)
      code = mu
      if rng is not None:
        code = mu + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mu.shape, mu.dtype)
      out.update(mu=mu, logvar=logvar)
    else:
      code = nn.Dense(self.attr_dim, name="fc")(h)
    out["z"] = l2_normalize(code)
    return out


class StyleMLP(nn.Module):
  """``z -> 1024 -> 2048 -> style_dim`` (LeakyReLU 0.2): the AdaIN mean/std of one modality."""

  style_dim: int = _ADAIN_LAYERS * 2 * 32
  hidden: Sequence[int] = (1024, 2048)

  @nn.compact
  def __call__(self, z):
    s = z
    for i, w in enumerate(self.hidden):
      s = _lrelu(nn.Dense(w, name=f"fc{i}")(s))
    return nn.Dense(self.style_dim, name=f"fc{len(self.hidden)}")(s)


class _ResBlock(nn.Module):
  """``x + conv(act(norm(conv(x))))`` with IN or AdaIN normalisation (two 3x3 conv blocks)."""

  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, norms):
    c = x.shape[-1]
    y = _lrelu(norms[0](Conv(c, (3, 3), conv_impl=self.conv_impl, name="conv1")(x)))
    y = norms[1](Conv(c, (3, 3), conv_impl=self.conv_impl, name="conv2")(y))
    return x + y


class SharedDecoder(nn.Module):
  """``[f, z] -> FC -> 4x4 -> (up-conv k2 s2, res block) x n -> modality head -> sigmoid``.

  All stages use InstanceNorm except the last (full-resolution) one, whose 7 norms are AdaIN with
  the style MLP's parameters of the modality being decoded.

  Attributes:
    image_size: output side; channels: output channels (1 grey, 3 RGB).
    widths: channels per stage from 4x4 upward (default: halve from ``8 * width`` to ``width``).
    width: channels of the last stage (must match the encoders' AdaIN size).
    mid_res_blocks: residual blocks after each intermediate up-conv (official: 1).
    last_res_blocks: residual blocks of the last (AdaIN) stage (official: 2); the style then
      holds ``adain_layers(last_res_blocks) x 2 x width`` values.
  """

  image_size: int = 128
  channels: int = 3
  width: int = 32
  conv_impl: str = "auto"
  mid_res_blocks: int = 1
  last_res_blocks: int = 2

  @nn.compact
  def __call__(self, identity, z, style, modality: str):
    if modality not in MODALITIES:
      raise ValueError(f"modality={modality!r}; expected one of {MODALITIES}")
    for key in ("mid_res_blocks", "last_res_blocks"):
      if int(getattr(self, key)) < 0:
        raise ValueError(f"SharedDecoder({key}={getattr(self, key)}): expected >= 0")
    n_up = _num_down(self.image_size)
    c0 = 4 * self.width
    h = _lrelu(nn.Dense(16 * c0, name="fc")(jnp.concatenate([identity, z], -1)))
    h = h.reshape(h.shape[0], 4, 4, c0)
    widths = [max(c0 // 2 ** (i // 2), self.width) for i in range(n_up)]
    widths[-1] = self.width
    ci = self.conv_impl
    for i in range(n_up - 1):
      h = nn.ConvTranspose(widths[i], (2, 2), strides=(2, 2), name=f"up{i}")(h)
      h = _lrelu(instance_norm(h))
      for j in range(self.mid_res_blocks):  # official: one block, named res{i}
        name = f"res{i}" if j == 0 else f"res{i}_{j}"
        h = _ResBlock(ci, name=name)(h, (instance_norm, instance_norm))
    # Last stage: AdaIN everywhere; style [B, n * 2 * width] -> n (mean, std) pairs (n = 7).
    c, n_ada = self.width, adain_layers(self.last_res_blocks)
    if style.shape[-1] != n_ada * 2 * c:
      raise ValueError(
        f"style has {style.shape[-1]} values; the decoder's last stage needs "
        f"{n_ada} x 2 x {c} = {n_ada * 2 * c} (encoder style_dim vs decoder width)"
      )
    params = style.reshape(style.shape[0], n_ada, 2, c)
    norms = [(lambda x, k=k: adain(x, params[:, k, 0], params[:, k, 1])) for k in range(n_ada)]
    h = nn.ConvTranspose(c, (2, 2), strides=(2, 2), name=f"up{n_up - 1}")(h)
    h = _lrelu(norms[0](h))
    for j in range(self.last_res_blocks):
      h = _ResBlock(ci, name=f"res_last{j}")(h, norms[1 + 2 * j : 3 + 2 * j])
    h = _lrelu(norms[-2](Conv(c, (3, 3), conv_impl=ci, name="conv_last0")(h)))
    h = _lrelu(norms[-1](Conv(c, (3, 3), conv_impl=ci, name="conv_last1")(h)))
    heads = {m: nn.Conv(self.channels, (1, 1), name=f"head_{m}") for m in MODALITIES}
    if self.is_initializing():
      for m in MODALITIES:  # create both heads' params whichever modality init decodes
        heads[m](h)
    return jax.nn.sigmoid(heads[modality](h).astype(jnp.float32))


class DualGenerator(nn.Module):
  """Two attribute encoders and style MLPs (``a``, ``b``) and one shared decoder with two heads.

  Use through ``apply(..., method=...)``: :meth:`encode` ``(x, modality, rng=None) -> {"z",
  "style", ("mu", "logvar")}``, :meth:`style` ``(z, modality)`` and :meth:`decode` ``(identity,
  z, style, modality)``; ``__call__`` (used for init) reconstructs both modalities.
  ``mid_res_blocks`` / ``last_res_blocks``: the decoder's residual blocks (see `SharedDecoder`);
  the style MLPs' output size follows ``last_res_blocks``.
  """

  image_size: int = 128
  channels: int = 3
  attr_dim: int = 256
  width: int = 32
  style_hidden: Sequence[int] = (1024, 2048)
  variational: bool = False
  conv_impl: str = "auto"
  mid_res_blocks: int = 1
  last_res_blocks: int = 2

  def setup(self):
    kw = dict(
      attr_dim=self.attr_dim,
      width=self.width,
      variational=self.variational,
      conv_impl=self.conv_impl,
    )
    self.enc_a = AttributeEncoder(**kw)
    self.enc_b = AttributeEncoder(**kw)
    sd = adain_layers(self.last_res_blocks) * 2 * self.width
    self.style_a = StyleMLP(sd, tuple(self.style_hidden))
    self.style_b = StyleMLP(sd, tuple(self.style_hidden))
    self.dec = SharedDecoder(
      self.image_size,
      self.channels,
      self.width,
      self.conv_impl,
      mid_res_blocks=self.mid_res_blocks,
      last_res_blocks=self.last_res_blocks,
    )

  def _check(self, modality):
    if modality not in MODALITIES:
      raise ValueError(f"modality={modality!r}; expected one of {MODALITIES}")

  def style(self, z, modality: str):
    self._check(modality)
    return (self.style_a if modality == "a" else self.style_b)(z)

  def encode(self, x, modality: str, rng=None):
    self._check(modality)
    if x.shape[1:3] != (self.image_size, self.image_size) or x.shape[-1] != self.channels:
      raise ValueError(
        f"encode(modality={modality!r}): image shape {x.shape[1:]} != the generator's "
        f"({self.image_size}, {self.image_size}, {self.channels})"
      )
    out = dict((self.enc_a if modality == "a" else self.enc_b)(x, rng))
    out["style"] = self.style(out["z"], modality)
    return out

  def decode(self, identity, z, style, modality: str):
    return self.dec(identity, z, style, modality)

  def __call__(self, identity, x_a, x_b):
    ea, eb = self.encode(x_a, "a"), self.encode(x_b, "b")
    return (
      self.decode(identity, ea["z"], ea["style"], "a"),
      self.decode(identity, eb["z"], eb["style"], "b"),
    )


class IdentitySampler(nn.Module):
  """The identity sampler as a VAE over identity features; its decoder maps noise to identities.

  Encoder ``f -> MLP -> (mu, logvar)`` of ``noise_dim``; decoder ``MLP -> L2-normalised f``, the
  official ``dec``: 256→1024→1024→512→256 with LeakyReLU(0.2). Call with ``method="decode"``
  on ``N(0, I)`` noise to sample identities.

  Choice: the official code ships only the decoder's weights; the encoder (mirror of the decoder)
  and the training objective (angular reconstruction + KL, see `vision_jax.hfr.sampler_loss`)
  are ours.
  """

  feature_dim: int = 256
  noise_dim: int = 256
  hidden: Sequence[int] = (1024, 1024, 512)

  def setup(self):
    self.enc_layers = [nn.Dense(w, name=f"enc{i}") for i, w in enumerate(self.hidden[::-1])]
    self.enc_mu = nn.Dense(self.noise_dim, name="enc_mu")
    self.enc_logvar = nn.Dense(self.noise_dim, name="enc_logvar")
    self.dec_layers = [nn.Dense(w, name=f"dec{i}") for i, w in enumerate(self.hidden)]
    self.dec_out = nn.Dense(self.feature_dim, name="dec_out")

  def encode(self, f):
    h = f
    for layer in self.enc_layers:
      h = _lrelu(layer(h))
    return self.enc_mu(h), self.enc_logvar(h)

  def decode(self, noise):
    h = noise
    for layer in self.dec_layers:
      h = _lrelu(layer(h))
    return l2_normalize(self.dec_out(h))

  def __call__(self, f, rng):
    mu, logvar = self.encode(f)
    eps = jax.random.normal(rng, mu.shape, mu.dtype)
    return self.decode(mu + jnp.exp(0.5 * logvar) * eps), mu, logvar


class PairDiscriminator(nn.Module):
  """Judges a *pair*: ``concat(x_a, x_b)`` channels → strided convs (LeakyReLU) → one logit.

  Choice: the paper's adversarial term is not in the official code; one discriminator on the
  joint pair (it sees both modalities at once, so it also penalises pairs that do not belong
  together) is ours. No normalisation layers, so D has no state.
  """

  width: int = 32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x_a, x_b):
    h = jnp.concatenate([x_a, x_b], -1)
    c = self.width
    for i in range(_num_down(h.shape[1])):
      h = _lrelu(Conv(c, (4, 4), strides=(2, 2), conv_impl=self.conv_impl, name=f"conv{i}")(h))
      c = min(2 * c, 8 * self.width)
    return nn.Dense(1, name="out")(h.reshape(h.shape[0], -1))[:, 0].astype(jnp.float32)


__all__ = [
  "MODALITIES",
  "AttributeEncoder",
  "StyleMLP",
  "DualGenerator",
  "IdentitySampler",
  "PairDiscriminator",
  "SharedDecoder",
  "adain",
  "adain_layers",
  "instance_norm",
  "l2_normalize",
]
