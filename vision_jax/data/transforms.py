"""Image transforms shared by the data pipelines and the tasks.

Host side (NumPy / PIL, per example, inside ``train_dataset`` or a ``MappedSource``):
:func:`resize_image` (any decoded photo -> ``size x size`` uint8 grey or RGB) and
:func:`random_horizontal_flip`. Device side (inside the jitted step, on the uint8 batch, so the
host ships 4x fewer bytes than float32): :func:`image_to_float`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Example = dict[str, Any]


def image_to_float(image: jax.Array, mean: float = 0.5, std: float = 0.5) -> jax.Array:
  """uint8 ``[B, H, W, C]`` -> float32 :math:`(x / 255 - \\text{mean}) / \\text{std}`.

  Example:
    >>> import jax.numpy as jnp
    >>> image_to_float(jnp.array([0, 255], jnp.uint8))
    Array([-1.,  1.], dtype=float32)
  """
  return (image.astype(jnp.float32) / 255.0 - mean) / std


def resize_image(image: np.ndarray, size: int, *, channels: int = 3) -> np.ndarray:
  """A decoded image -> ``[size, size, channels]`` uint8 (bilinear resize when needed).

  Args:
    image: uint8 ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or ``[H, W, 4]``.
    size: output side.
    channels: 3 (grey is replicated to RGB, alpha dropped) or 1 (colour -> PIL's ITU-R 601 luma).

  Returns:
    uint8 ``[size, size, channels]``.

  Raises:
    ValueError: ``channels`` not 1 or 3.
  """
  import PIL.Image

  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 or 3, got {channels!r}.")
  img = np.asarray(image, np.uint8)
  im = PIL.Image.fromarray(img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img)
  im = im.convert("L" if channels == 1 else "RGB")
  if im.size != (size, size):
    im = im.resize((size, size), PIL.Image.BILINEAR)
  arr = np.asarray(im, np.uint8)
  return arr[..., None] if arr.ndim == 2 else arr


def random_horizontal_flip(example: Example, rng: np.random.Generator) -> Example:
  """``transform`` for ``train_dataset``: flips ``example["image"]`` ``[H, W, C]`` with p = 0.5.

  Draws one ``rng.random()`` per call; the flipped image is a contiguous copy.
  """
  if rng.random() < 0.5:
    example = dict(example, image=np.ascontiguousarray(example["image"][:, ::-1]))
  return example
