"""DR-GAN-style single-encoder frontalization baseline: generator, identity/pose discriminator and
its losses (written from the paper's description, not from its code).

Generator ``G(x, c, z)``: an encoder ``G_enc`` maps the probe ``x`` to an identity feature
``f(x) ∈ R^{N_f}`` (strided convs to ``S / 2^n``, a conv to ``N_f`` channels, global average
pooling); the decoder ``G_dec`` takes ``[f(x), c, z]``, the target-pose code ``c`` (one-hot of
``N_p`` poses, here the frontal one) and optional noise ``z ∈ [-1, 1]^{N_z}``, and upsamples from
one dense layer with no skip connections to ``ŷ ∈ [0, 1]^{S x S x C}``.

Discriminator ``D(y) = (D^d(y), D^p(y))``: one conv trunk, an identity head over ``N_d + 1``
classes (the ``N_d`` train identities, and class ``N_d`` for "synthesized") and a pose head over
``N_p`` poses. With softmax probabilities ``D^d_k``, ``D^p_k``, real images ``x`` of identity
``y^d`` at pose ``y^p``, the target pose ``y^t`` and ``ŷ = G(x, c(y^t), z)``:

.. math::

  \\mathcal L_D = \\mathbb E_x\\big[-\\log D^d_{y^d}(x) - \\log D^p_{y^p}(x)\\big]
    + \\mathbb E_{x,z}\\big[-\\log D^d_{N_d+1}(\\hat y)\\big],

  \\mathcal L_G^{adv} = \\mathbb E_{x,z}\\big[-\\log D^d_{y^d}(\\hat y) - \\log D^p_{y^t}(\\hat y)\\big]

(``N_d + 1`` is the paper's 1-based fake class, index ``N_d`` here): D learns identity and pose
on real faces and to call synthesized faces fake; G must make its output the input's identity at
the target pose.

Choice: the real images D sees are both the probe (at its pose) and its ground-truth frontal
view (at the frontal pose); the paper's D sees the training images at their own poses.
Choice: in `vision_jax.frontalization.frontalization_task`, ``L_G^{adv}`` replaces the global
D's term (weight ``λ_adv``) and the shared reconstruction terms (pixel L1, identity, TV,
symmetry) stay, so that the variant differs from the TP-GAN-like baseline in G and D only;
DR-GAN itself trains without the pixel loss (set ``λ_pix = λ_ip = λ_sym = 0``).
Choice: InstanceNorm instead of BatchNorm (no state), LeakyReLU(0.2), sigmoid output, noise only
at train time (evaluation uses ``z = 0``, the mean of ``U[-1, 1]``), ``N_z = 0`` by default (the
paper uses 50); the paper's ``N_f = 320`` is ``code_dim``.

References:
  Tran, Yin, Liu. "Disentangled Representation Learning GAN for Pose-Invariant Face
  Recognition." CVPR 2017.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from vision_jax.frontalization.model import _lrelu, _tower, encoder_res_blocks, num_levels
from vision_jax.hfr.model import instance_norm
from vision_jax.models.conv import Conv, lecun_normal_hwio


class DrGanGenerator(nn.Module):
  """``ŷ = G(x, c, z)``: encoder -> identity feature, + pose code (+ noise) -> decoder, no skips.

  Attributes:
    image_size: ``S``. channels: ``C`` of input and output.
    width: channels of the first encoder level (doubling per level, capped at ``8 * width``).
    code_dim: ``N_f``, the identity feature size.
    num_poses: ``N_p``, the size of the one-hot pose code. target_pose: the pose index the
      generator renders when ``pose`` is not given (the frontal pose).
    noise_dim: ``N_z`` (0: no noise).
    res_blocks: residual blocks after each encoder level's strided conv (1; 0: shallower).
  """

  image_size: int = 32
  channels: int = 1
  width: int = 32
  code_dim: int = 320
  num_poses: int = 1
  target_pose: int = 0
  noise_dim: int = 0
  conv_impl: str = "auto"
  res_blocks: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, pose: jax.Array | None = None, noise: jax.Array | None = None):
    """Args: x ``[B, S, S, C]``; pose int ``[B]`` (default ``target_pose``); noise ``[B, N_z]``
    (default zeros). Returns ``[B, S, S, C]`` in ``[0, 1]``.

    Raises:
      ValueError: a bad input shape or ``target_pose`` outside ``0..num_poses-1``.
    """
    s, ci = self.image_size, self.conv_impl
    if x.ndim != 4 or tuple(x.shape[1:]) != (s, s, self.channels):
      raise ValueError(
        f"DrGanGenerator(image_size={s}, channels={self.channels}) got input of shape "
        f"{tuple(x.shape)}; expected [B, {s}, {s}, {self.channels}]"
      )
    if not 0 <= self.target_pose < self.num_poses:
      raise ValueError(f"target_pose={self.target_pose} is outside 0..{self.num_poses - 1}")
    b, n = x.shape[0], num_levels(s)
    widths = [min(self.width * 2**i, 8 * self.width) for i in range(n)]
    h = _lrelu(Conv(self.width, (3, 3), conv_impl=ci, name="stem")(x.astype(jnp.float32)))
    for i, c in enumerate(widths):
      h = _lrelu(instance_norm(Conv(c, (3, 3), strides=(2, 2), conv_impl=ci, name=f"down{i}")(h)))
      h = encoder_res_blocks(h, self.res_blocks, ci, i)
    side = h.shape[1]
    f = Conv(self.code_dim, (3, 3), conv_impl=ci, name="feature")(h).mean(axis=(1, 2))
    pose = jnp.full((b,), self.target_pose, jnp.int32) if pose is None else pose
    parts = [f, jax.nn.one_hot(pose, self.num_poses, dtype=f.dtype)]
    if self.noise_dim:
      if noise is None:
        noise = jnp.zeros((b, self.noise_dim), f.dtype)
      if tuple(noise.shape) != (b, self.noise_dim):
        raise ValueError(f"noise has shape {tuple(noise.shape)}; expected [{b}, {self.noise_dim}]")
      parts.append(noise.astype(f.dtype))
    c0 = widths[-1]
    h = nn.Dense(side * side * c0, name="fc_up")(jnp.concatenate(parts, -1))
    h = _lrelu(instance_norm(h.reshape(b, side, side, c0)))
    for i, c in enumerate(reversed([self.width] + widths[:-1])):
      h = _lrelu(
        instance_norm(
          nn.ConvTranspose(c, (2, 2), strides=(2, 2), kernel_init=lecun_normal_hwio, name=f"up{i}")(
            h
          )
        )
      )
      h = _lrelu(instance_norm(Conv(c, (3, 3), conv_impl=ci, name=f"dec{i}")(h)))
    out = Conv(self.channels, (3, 3), conv_impl=ci, name="out")(h)
    return jax.nn.sigmoid(out.astype(jnp.float32))


class DrGanDiscriminator(nn.Module):
  """``D(y) -> (identity logits [B, N_d + 1], pose logits [B, N_p])``: strided 4x4 convs
  (LeakyReLU 0.2) to about 4x4, then two dense heads.

  Attributes:
    num_identities: ``N_d`` (the fake class is index ``N_d``). num_poses: ``N_p``.
    width: channels of the first conv.
  """

  num_identities: int
  num_poses: int
  width: int = 32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = _tower(y.astype(jnp.float32), self.width, num_levels(y.shape[1]), self.conv_impl, "")
    h = h.reshape(h.shape[0], -1)
    ident = nn.Dense(self.num_identities + 1, name="identity")(h).astype(jnp.float32)
    return ident, nn.Dense(self.num_poses, name="pose")(h).astype(jnp.float32)


def identity_pose_ce(
  id_logits: jax.Array, pose_logits: jax.Array, id_labels: jax.Array, pose_labels: jax.Array
) -> jax.Array:
  """``-log D^d_{y^d} - log D^p_{y^p}`` per example, ``[B]`` (logits upcast to float32)."""
  ce = optax.softmax_cross_entropy_with_integer_labels
  return ce(id_logits.astype(jnp.float32), id_labels) + ce(
    pose_logits.astype(jnp.float32), pose_labels
  )


def fake_class_ce(id_logits: jax.Array) -> jax.Array:
  """``-log D^d_{N_d+1}`` per example, ``[B]``: the last of the ``N_d + 1`` classes is "fake"."""
  logits = id_logits.astype(jnp.float32)
  return -jax.nn.log_softmax(logits, axis=-1)[:, -1]


def drgan_d_loss(real: tuple, fake_id_logits, id_labels, pose_labels) -> jax.Array:
  """``L_D`` (module docstring) from ``real = (id_logits, pose_logits)`` of real images with
  their labels and the identity logits of synthesized ones; a scalar."""
  return jnp.mean(identity_pose_ce(*real, id_labels, pose_labels)) + jnp.mean(
    fake_class_ce(fake_id_logits)
  )


__all__ = [
  "DrGanDiscriminator",
  "DrGanGenerator",
  "drgan_d_loss",
  "fake_class_ce",
  "identity_pose_ce",
]
