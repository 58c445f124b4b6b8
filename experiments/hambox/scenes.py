"""Embedded detection scenes: real LFW face crops pasted onto real scikit-image backgrounds.

Named honestly: these are *synthetic compositions of real pixels*, not WIDER FACE. Faces are the
first 100 images of scikit-image's ``lfw_subset`` (25x25 grayscale LFW crops), distractors are
its 100 non-face crops (unannotated), backgrounds are scikit-image's bundled natural images
minus those that contain unannotated faces (``astronaut``, ``camera``). Everything is grayscale
so colour is no cue. Boxes are exact (the paste rectangle).
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import PIL.ImageFilter

from vision_jax.data import ArraySource, skimage_natural_images
from vision_jax.data.offline import SKIMAGE_NATURAL_IMAGES

# Backgrounds with people's faces in them would be unannotated positives.
EXCLUDED_BACKGROUNDS = ("astronaut.png", "camera.png")
BACKGROUNDS = tuple(n for n in SKIMAGE_NATURAL_IMAGES if n not in EXCLUDED_BACKGROUNDS)


def _lfw_crops():
  import skimage.data

  x = np.clip(np.rint(skimage.data.lfw_subset() * 255.0), 0, 255).astype(np.uint8)
  return x[:100], x[100:]


def _grey_backgrounds():
  imgs = skimage_natural_images(BACKGROUNDS)
  return [np.asarray(PIL.Image.fromarray(v).convert("L"), np.uint8) for v in imgs.values()]


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
  return np.asarray(PIL.Image.fromarray(img).resize((w, h), PIL.Image.BILINEAR), np.uint8)


def _overlaps(box, boxes, margin=1):
  for b in boxes:
    if (
      box[0] < b[2] + margin
      and b[0] < box[2] + margin
      and box[1] < b[3] + margin
      and (b[1] < box[3] + margin)
    ):
      return True
  return False


def make_face_scenes(
  num_images: int,
  *,
  seed: int,
  face_ids: range | tuple[int, ...],
  canvas: int = 128,
  faces_per_image: tuple[int, int] = (1, 6),
  distractors_per_image: tuple[int, int] = (0, 3),
  face_size: tuple[int, int] = (8, 64),
  easy_size: int = 32,
  medium_size: int = 16,
  max_faces: int = 8,
  contrast: tuple[float, float] = (0.7, 1.3),
  face_blur: float = 0.0,
  noise: float = 0.0,
) -> ArraySource:
  """Builds ``num_images`` scenes.

  Each scene: a random crop (side uniform in ``[canvas, min(H, W)]``) of a random background,
  resized to ``canvas x canvas``; ``faces_per_image`` faces (inclusive range) with side drawn
  log-uniformly from ``face_size``, each with a random contrast / brightness jitter, placed
  without overlap; the same for non-face distractor crops.

  Args:
    num_images: scenes to build.
    seed: generator seed (scenes are a pure function of it).
    face_ids: which of the 100 faces may be used (disjoint sets for train and test).
    canvas: image side.
    faces_per_image, distractors_per_image: inclusive count ranges.
    face_size: inclusive side range in pixels.
    easy_size, medium_size: keep-list thresholds: easy = side >= easy_size, medium = side >=
      medium_size, hard = all faces (nested as in WIDER FACE).
    max_faces: padded ground-truth length ``G``.
    contrast: range of the per-crop contrast factor (brightness shift is uniform in +-30).
    face_blur: Gaussian blur sigma of each pasted crop, uniform in ``[0, face_blur]`` px.
    noise: sigma of additive Gaussian pixel noise per image, uniform in ``[0, noise]``.

  Returns:
    ``ArraySource`` of ``{"image": uint8 [canvas, canvas, 1], "boxes": float32 [G, 4] x1 y1 x2
    y2, "box_mask": bool [G], "keep": bool [G, 3], "num_faces": int32}``.

  Raises:
    ValueError: ``faces_per_image`` upper end above ``max_faces``, bad sizes or empty ids.
  """
  if faces_per_image[1] > max_faces or faces_per_image[0] < 0:
    raise ValueError(f"faces_per_image={faces_per_image} must lie in [0, max_faces={max_faces}].")
  if not 1 <= face_size[0] <= face_size[1] <= canvas:
    raise ValueError(f"face_size={face_size} must satisfy 1 <= min <= max <= canvas={canvas}.")
  face_ids = tuple(face_ids)
  if not face_ids or min(face_ids) < 0 or max(face_ids) >= 100:
    raise ValueError("face_ids must be non-empty indices into the 100 lfw_subset faces.")
  faces, nonfaces = _lfw_crops()
  bgs = _grey_backgrounds()
  rng = np.random.default_rng(seed)
  images = np.zeros((num_images, canvas, canvas, 1), np.uint8)
  boxes = np.zeros((num_images, max_faces, 4), np.float32)
  mask = np.zeros((num_images, max_faces), bool)
  keep = np.zeros((num_images, max_faces, 3), bool)
  lo, hi = np.log(face_size[0]), np.log(face_size[1] + 1)
  for n in range(num_images):
    bg = bgs[rng.integers(len(bgs))]
    side = int(rng.integers(canvas, min(bg.shape) + 1))
    y0 = int(rng.integers(0, bg.shape[0] - side + 1))
    x0 = int(rng.integers(0, bg.shape[1] - side + 1))
    img = _resize(bg[y0 : y0 + side, x0 : x0 + side], canvas, canvas).astype(np.float32)
    placed = []
    g = 0
    n_faces = int(rng.integers(faces_per_image[0], faces_per_image[1] + 1))
    n_distr = int(rng.integers(distractors_per_image[0], distractors_per_image[1] + 1))
    for kind in ["face"] * n_faces + ["distractor"] * n_distr:
      s = min(int(np.exp(rng.uniform(lo, hi))), face_size[1])
      for _ in range(20):
        x, y = int(rng.integers(0, canvas - s + 1)), int(rng.integers(0, canvas - s + 1))
        box = (x, y, x + s, y + s)
        if not _overlaps(box, placed):
          break
      else:
        continue
      src = (
        faces[face_ids[rng.integers(len(face_ids))]]
        if kind == "face"
        else nonfaces[rng.integers(100)]
      )
      patch = _resize(src, s, s)
      if face_blur > 0:
        r = float(rng.uniform(0, face_blur))
        patch = np.asarray(PIL.Image.fromarray(patch).filter(PIL.ImageFilter.GaussianBlur(r)))
      patch = patch.astype(np.float32) * rng.uniform(*contrast) + rng.uniform(-30, 30)
      img[y : y + s, x : x + s] = patch
      placed.append(box)
      if kind == "face":
        boxes[n, g] = box
        mask[n, g] = True
        keep[n, g] = (s >= easy_size, s >= medium_size, True)
        g += 1
    if noise > 0:
      img = img + rng.normal(0, rng.uniform(0, noise), img.shape)
    images[n, :, :, 0] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
  return ArraySource(
    {"image": images, "boxes": boxes, "box_mask": mask, "keep": keep,
     "num_faces": mask.sum(1).astype(np.int32)}
  )  # fmt: skip


def flip_transform(example: dict, rng: np.random.Generator) -> dict:
  """Random horizontal flip of the image and its ``x1 y1 x2 y2`` boxes (padding rows kept 0)."""
  if rng.uniform() >= 0.5:
    return example
  ex = dict(example)
  w = ex["image"].shape[1]
  ex["image"] = np.ascontiguousarray(ex["image"][:, ::-1])
  b = ex["boxes"].copy()
  m = ex["box_mask"]
  b[m, 0], b[m, 2] = w - example["boxes"][m, 2], w - example["boxes"][m, 0]
  ex["boxes"] = b
  return ex
