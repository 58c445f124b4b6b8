"""Small real datasets that ship inside installed Python packages (no download, no manual dir)."""

import os

import numpy as np

from vision_jax.data.pipeline import ArraySource

# Natural images shipped in scikit-image's package data (no pooch download needed).
SKIMAGE_NATURAL_IMAGES = (
  "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
  "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg", "moon.png",
  "motorcycle_left.png", "page.png", "retina.jpg", "rocket.jpg", "text.png",
)  # fmt: skip


def _need(module: str, extra: str):
  try:
    return __import__(module)
  except ImportError:
    raise ImportError(
      f"{module} is not installed; pip install 'vision_jax[data]' (or pip install {extra})."
    ) from None


def lfw_subset_source(*, include_non_faces: bool = False) -> ArraySource:
  """scikit-image's ``lfw_subset``: 100 real 25x25 grayscale LFW face crops (+100 non-faces).

  Element ``{"image": uint8 [25, 25, 1], "label": int64}``: with faces only the label is the
  image index (each face is its own pseudo-identity; the file has no identity labels); with
  ``include_non_faces`` it is 1 for the first 100 (faces), 0 for the rest.

  Raises:
    ImportError: scikit-image missing (names the pip command).
  """
  _need("skimage", "scikit-image")
  import skimage.data

  x = skimage.data.lfw_subset()  # float64 [200, 25, 25] in [0, 1]
  images = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)[..., None]
  if include_non_faces:
    return ArraySource({"image": images, "label": (np.arange(len(images)) < 100).astype(np.int64)})
  return ArraySource({"image": images[:100], "label": np.arange(100, dtype=np.int64)})


def digits_source() -> ArraySource:
  """scikit-learn ``load_digits``: 1,797 8x8 digits; ``{"image": uint8 [8, 8, 1], "label"}``.

  Pixels 0..16 are scaled to 0..255 as ``round(v * 255 / 16)``.
  """
  _need("sklearn", "scikit-learn")
  from sklearn.datasets import load_digits

  d = load_digits()
  images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  return ArraySource({"image": images, "label": d.target.astype(np.int64)})


def skimage_natural_images(
  names: tuple[str, ...] = SKIMAGE_NATURAL_IMAGES,
) -> dict[str, np.ndarray]:
  """The natural images bundled with scikit-image, as uint8 ``[H, W, 3]`` (grey -> RGB).

  Returns:
    ``{file name: image}`` for each of ``names`` found in ``skimage/data``.
  """
  _need("skimage", "scikit-image")
  import PIL.Image
  import skimage

  root = os.path.join(os.path.dirname(skimage.__file__), "data")
  out = {}
  for name in names:
    path = os.path.join(root, name)
    if os.path.exists(path):
      with PIL.Image.open(path) as img:
        out[name] = np.asarray(img.convert("RGB"), np.uint8)
  if not out:
    raise FileNotFoundError(f"none of {names} found under {root}; reinstall scikit-image.")
  return out


# scikit-image pictures (``skimage.data.<name>()``) used as pseudo-identities, in this order.
PSEUDO_IDENTITY_NATURAL = (
  "astronaut",
  "camera",
  "coffee",
  "chelsea",
  "rocket",
  "immunohistochemistry",
  "moon",
  "page",
  "text",
  "coins",
  "horse",
  "hubble_deep_field",
  "motorcycle_left",
  "retina",
  "cat",
  "brick",
  "grass",
  "gravel",
)


def pseudo_identity_bases() -> list[np.ndarray]:
  """Grayscale float64 ``[0, 1]`` base pictures, one per *pseudo-identity* of the embedded
  open-set face experiments (IR-Softmax, DVG-Face): the 200 real 25x25 images of scikit-image's
  ``lfw_subset`` (100 faces, 100 non-face patches), then each scikit-image picture of
  :data:`PSEUDO_IDENTITY_NATURAL` that loads offline (others are skipped)."""
  import skimage.data as skd
  from skimage.color import rgb2gray

  bases = [np.asarray(im, np.float64) for im in skd.lfw_subset()]  # 200 x 25x25 in [0,1]
  for name in PSEUDO_IDENTITY_NATURAL:
    try:
      im = getattr(skd, name)()
    except Exception:  # noqa: BLE001 - some images need optional downloads (pooch); skip them
      continue
    im = np.asarray(im)
    if im.ndim == 3:
      im = rgb2gray(im[..., :3])
    im = im.astype(np.float64)
    if im.max() > 1.0:
      im = im / 255.0
    bases.append(im)
  return bases
