"""One square anchor per feature-map position on each FPN level (HAMBox / S3FD style)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# The unofficial reading of the paper: P2-P7, sizes 16..512 scaled by 0.68.
PAPER_STRIDES = (4, 8, 16, 32, 64, 128)
PAPER_SIZES = (16, 32, 64, 128, 256, 512)
PAPER_SCALE = 0.68


def feature_sizes(image_size: tuple[int, int], strides: Sequence[int]) -> list[tuple[int, int]]:
  """``ceil(H / s), ceil(W / s)`` per stride (the size a stride-``s`` conv stack produces)."""
  h, w = image_size
  return [(math.ceil(h / s), math.ceil(w / s)) for s in strides]


def anchor_boxes(
  image_size: tuple[int, int],
  strides: Sequence[int] = PAPER_STRIDES,
  sizes: Sequence[float] = PAPER_SIZES,
  *,
  scale: float = PAPER_SCALE,
) -> np.ndarray:
  r"""Anchors ``x1, y1, x2, y2`` for every level, level-major then row-major (y, then x).

  The anchor at position :math:`(i, j)` of the level with stride :math:`s` and size :math:`S`
  is the square of side :math:`\sigma S` centred at :math:`((j + 0.5) s, (i + 0.5) s)`, where
  :math:`\sigma` is ``scale``. The ordering matches a head that reshapes each level's
  ``[B, H_l, W_l, C]`` output to ``[B, H_l W_l, C]`` and concatenates levels.

  Args:
    image_size: ``(H, W)`` of the network input.
    strides: stride per level.
    sizes: base anchor side per level (same length as ``strides``).
    scale: multiplier on ``sizes``.

  Returns:
    float32 ``[A, 4]`` with ``A = sum_l ceil(H/s_l) ceil(W/s_l)``.

  Raises:
    ValueError: length mismatch, non-positive stride/size/scale or image size.

  Choice: the 0.68 scale and sizes 16..512 are the unofficial repository's reading of the paper
    (the paper text was not available); centres at ``(j + 0.5) s`` as in S3FD.
  """
  if len(strides) != len(sizes) or not strides:
    raise ValueError(
      f"strides {tuple(strides)} and sizes {tuple(sizes)} must be non-empty and of equal length."
    )
  if min(image_size) <= 0 or min(strides) <= 0 or min(sizes) <= 0 or scale <= 0:
    raise ValueError(
      f"image_size={tuple(image_size)}, strides={tuple(strides)}, sizes={tuple(sizes)}, "
      f"scale={scale} must all be positive."
    )
  out = []
  for (fh, fw), s, size in zip(feature_sizes(image_size, strides), strides, sizes):
    cy, cx = np.meshgrid((np.arange(fh) + 0.5) * s, (np.arange(fw) + 0.5) * s, indexing="ij")
    half = 0.5 * scale * size
    c = np.stack([cx.ravel(), cy.ravel()], -1)
    out.append(np.concatenate([c - half, c + half], -1))
  return np.concatenate(out).astype(np.float32)


def anchor_levels(image_size: tuple[int, int], strides: Sequence[int]) -> np.ndarray:
  """int32 ``[A]``: the level index of each anchor (same order as :func:`anchor_boxes`)."""
  return np.concatenate(
    [np.full(fh * fw, i, np.int32) for i, (fh, fw) in enumerate(feature_sizes(image_size, strides))]
  )
