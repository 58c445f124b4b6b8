"""Hashing network: any backbone + a Dense hash layer + tanh."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class HashNetwork(nn.Module):
  r"""Backbone embedding → Dense(L) → ``tanh``: relaxed codes :math:`h \in (-1, 1)^L`.

  .. math:: h = \tanh\big(\beta (W^\top f_\theta(x) + b)\big), \qquad
     \text{binary code } \mathrm{sign}(h)

  ``scale`` (β, default 1) is a call argument for HashNet's continuation
  (:func:`vision_jax.hashing.hashnet_scale`); ``"hash_logits"`` are taken before the scale.

  The backbone is any module called as ``backbone(x, train=train)`` that returns
  ``(output, intermediates)`` with ``intermediates["embedding"]`` of shape ``[B, D]`` (every
  `vision_jax.models` backbone does; build it with ``num_classes=None`` to skip its classifier).
  The momentum (EMA) network of DMUH is the same module applied with EMA parameters.

  Choice: hash layer initialised N(0, 0.01²) with zero bias, as DeepHash-pytorch does for
  ResNet backbones; computed in float32.

  Attributes:
    backbone: the feature extractor.
    num_bits: code length L.
    kernel_init: hash-layer kernel initialiser.

  Returns (from ``__call__``):
    ``(h, intermediates)``: ``h`` float32 ``[B, L]``; ``intermediates`` is the backbone's dict
    plus ``"hash_logits"`` (pre-tanh, ``[B, L]``) and ``"hash"`` (= ``h``).
  """

  backbone: nn.Module
  num_bits: int
  kernel_init: Callable[..., Any] = nn.initializers.normal(stddev=0.01)

  @nn.compact
  def __call__(
    self, x: jax.Array, *, train: bool, scale: float | jax.Array = 1.0
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    if self.num_bits < 1:
      raise ValueError(f"num_bits must be >= 1, got {self.num_bits}.")
    _, intermediates = self.backbone(x, train=train)
    if not isinstance(intermediates, dict) or "embedding" not in intermediates:
      raise ValueError(
        "backbone must return (output, intermediates) with intermediates['embedding'] [B, D]; "
        f"got intermediates keys {list(intermediates) if isinstance(intermediates, dict) else None}."
      )
    emb = intermediates["embedding"].astype(jnp.float32)
    logits = nn.Dense(self.num_bits, kernel_init=self.kernel_init, dtype=jnp.float32, name="hash")(
      emb.reshape(emb.shape[0], -1)
    )
    h = jnp.tanh(scale * logits)
    return h, {**intermediates, "hash_logits": logits, "hash": h}


def binarize(h: jax.typing.ArrayLike) -> jax.Array:
  """Binary codes ``sign(h)`` as int8 ±1, with ``h = 0`` mapped to +1 (never 0)."""
  return jnp.where(jnp.asarray(h) >= 0, 1, -1).astype(jnp.int8)
