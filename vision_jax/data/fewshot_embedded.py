"""An offline few-shot set: procedural stroke glyphs + regions of scikit-image's natural photos.

Two kinds of class, both rendered as ``size x size`` grayscale uint8 (one channel):

- **Glyph classes** ("Omniglot-like", procedurally generated, not Omniglot): a class is 2-4 random
  quadratic Bezier strokes; every sample re-draws them with jittered control points, a random
  small affine map and stroke width, then an elastic deformation (Simard et al. 2003: a Gaussian-
  smoothed random displacement field), white on black.
- **Photo-region classes** (real pixels): each of the 16 natural images bundled with scikit-image
  is cut into a ``grid x grid`` set of regions; a class is one region, and every sample is a
  random crop inside it (40-75 % of the region's side), a random horizontal flip and a
  brightness / contrast jitter.

The class split is stratified by kind, so base, val and novel hold glyphs and photo regions in
the same proportions, at the same size and colour treatment (no domain shift between splits).
Everything is a pure function of ``seed``.

References:
  Simard, Steinkraus, Platt. "Best Practices for Convolutional Neural Networks Applied to Visual
  Document Analysis." ICDAR 2003 (elastic deformation). Lake, Salakhutdinov, Tenenbaum.
  "Human-level concept learning through probabilistic program induction." Science 2015
  (Omniglot, whose stroke-composed characters the glyphs imitate).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import PIL.Image
import PIL.ImageDraw


@dataclasses.dataclass(frozen=True)
class FewShotArrays:
  """Images, labels, class names and the class split of a few-shot dataset held in memory."""

  images: np.ndarray  # uint8 [n, H, W, C]
  labels: np.ndarray  # int64 [n]
  class_names: tuple[str, ...]
  splits: dict  # {"base": [ids], "val": [ids], "novel": [ids]}


def _bezier(p: np.ndarray, n: int = 24) -> np.ndarray:
  t = np.linspace(0.0, 1.0, n)[:, None]
  return (1 - t) ** 2 * p[0] + 2 * (1 - t) * t * p[1] + t**2 * p[2]


def _elastic(img: np.ndarray, rng: np.random.Generator, alpha: float, sigma: float) -> np.ndarray:
  from scipy.ndimage import gaussian_filter, map_coordinates

  h, w = img.shape
  dx = gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma) * alpha
  dy = gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma) * alpha
  yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  return map_coordinates(img, [yy + dy, xx + dx], order=1, mode="constant")


def glyph_images(num_classes: int, per_class: int, *, size: int = 28, seed: int = 0) -> np.ndarray:
  """``uint8 [num_classes, per_class, size, size]`` procedural stroke glyphs (see module doc)."""
  rng = np.random.default_rng([seed, 0])
  canvas = 2 * size
  out = np.zeros((num_classes, per_class, size, size), np.uint8)
  for c in range(num_classes):
    strokes = [rng.uniform(0.15, 0.85, (3, 2)) for _ in range(int(rng.integers(2, 5)))]
    for s in range(per_class):
      r = np.random.default_rng([seed, 1, c, s])
      ang = np.deg2rad(r.uniform(-12, 12))
      sc = r.uniform(0.85, 1.1)
      rot = sc * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
      shift = r.uniform(-0.06, 0.06, 2)
      im = PIL.Image.new("L", (canvas, canvas), 0)
      draw = PIL.ImageDraw.Draw(im)
      width = int(r.integers(3, 6))
      for p in strokes:
        q = p + r.normal(0.0, 0.035, p.shape)
        q = (q - 0.5) @ rot.T + 0.5 + shift
        pts = [tuple(v) for v in _bezier(q) * canvas]
        draw.line(pts, fill=255, width=width, joint="curve")
      a = _elastic(np.asarray(im, np.float64), r, alpha=canvas * 0.06, sigma=canvas * 0.08)
      small = PIL.Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).resize(
        (size, size), PIL.Image.BILINEAR
      )
      out[c, s] = np.asarray(small)
  return out


def photo_region_images(
  photos: dict[str, np.ndarray], per_class: int, *, grid: int = 2, size: int = 28, seed: int = 0
) -> tuple[np.ndarray, list[str]]:
  """Random crops of ``grid x grid`` regions of each photo: ``uint8 [C, per_class, size, size]``
  and the class names ``"<photo>@r<row>c<col>"``."""
  out, names = [], []
  for k, (name, img) in enumerate(sorted(photos.items())):
    gray = np.asarray(PIL.Image.fromarray(img).convert("L"), np.float64)
    h, w = gray.shape
    rh, rw = h // grid, w // grid
    for i in range(grid):
      for j in range(grid):
        region = gray[i * rh : (i + 1) * rh, j * rw : (j + 1) * rw]
        cls = np.zeros((per_class, size, size), np.uint8)
        for s in range(per_class):
          r = np.random.default_rng([seed, 2, k, i, j, s])
          side = int(min(rh, rw) * r.uniform(0.4, 0.75))
          y0 = int(r.integers(0, rh - side + 1))
          x0 = int(r.integers(0, rw - side + 1))
          crop = region[y0 : y0 + side, x0 : x0 + side]
          if r.random() < 0.5:
            crop = crop[:, ::-1]
          crop = (crop - crop.mean()) * r.uniform(0.75, 1.25) + crop.mean() + r.uniform(-25, 25)
          small = PIL.Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8)).resize(
            (size, size), PIL.Image.BILINEAR
          )
          cls[s] = np.asarray(small)
        out.append(cls)
        names.append(f"{name.rsplit('.', 1)[0]}@r{i}c{j}")
  return np.stack(out), names


def _split_ids(ids: np.ndarray, fractions, rng) -> list[np.ndarray]:
  ids = rng.permutation(ids)
  n_base = int(round(fractions[0] * len(ids)))
  n_val = int(round(fractions[1] * len(ids)))
  return [ids[:n_base], ids[n_base : n_base + n_val], ids[n_base + n_val :]]


def embedded_fewshot(
  *,
  num_glyph_classes: int = 56,
  photo_grid: int = 2,
  per_class: int = 50,
  size: int = 28,
  fractions: tuple[float, float, float] = (0.6, 0.15, 0.25),
  seed: int = 0,
) -> FewShotArrays:
  """The embedded few-shot dataset (module doc): glyph + photo-region classes, stratified split.

  Defaults: 56 glyph + 64 photo-region classes = 120 classes of 50 samples, 28x28x1, split
  72 base / 18 val / 30 novel.

  Raises:
    ValueError: fractions that do not sum to 1 or leave a split empty, ``per_class < 2``.
    ImportError / FileNotFoundError: scikit-image (and its bundled images) missing.
  """
  from vision_jax.data.offline import skimage_natural_images

  if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) <= 0:
    raise ValueError(f"fractions={fractions!r} must be 3 positive numbers summing to 1.")
  if per_class < 2:
    raise ValueError(f"per_class={per_class} must be >= 2.")
  glyphs = glyph_images(num_glyph_classes, per_class, size=size, seed=seed)
  photos, photo_names = photo_region_images(
    skimage_natural_images(), per_class, grid=photo_grid, size=size, seed=seed
  )
  allc = np.concatenate([glyphs, photos]) if num_glyph_classes else photos
  names = tuple([f"glyph{c:03d}" for c in range(num_glyph_classes)] + photo_names)
  num_classes = len(allc)
  rng = np.random.default_rng([seed, 3])
  parts = [
    _split_ids(np.arange(num_glyph_classes), fractions, rng),
    _split_ids(np.arange(num_glyph_classes, num_classes), fractions, rng),
  ]
  splits = {
    name: sorted(int(c) for p in parts for c in p[i])
    for i, name in enumerate(("base", "val", "novel"))
  }
  for name, ids in splits.items():
    if not ids:
      raise ValueError(f"split {name!r} is empty with fractions={fractions!r}.")
  images = allc.reshape(num_classes * per_class, size, size, 1)
  labels = np.repeat(np.arange(num_classes, dtype=np.int64), per_class)
  return FewShotArrays(images=images, labels=labels, class_names=names, splits=splits)
