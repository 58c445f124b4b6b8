"""Frontalization losses: pixel L1, identity preserving, adversarial (global + parsing-guided),
total variation and symmetry.

Notation: ``x`` a probe (non-frontal) face, ``y`` its ground-truth frontal view, ``ŷ = G(x)``,
``F`` the frozen recognition network's unit embedding, ``D_g`` the global discriminator, ``ℓ_r``
the pooled logit of parsing region ``r`` (`vision_jax.frontalization.parsing`), ``P_r`` the
images where region ``r`` is present. The generator objective is

.. math::

  \\mathcal L_G = \\lambda_{pix}\\,\\overline{|\\hat y - y|}
  + \\lambda_{ip}\\,\\big(1 - \\cos(F(\\hat y), F(y))\\big)
  + \\lambda_{adv}\\,g(D_g(\\hat y))
  + \\lambda_{par} \\sum_r \\operatorname{mean}_{P_r} g(\\ell_r(\\hat y))
  + \\lambda_{tv}\\,\\mathrm{TV}(\\hat y) + \\lambda_{sym}\\,\\overline{|\\hat y - \\hat y^{\\leftrightarrow}|}

and the discriminators' (one update over both, ``D_p`` only when it exists)

.. math::
  \\mathcal L_D = d(D_g(y), D_g(\\hat y)) + \\sum_r \\operatorname{mean}_{P_r} d(\\ell_r(y), \\ell_r(\\hat y)),

with the non-saturating pair ``d(a, b) = softplus(-a) + softplus(b)``, ``g(b) = softplus(-b)`` or
the hinge pair ``d(a, b) = relu(1 - a) + relu(1 + b)``, ``g(b) = -b``. ``TV`` is the anisotropic
mean absolute difference of vertical and horizontal neighbours, ``ŷ^↔`` the left-right mirror,
``overline{·}`` a per-image mean over pixels and channels.

Choice: the identity term is ``1 - cos`` of the recognition net's L2-normalised embedding (the
feature evaluation ranks by); TP-GAN uses an L1 distance of LightCNN's last two layers.
Choice: symmetry is in pixel space on the full image (TP-GAN also uses it in Laplacian space and
on the masked face); with a light that is not frontal the ground truth itself is not symmetric,
so ``λ_sym`` stays small. Choice: the discriminators' loss is unweighted; the weights only enter
``L_G``. Default weights are TP-GAN's (``λ_sym = 0.3, λ_adv = 1e-3, λ_ip = 3e-3, λ_tv = 1e-4``,
``λ_pix = 1``, as recalled, not checked against the PDF) with ``λ_par = λ_adv``; the M2FPA paper's
weights were not retrieved.

References:
  Huang, Zhang, Li, He. "Beyond Face Rotation: Global and Local Perception GAN for Photorealistic
  and Identity Preserving Frontal View Synthesis." ICCV 2017, arXiv:1704.04086.
  Li, Wu, Hu, He, Sun. "M2FPA: A Multi-Yaw Multi-Pitch High-Quality Dataset and Benchmark for
  Facial Pose Analysis." ICCV 2019, arXiv:1904.00168.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from vision_jax.hfr.losses import cosine, d_nonsaturating, g_nonsaturating, l1
from vision_jax.losses._validate import check_scalar
from vision_jax.utils.arrays import masked_mean

ADVERSARIAL = ("nonsaturating", "hinge")


@dataclasses.dataclass(frozen=True)
class FrontalizationWeights:
  """The ``λ`` of ``L_G`` (see the module docstring); each must be finite and >= 0."""

  pixel: float = 1.0
  identity: float = 3e-3
  adv: float = 1e-3
  parsing_adv: float = 1e-3
  tv: float = 1e-4
  sym: float = 0.3

  def __post_init__(self):
    for f in dataclasses.fields(self):
      check_scalar(f"FrontalizationWeights.{f.name}", getattr(self, f.name), low=0.0)


def _check_kind(kind: str) -> None:
  if kind not in ADVERSARIAL:
    raise ValueError(f"adversarial={kind!r}; expected one of {ADVERSARIAL}")


def d_adversarial(real_logits: jax.Array, fake_logits: jax.Array, kind: str = "nonsaturating"):
  """Per-example discriminator loss ``d(a, b)`` (non-saturating or hinge), ``[B]``."""
  _check_kind(kind)
  real, fake = real_logits.astype(jnp.float32), fake_logits.astype(jnp.float32)
  if kind == "hinge":
    return jax.nn.relu(1.0 - real) + jax.nn.relu(1.0 + fake)
  return d_nonsaturating(real, fake)


def g_adversarial(fake_logits: jax.Array, kind: str = "nonsaturating") -> jax.Array:
  """Per-example generator loss ``g(b)``: ``softplus(-b)`` or ``-b`` (hinge), ``[B]``."""
  _check_kind(kind)
  fake = fake_logits.astype(jnp.float32)
  return -fake if kind == "hinge" else g_nonsaturating(fake)


def region_d_loss(real, fake, present, kind: str = "nonsaturating") -> jax.Array:
  """``Σ_r mean_{P_r} d(ℓ_r(y), ℓ_r(ŷ))`` for region logits ``[R, B]`` and ``present [R, B]``."""
  per = d_adversarial(real, fake, kind)
  return jnp.sum(masked_mean(per, present, axis=1))


def region_g_loss(fake, present, kind: str = "nonsaturating") -> jax.Array:
  """``Σ_r mean_{P_r} g(ℓ_r(ŷ))`` for region logits ``[R, B]`` and ``present [R, B]``."""
  per = g_adversarial(fake, kind)
  return jnp.sum(masked_mean(per, present, axis=1))


def identity_distance(f_fake: jax.Array, f_real: jax.Array) -> jax.Array:
  """``1 - cos(f̂, f)`` per example ``[B]`` (rows L2-normalised with eps inside)."""
  if f_fake.shape != f_real.shape:
    raise ValueError(f"identity_distance: shapes {f_fake.shape} and {f_real.shape} differ")
  return 1.0 - cosine(f_fake.astype(jnp.float32), f_real.astype(jnp.float32))


def total_variation(x: jax.Array) -> jax.Array:
  """Anisotropic TV of ``[B, H, W, C]`` images, per example ``[B]``:
  ``mean|x[i+1, j] - x[i, j]| + mean|x[i, j+1] - x[i, j]|``."""
  if x.ndim != 4:
    raise ValueError(f"total_variation expects [B, H, W, C], got shape {x.shape}")
  x = x.astype(jnp.float32)
  dv = jnp.abs(x[:, 1:] - x[:, :-1]).mean(axis=(1, 2, 3))
  dh = jnp.abs(x[:, :, 1:] - x[:, :, :-1]).mean(axis=(1, 2, 3))
  return dv + dh


def symmetry(x: jax.Array) -> jax.Array:
  """Left-right asymmetry ``mean|x - x[:, :, ::-1]|`` of ``[B, H, W, C]`` images, ``[B]``."""
  if x.ndim != 4:
    raise ValueError(f"symmetry expects [B, H, W, C], got shape {x.shape}")
  return l1(x, x[:, :, ::-1])


def pixel_l1(y_hat: jax.Array, y: jax.Array) -> jax.Array:
  """Mean absolute error to the frontal ground truth per example, ``[B]``."""
  return l1(y_hat, y)


def generator_total(terms: dict[str, jax.Array], w: FrontalizationWeights) -> jax.Array:
  """``L_G`` from batch-mean terms ``{"pixel", "identity", "tv", "sym"[, "adv"][, "parsing_adv"]}``
  (an absent adversarial term counts 0)."""
  total = (
    w.pixel * terms["pixel"] + w.identity * terms["identity"] + w.tv * terms["tv"]
    + w.sym * terms["sym"]
  )  # fmt: skip
  if "adv" in terms:
    total = total + w.adv * terms["adv"]
  if "parsing_adv" in terms:
    total = total + w.parsing_adv * terms["parsing_adv"]
  return total


__all__ = [
  "ADVERSARIAL",
  "FrontalizationWeights",
  "d_adversarial",
  "g_adversarial",
  "generator_total",
  "identity_distance",
  "pixel_l1",
  "region_d_loss",
  "region_g_loss",
  "symmetry",
  "total_variation",
]
