"""DVG-Face losses: generator terms (official weights as defaults), the paper's extra terms (KL,
adversarial), the identity sampler's VAE objective and the recognition-stage contrastive loss.

Notation: ``x_a, x_b`` a real same-identity pair (modality ``a`` = NIR / sketch, ``b`` = VIS /
photo, the modality the identity network ``F`` was trained on), ``f = F(x_b)`` its identity,
``f̃`` a sampled identity, ``z_m`` the unit attribute codes, ``π`` a derangement of the batch,
``cos`` the batch mean of dot products of unit vectors. The official generator objective
(BradyFU/DVG-Face ``train_generator.py``) is

.. math::

  \\mathcal{L}_G = \\lambda_{ort} \\sum_m \\overline{|\\langle z_m, f \\rangle|}
  + \\lambda_{pix} \\sum_m \\Big[\\|\\hat x_m - x_m\\|_1 + \\lambda_{swap}\\|\\hat x^{\\pi}_m - x_m\\|_1
  + \\lambda_{fake}\\|\\tilde x_m - x_m\\|_1\\Big]
  - \\lambda_{ip} \\Big[\\sum_m \\cos(F(\\hat x_m), f) + \\cos(F(\\tilde x_m), \\tilde f)
  + \\lambda_{pair}\\big(\\cos(F(\\hat x_a), F(\\hat x_b)) + \\cos(F(\\tilde x_a), F(\\tilde x_b))\\big)\\Big]

with ``x̂_m = G_m(f, z_m)``, ``x̂^π_m = G_m(f_π, z_m)``, ``x̃_m = G_m(f̃, z_m)`` and weights
``λ_ort = 50, λ_pix = 100, λ_swap = λ_fake = 0.1, λ_ip = 0.1, λ_pair = 0.05``. The paper adds
``λ_kl · KL`` (variational encoders) and ``λ_adv · L_adv`` (a discriminator), both off by default.

References:
  C. Fu, X. Wu, Y. Hu, H. Huang, R. He. "DVG-Face: Dual Variational Generation for Heterogeneous
  Face Recognition." IEEE TPAMI 2021. arXiv:2009.09399.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from vision_jax.hfr.model import l2_normalize
from vision_jax.losses._validate import check_scalar


@dataclasses.dataclass(frozen=True)
class GeneratorWeights:
  """Weights of the generator objective (defaults: the official ``train_generator.py``).

  Attributes:
    ort: orthogonality of attribute codes vs the real identity (official 50).
    pix: pixel L1 (official 100); ``swap`` / ``fake`` scale the swapped-identity and sampled
      images' L1 to their attribute source (official 0.1 each).
    ip: angular identity preservation (official 0.1); ``pair`` scales the pairwise identity
      consistency inside it (official 0.05).
    kl: KL of variational encoders to N(0, I) (paper; not in the official code: 0 = off).
    adv: non-saturating adversarial term from the pair discriminator (paper; 0 = off).
  """

  ort: float = 50.0
  pix: float = 100.0
  swap: float = 0.1
  fake: float = 0.1
  ip: float = 0.1
  pair: float = 0.05
  kl: float = 0.0
  adv: float = 0.0

  def __post_init__(self):
    for f in dataclasses.fields(self):
      check_scalar(f"GeneratorWeights.{f.name}", getattr(self, f.name), low=0.0)


def cosine(u: jax.Array, v: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Row-wise cosine of ``[B, D]`` arrays, ``[B]`` (float32; each side L2-normalised with eps,
  finite gradient at zero vectors)."""
  return jnp.sum(l2_normalize(u, eps) * l2_normalize(v, eps), -1)


def orthogonality(z: jax.Array, identity: jax.Array) -> jax.Array:
  """``|<z_i, f_i>|`` per example, ``[B]``, for unit codes ``z [B, D]`` and identities ``[B, D]``.

  Raises:
    ValueError: the two have different shapes (the attribute size must equal the identity's).
  """
  if z.shape != identity.shape:
    raise ValueError(
      f"orthogonality: z {z.shape} and identity {identity.shape} must match (attr_dim must equal "
      "the identity feature size)"
    )
  return jnp.abs(jnp.sum(z.astype(jnp.float32) * identity.astype(jnp.float32), -1))


