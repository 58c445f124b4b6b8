"""Image transforms shared by the data pipelines and the tasks.

Host side (NumPy / PIL, per example, inside ``train_dataset`` or a ``MappedSource``):
:func:`resize_image` (any decoded photo -> ``size x size`` uint8 grey or RGB),
:func:`random_horizontal_flip`, :func:`random_view` (the embedded pseudo-identities' jittered
crops), and the ImageNet crops :func:`random_resized_crop` (Inception-style,
:func:`random_resized_box`) and :func:`resize_center_crop`. Device side (inside the jitted step, on the uint8 batch, so the
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


def random_view(base: np.ndarray, rng: np.random.Generator, out: int) -> np.ndarray:
  """A random view of a grayscale float ``[0, 1]`` picture ``[H, W]``, as uint8 ``[out, out, 1]``:
  a square-ish crop of 70-95 % of each side, a horizontal flip with probability 1/2, a bilinear
  resize to ``out``, contrast x U(0.7, 1.3) and brightness + U(-0.15, 0.15) around the mean,
  Gaussian noise (std 0.04), clipped to ``[0, 1]``. Host-side NumPy, drawn from ``rng``."""
  import PIL.Image

  h, w = base.shape
  s = rng.uniform(0.7, 0.95)
  ch, cw = max(int(h * s), 4), max(int(w * s), 4)
  y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
  crop = base[y0 : y0 + ch, x0 : x0 + cw]
  if rng.random() < 0.5:
    crop = crop[:, ::-1]
  img = PIL.Image.fromarray((np.clip(crop, 0, 1) * 255).astype(np.uint8)).resize(
    (out, out), PIL.Image.BILINEAR
  )
  a = np.asarray(img, np.float64) / 255.0
  a = (a - a.mean()) * rng.uniform(0.7, 1.3) + a.mean() + rng.uniform(-0.15, 0.15)
  a = a + rng.normal(0, 0.04, a.shape)
  return (np.clip(a, 0, 1) * 255).astype(np.uint8)[..., None]


def random_resized_box(
  height: int,
  width: int,
  rng: np.random.Generator,
  scale: tuple[float, float] = (0.08, 1.0),
  ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
  r"""Inception-style random crop box ``(top, left, h, w)`` of an ``height x width`` image.

  Up to 10 tries: area :math:`a \sim U(\text{scale}) \cdot HW`, aspect
  :math:`r = e^{u}, u \sim U(\log \text{ratio})`, :math:`w = \text{round}(\sqrt{a r})`,
  :math:`h = \text{round}(\sqrt{a / r})`; the first box that fits is placed uniformly. If none fits,
  the largest centred box with aspect clipped to ``ratio``. Same procedure as torchvision's
  ``RandomResizedCrop.get_params`` (drawn from ``rng`` instead of the torch generator).
  """
  area = height * width
  lo, hi = np.log(ratio[0]), np.log(ratio[1])
  for _ in range(10):
    a = area * rng.uniform(scale[0], scale[1])
    r = np.exp(rng.uniform(lo, hi))
    w, h = int(round(np.sqrt(a * r))), int(round(np.sqrt(a / r)))
    if 0 < w <= width and 0 < h <= height:
      return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
  aspect = width / height
  if aspect < ratio[0]:
    w, h = width, int(round(width / ratio[0]))
  elif aspect > ratio[1]:
    w, h = int(round(height * ratio[1])), height
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


def _pil_rgb(image: np.ndarray):
  import PIL.Image

  img = np.asarray(image, np.uint8)
  return PIL.Image.fromarray(img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img).convert(
    "RGB"
  )


def random_resized_crop(
  image: np.ndarray,
  rng: np.random.Generator,
  size: int = 224,
  scale: tuple[float, float] = (0.08, 1.0),
  ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
  """Crops :func:`random_resized_box` of a decoded image, then resizes the crop (PIL bilinear, as
  torchvision's ``resized_crop`` on PIL images) to ``[size, size, 3]`` uint8 (grey input is
  replicated to RGB)."""
  import PIL.Image

  im = _pil_rgb(image)
  top, left, h, w = random_resized_box(im.height, im.width, rng, scale, ratio)
  out = im.crop((left, top, left + w, top + h)).resize((size, size), PIL.Image.BILINEAR)
  return np.asarray(out, np.uint8)


def resize_center_crop(image: np.ndarray, size: int = 224, resize: int = 256) -> np.ndarray:
  """ImageNet eval crop: shorter side to ``resize`` (PIL bilinear; the longer side
  ``int(resize * long / short)``), then the centred ``size x size`` window; uint8 ``[size, size, 3]``.

  Raises:
    ValueError: ``size > resize``.
  """
  import PIL.Image

  if size > resize:
    raise ValueError(f"resize_center_crop: size={size} must be <= resize={resize}.")
  im = _pil_rgb(image)
  w, h = im.size
  nw, nh = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
  im = im.resize((nw, nh), PIL.Image.BILINEAR)
  top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
  return np.asarray(im.crop((left, top, left + size, top + size)), np.uint8)
