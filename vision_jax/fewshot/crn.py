"""Class Regularization Network (CRN): a trained class basis that regularises the prototypes.

Only the abstract of the paper is public, so the equations are the natural reading of it, each
marked ``Choice:``. With ``z_i = f(x_i) in R^D`` the backbone embedding and ``B in R^{M x D}`` a
learned basis (a memory shared by the whole training set):

.. math::

  a_i = \\operatorname{softmax}_m\\big(s \\cos(z_i, B_m)\\big) \\in \\Delta^{M}, \\qquad
  \\alpha_c = \\frac{1}{K} \\sum_{i \\in S_c} a_i, \\qquad
  d_c = \\mathrm{Dec}(\\alpha_c) = W_2\\, \\mathrm{relu}(W_1 \\alpha_c + b_1) + b_2,

  \\tilde p_c = (1 - \\lambda)\\, \\mu_c + \\lambda\\, d_c, \\qquad \\mu_c = \\frac{1}{K}
  \\sum_{i \\in S_c} z_i,

and queries are classified by ``-||z_q - p~_c||^2``. Training loss per episode:

.. math::

  L = \\mathrm{CE}(-\\lVert z_q - \\tilde p \\rVert^2, y_q)
    + w_{\\mathrm{base}}\\, \\mathrm{CE}\\big(s \\cos(z_i, B), b_i\\big)
    + w_{\\mathrm{rec}}\\, \\frac{1}{N D} \\sum_c \\lVert d_c - \\mathrm{sg}(m_{b_c}) \\rVert^2,

with ``b_i`` the base-class index of sample ``i`` and ``m_b`` a running memory of base class
``b``'s mean embedding over the whole training set (an EMA over the episodes it appeared in).

Choice: the encoder is softmax attention over the L2-normalised basis with a learned temperature
  ``s`` (init ``scale_init``); ``M`` = number of base classes, so basis vector ``m`` is base class
  ``m`` and the base-class classification term trains the same attention the encoder uses.
Choice: the encoder sees only the episode's support samples, in training as at test (a novel class
  has only its K samples); the training-set-wide class memory enters only as the decoder's
  reconstruction target ``m_b``.
Choice: the decoder is a 2-layer MLP from the coefficients ``alpha_c`` (the "class domain") to
  ``R^D``; the descriptor corrects the support mean by a convex mix with weight ``lambda`` (config
  ``crn.mix``), not a replacement (``mix=1`` replaces).
Choice: the memory is ``m_b <- rho m_b + (1 - rho) mean_{i in episode, b_i = b} z_i`` (support and
  query samples, stop-gradient, ``rho = crn.memory_momentum``), initialised with the first mean
  seen; the reconstruction target is the memory after this episode's update.

References:
  "Class Regularization: Improve Few-shot Image Classification by Reducing Meta Shift"
  (arXiv:1912.08395; v2 "Semantic Regularization: ..."), 2019. Snell, Swersky, Zemel.
  "Prototypical Networks for Few-shot Learning." NeurIPS 2017, arXiv:1703.05175.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.fewshot.protonet import COSINE_EPS, prototypes


def _l2n(x):
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), COSINE_EPS)


class ClassRegularizer(nn.Module):
  """Class encoder (attention over a learned basis) + class decoder (MLP); see the module doc.

  Attributes:
    num_basis: M, basis size (= number of base classes when the base-class term is used).
    features: D, the embedding size the descriptor lives in.
    hidden: decoder hidden width.
    scale_init: initial attention temperature ``s``.
  """

  num_basis: int
  features: int
  hidden: int = 128
  scale_init: float = 10.0

  def setup(self):
    self.basis = self.param("basis", nn.initializers.normal(1.0), (self.num_basis, self.features))
    self.log_scale = self.param(
      "log_scale", lambda _: jnp.log(jnp.asarray(self.scale_init, jnp.float32))
    )
    self.dec1 = nn.Dense(self.hidden, name="dec1")
    self.dec2 = nn.Dense(self.features, name="dec2")

  def basis_logits(self, emb: jax.Array) -> jax.Array:
    """``s cos(z_i, B_m)``: ``[B, D] -> [B, M]`` (the encoder's pre-softmax scores)."""
    return jnp.exp(self.log_scale) * (_l2n(emb.astype(jnp.float32)) @ _l2n(self.basis).T)

  def decode(self, alpha: jax.Array) -> jax.Array:
    """``Dec(alpha)``: ``[N, M] -> [N, D]``."""
    return self.dec2(nn.relu(self.dec1(alpha)))

  def __call__(self, support_emb: jax.Array, support_labels: jax.Array, num_ways: int):
    """Returns ``(descriptors [N, D], alpha [N, M], basis_logits [N*K, M])``."""
    logits = self.basis_logits(support_emb)
    alpha = prototypes(jax.nn.softmax(logits, axis=-1), support_labels, num_ways)
    return self.decode(alpha), alpha, logits


def regularized_prototypes(
  regularizer: ClassRegularizer,
  reg_params,
  support_emb: jax.Array,
  support_labels: jax.Array,
  num_ways: int,
  *,
  mix: float,
) -> jax.Array:
  """``p~_c = (1 - mix) mu_c + mix Dec(alpha_c)``: ``[N*K, D] -> [N, D]`` (pure, jit-able)."""
  mu = prototypes(support_emb, support_labels, num_ways)
  desc, _, _ = regularizer.apply({"params": reg_params}, support_emb, support_labels, num_ways)
  return (1.0 - mix) * mu + mix * desc