def l1(x: jax.Array, y: jax.Array) -> jax.Array:
  """Mean absolute error per example, ``[B]`` (its batch mean is PyTorch's ``L1Loss``)."""
  if x.shape != y.shape:
    raise ValueError(f"l1: shapes {x.shape} and {y.shape} differ")
  d = jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32))
  return jnp.mean(d.reshape(d.shape[0], -1), -1)


def gaussian_kl(mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """``KL(N(mu, exp(logvar)) || N(0, I))`` summed over dimensions, ``[B]``.

  .. math:: \\mathrm{KL} = \\tfrac12 \\sum_d (\\mu_d^2 + e^{\\ell_d} - 1 - \\ell_d)
  """
  if mu.shape != logvar.shape:
    raise ValueError(f"gaussian_kl: mu {mu.shape} and logvar {logvar.shape} differ")
  mu, lv = mu.astype(jnp.float32), logvar.astype(jnp.float32)
  return 0.5 * jnp.sum(mu**2 + jnp.exp(lv) - 1.0 - lv, -1)


def d_nonsaturating(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """Discriminator loss ``softplus(-D(real)) + softplus(D(fake))`` per example, ``[B]``."""
  return jax.nn.softplus(-real_logits) + jax.nn.softplus(fake_logits)


def g_nonsaturating(fake_logits: jax.Array) -> jax.Array:
  """Non-saturating generator loss ``softplus(-D(fake))`` per example, ``[B]``."""
  return jax.nn.softplus(-fake_logits)


def random_derangement(rng: jax.Array, n: int) -> jax.Array:
  """A uniformly random permutation of ``0..n-1`` with no fixed point, ``int32 [n]``.

  Rejection sampling (``lax.while_loop``): a uniform permutation is a derangement with probability
  ``≈ 1/e``, so about 2.7 draws on average; the result is uniform over derangements.

  Raises:
    ValueError: ``n < 2`` (no derangement exists).
  """
  if not isinstance(n, int) or n < 2:
    raise ValueError(f"random_derangement: n={n!r}; a derangement needs n >= 2")
  idx = jnp.arange(n)

  def draw(key):
    return jax.random.permutation(key, n)

  def cond(c):
    return jnp.any(c[1] == idx)

  def body(c):
    key, _ = c
    key, sub = jax.random.split(key)
    return key, draw(sub)

  key, sub = jax.random.split(rng)
  _, perm = jax.lax.while_loop(cond, body, (key, draw(sub)))
  return perm.astype(jnp.int32)


def hfr_contrastive(
  f_a: jax.Array,
  f_b: jax.Array,
  perm: jax.Array,
  *,
  margin: float = 0.5,
  negative_weight: float = 0.1,
) -> jax.Array:
  """The recognition stage's contrastive loss on generated pairs, per pair ``[B]``.

  .. math::

    \\ell_i = -\\cos(f^a_i, f^b_i) + w \\, \\max(0, \\cos(f^a_i, f^b_{\\pi(i)}) - m)

  Positives are the two images of one sampled identity, negatives the deranged pairing ``π``
  (official ``train_lightcnn.py``: ``m = 0.5, w = 0.1``, total weight 0.001 against the CE).

  Args:
    f_a, f_b: ``[B, D]`` embeddings of the generated ``a`` / ``b`` images (any norm).
    perm: ``int [B]`` derangement (`random_derangement`).
    margin: cosine hinge ``m``. negative_weight: ``w``.

  Raises:
    ValueError: shapes disagree.
  """
  if f_a.shape != f_b.shape or f_a.ndim != 2 or perm.shape != f_a.shape[:1]:
    raise ValueError(
      f"hfr_contrastive: f_a {f_a.shape}, f_b {f_b.shape} must be equal [B, D], perm {perm.shape} "
      "must be [B]"
    )
  check_scalar("margin", margin, low=-1.0, high=1.0)
  check_scalar("negative_weight", negative_weight, low=0.0)
  pos = cosine(f_a, f_b)
  neg = cosine(f_a, f_b[perm])
  return -pos + negative_weight * jax.nn.relu(neg - margin)


def sampler_loss(
  feature: jax.Array,
  reconstruction: jax.Array,
  mu: jax.Array,
  logvar: jax.Array,
  *,
  kl_weight: float = 1e-3,
) -> jax.Array:
  """Identity-sampler VAE objective per example: ``(1 - cos(f̂, f)) + β KL``, ``[B]``.

  Choice: the official sampler's training code is unreleased; its decoder ends in an L2
  normalisation, so the reconstruction is angular; ``β`` is ours (``kl_weight``).
  """
  check_scalar("kl_weight", kl_weight, low=0.0)
  return (1.0 - cosine(reconstruction, feature)) + kl_weight * gaussian_kl(mu, logvar)


def generator_terms(out: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Unweighted batch-mean terms of the generator objective from one forward pass.

  Args:
    out: ``x_a, x_b`` real images; ``rec_a, rec_b`` reconstructions; ``swap_a, swap_b``
      identity-swapped decodes; ``fake_a, fake_b`` sampled-identity decodes (all
      ``[B, H, W, C]``); ``z_a, z_b`` unit codes and ``id_real, id_fake`` unit identities
      ``[B, D]``; ``f_rec_a, f_rec_b, f_fake_a, f_fake_b`` identity-network embeddings ``[B, D]``;
      optional ``mu_a, logvar_a, mu_b, logvar_b`` (variational encoders) and ``d_fake`` ``[B]``
      (discriminator logits of the fake pair).

  Returns:
    ``ort, pix_rec, pix_swap, pix_fake, ip, pair`` (the ``ip``/``pair`` entries are *negative*
    cosines) and, when their inputs are present, ``kl`` and ``adv``.
  """
  m = jnp.mean
  t = {
    "ort": m(orthogonality(out["z_a"], out["id_real"]))
    + m(orthogonality(out["z_b"], out["id_real"])),
    "pix_rec": m(l1(out["rec_a"], out["x_a"])) + m(l1(out["rec_b"], out["x_b"])),
    "pix_swap": m(l1(out["swap_a"], out["x_a"])) + m(l1(out["swap_b"], out["x_b"])),
    "pix_fake": m(l1(out["fake_a"], out["x_a"])) + m(l1(out["fake_b"], out["x_b"])),
    "ip": -(
      m(cosine(out["f_rec_a"], out["id_real"]))
      + m(cosine(out["f_rec_b"], out["id_real"]))
      + m(cosine(out["f_fake_a"], out["id_fake"]))
      + m(cosine(out["f_fake_b"], out["id_fake"]))
    ),
    "pair": -(
      m(cosine(out["f_rec_a"], out["f_rec_b"])) + m(cosine(out["f_fake_a"], out["f_fake_b"]))
    ),
  }
  if "mu_a" in out:
    t["kl"] = 0.5 * (
      m(gaussian_kl(out["mu_a"], out["logvar_a"])) + m(gaussian_kl(out["mu_b"], out["logvar_b"]))
    )
  if "d_fake" in out:
    t["adv"] = m(g_nonsaturating(out["d_fake"]))
  return t


def generator_total(terms: dict[str, jax.Array], w: GeneratorWeights) -> jax.Array:
  """``Σ`` weighted terms (see the module docstring)."""
  total = (
    w.ort * terms["ort"]
    + w.pix * (terms["pix_rec"] + w.swap * terms["pix_swap"] + w.fake * terms["pix_fake"])
    + w.ip * (terms["ip"] + w.pair * terms["pair"])
  )
  if w.kl > 0 and "kl" in terms:
    total = total + w.kl * terms["kl"]
  if w.adv > 0 and "adv" in terms:
    total = total + w.adv * terms["adv"]
  return total


__all__ = [
  "GeneratorWeights",
  "cosine",
  "d_nonsaturating",
  "g_nonsaturating",
  "gaussian_kl",
  "generator_terms",
  "generator_total",
  "hfr_contrastive",
  "l1",
  "orthogonality",
  "random_derangement",
  "sampler_loss",
]
