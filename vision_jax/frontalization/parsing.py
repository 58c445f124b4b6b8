"""Parsing regions for the parsing-guided discriminator: masks from a parsing map and the
mask-weighted pooling of a patch-logit map.

A parsing map ``P [B, H, W]`` holds one label per pixel (`vision_jax.data.synthetic_faces.PARTS`:
0 background, 1 skin, 2 hair, 3 eyes/brows, 4 nose, 5 mouth). Region ``r`` is a set of labels
``S_r``; its mask and masked image are

.. math::
  m_r = \\mathbb 1[P \\in S_r] \\in \\{0, 1\\}^{B \\times H \\times W}, \\qquad x_r = x \\odot m_r .

A region tower of the parsing-guided discriminator maps ``x_r`` to a patch-logit map
``L_r [B, h, w]`` (``H = k h``). Its per-image logit pools ``L_r`` over the region only, with the
mask averaged onto the patch grid as weights:

.. math::
  \\bar m_r[i, j] = \\frac{1}{k^2} \\sum_{(u, v) \\in \\text{cell}(i, j)} m_r[u, v], \\qquad
  \\ell_r = \\frac{\\sum_{ij} \\bar m_r[i, j]\\, L_r[i, j]}{\\sum_{ij} \\bar m_r[i, j]},

and ``present_r = sum_ij m̄_r > 0``; an image without the region gives ``ℓ_r = 0`` and is left out
of that region's loss.

Choice: three regions (hair; skin; inner features = eyes/brows + nose + mouth), our reading of
the paper's "parsing-guided" split (the paper's exact regions were not retrieved; the only
unofficial code also makes three masked images). The masks come from the *ground-truth frontal*
parsing and are applied to both the real and the generated frontal face, so that D compares the
same region of both; the paper runs a pretrained face parser instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.data.synthetic_faces import EYES_BROWS, HAIR, MOUTH, NOSE, PARTS, SKIN

DEFAULT_REGIONS: tuple[tuple[str, tuple[int, ...]], ...] = (
  ("hair", (HAIR,)),
  ("skin", (SKIN,)),
  ("features", (EYES_BROWS, NOSE, MOUTH)),
)


def check_regions(
  regions: Sequence[tuple[str, Sequence[int]]],
) -> tuple[tuple[str, tuple[int, ...]], ...]:
  """Validates ``((name, labels), ...)``; returns it as tuples.

  Raises:
    ValueError: empty, a repeated name, an empty label set, a label outside ``PARTS`` or in two
      regions.
  """
  out, seen = [], {}
  if not regions:
    raise ValueError("regions must name at least one (name, labels) region")
  for name, labels in regions:
    labels = tuple(int(v) for v in labels)
    if not isinstance(name, str) or not name or name in {n for n, _ in out}:
      raise ValueError(f"regions: name {name!r} must be a non-empty string used once")
    if not labels:
      raise ValueError(f"regions[{name!r}] has no labels")
    for v in labels:
      if not 0 <= v < len(PARTS):
        raise ValueError(f"regions[{name!r}] holds label {v}, outside 0..{len(PARTS) - 1} {PARTS}")
      if v in seen:
        raise ValueError(f"label {v} ({PARTS[v]}) is in both regions {seen[v]!r} and {name!r}")
      seen[v] = name
    out.append((name, labels))
  return tuple(out)


def region_masks(parsing: jax.Array, regions=DEFAULT_REGIONS) -> jax.Array:
  """Float32 masks ``[R, B, H, W]`` of integer parsing maps ``[B, H, W]``."""
  parsing = jnp.asarray(parsing)
  return jnp.stack(
    [jnp.isin(parsing, jnp.asarray(labels)).astype(jnp.float32) for _, labels in regions]
  )


def region_pool(
  logits: jax.Array, mask: jax.Array, eps: float = 1e-6
) -> tuple[jax.Array, jax.Array]:
  """Mask-weighted mean of a patch-logit map over one region (see the module docstring).

  Args:
    logits: ``[B, h, w]`` patch logits of one region tower.
    mask: ``[B, H, W]`` the region's mask, ``H = k h`` and ``W = k w`` for an integer ``k``.
    eps: floor of the weight sum (only matters for an absent region, whose logit is 0).

  Returns:
    ``(logit [B], present bool [B])``.

  Raises:
    ValueError: the mask's size is not an integer multiple of the logit map's.
  """
  b, h, w = logits.shape
  if (
    mask.shape[0] != b
    or mask.shape[1] % h
    or mask.shape[2] % w
    or mask.shape[1] // h != mask.shape[2] // w
  ):
    raise ValueError(
      f"region_pool: mask {tuple(mask.shape)} must be [B, k h, k w] for logits {tuple(logits.shape)}"
    )
  k = mask.shape[1] // h
  m = mask.astype(jnp.float32).reshape(b, h, k, w, k).mean(axis=(2, 4))
  total = jnp.sum(m, axis=(1, 2))
  logit = jnp.sum(m * logits.astype(jnp.float32), axis=(1, 2)) / jnp.maximum(total, eps)
  return logit, total > 0


def check_parsing_batch(batch: Mapping, *, key: str = "frontal_parsing", image_key: str = "frontal",
                        where: str = "batch") -> None:  # fmt: skip
  """Raises ValueError when the parsing maps the parsing-guided D needs are missing or malformed.

  Args:
    batch: dict with ``image_key [B, H, W, C]`` and ``key`` int ``[B, H, W]``.
    key, image_key: the batch keys. where: what to call the batch in the message.
  """
  if key not in batch or batch[key] is None:
    raise ValueError(
      f"{where} has no {key!r} (the frontal parsing maps the parsing-guided discriminator needs; "
      f"keys present: {sorted(batch)}). Provide parsing maps or turn the parsing D off "
      "(gen.parsing_d=False)."
    )
  p, x = batch[key], batch[image_key]
  if tuple(p.shape) != tuple(x.shape[:3]):
    raise ValueError(
      f"{where}[{key!r}] has shape {tuple(p.shape)}; expected [B, H, W] = {tuple(x.shape[:3])} "
      f"(the shape of {image_key!r} without channels)"
    )
  if not np.issubdtype(np.dtype(p.dtype), np.integer):
    raise ValueError(f"{where}[{key!r}] must hold integer labels, got dtype {p.dtype}")


__all__ = ["DEFAULT_REGIONS", "check_parsing_batch", "check_regions", "region_masks", "region_pool"]
