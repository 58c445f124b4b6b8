"""WIDER FACE as train / eval sources for the detector (paper preset)."""

from __future__ import annotations

import logging

import numpy as np
import PIL.Image

from vision_jax import data as vdata
from vision_jax.data.wider_face import sanitize_boxes
from vision_jax.metrics.wider_face import SETTINGS, read_wider_face_mat

log = logging.getLogger(__name__)


def _pad_faces(boxes, max_faces, what):
  g = len(boxes)
  if g > max_faces:
    log.warning("%s: %d faces, keeping the first %d (data.max_faces)", what, g, max_faces)
  out = np.zeros((max_faces, 4), np.float32)
  mask = np.zeros((max_faces,), bool)
  n = min(g, max_faces)
  out[:n] = boxes[:n]
  mask[:n] = True
  return out, mask, n


def _grey(img):
  return np.asarray(PIL.Image.fromarray(np.asarray(img, np.uint8)).convert("RGB"), np.uint8)


def train_transform(size: int, max_faces: int, *, flip: bool = True, min_face: float = 1.0):
  """Random square crop (side 0.3-1.0 of the short side, as S3FD), resize to ``size``, flip.

  Faces whose centre falls outside the crop are left out, the rest clipped; annotated boxes with
  a non-positive side and boxes that end up smaller than ``min_face`` px are dropped and counted
  (``fn.counts``; a warning every 1000 dropped boxes).
  """
  counts = {"clipped": 0, "dropped": 0}

  def fn(ex, rng):
    img = _grey(ex["image"])
    h, w = img.shape[:2]
    short = min(h, w)
    side = max(1, int(short * rng.uniform(0.3, 1.0)))
    y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    b = np.asarray(ex["boxes"], np.float32).reshape(-1, 4)
    cx, cy = b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2
    degenerate = (b[:, 2] <= 0) | (b[:, 3] <= 0)
    inside = (cx >= x0) & (cx < x0 + side) & (cy >= y0) & (cy < y0 + side) & ~degenerate
    b = b[inside] - np.array([x0, y0, 0, 0], np.float32)
    s = size / side
    crop = PIL.Image.fromarray(img[y0 : y0 + side, x0 : x0 + side]).resize((size, size))
    xyxy, _, c = sanitize_boxes(b * s, size, size, min_size=min_face)
    before = counts["dropped"] // 1000
    counts["clipped"] += c["clipped"]
    counts["dropped"] += c["dropped"] + int(degenerate.sum())
    if counts["dropped"] // 1000 > before:
      log.warning("WIDER FACE train crops: %s boxes clipped / dropped so far", counts)
    out = np.asarray(crop, np.uint8)
    if flip and rng.uniform() < 0.5:
      out = np.ascontiguousarray(out[:, ::-1])
      xyxy = np.stack([size - xyxy[:, 2], xyxy[:, 1], size - xyxy[:, 0], xyxy[:, 3]], 1)
    boxes, mask, _ = _pad_faces(xyxy, max_faces, "train image")
    return {"image": out, "boxes": boxes, "box_mask": mask}

  fn.counts = counts
  return fn


def eval_transform(size: int, max_faces: int, keep_lookup=None):
  """Resize the long side to ``size`` and pad to ``size x size``; boxes scaled, ``scale`` kept.

  ``keep_lookup(name) -> [g, 3] bool`` gives the easy / medium / hard keep-lists (from the
  toolbox ``.mat`` files); without it every face is kept in every setting.
  """

  def fn(ex, rng=None):
    del rng
    img = _grey(ex["image"])
    h, w = img.shape[:2]
    s = size / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[:nh, :nw] = np.asarray(PIL.Image.fromarray(img).resize((nw, nh)), np.uint8)
    b = np.asarray(ex["boxes"], np.float32).reshape(-1, 4)
    name = ex["name"].decode() if isinstance(ex["name"], bytes) else str(ex["name"])
    keep = keep_lookup(name) if keep_lookup is not None else np.ones((len(b), 3), bool)
    # Every annotated face stays (the keep-lists index them); degenerate ones get 1 px.
    xyxy = np.concatenate([b[:, :2], b[:, :2] + np.maximum(b[:, 2:], 1.0)], 1) * s
    boxes, mask, n = _pad_faces(xyxy, max_faces, name)
    k = np.zeros((max_faces, 3), bool)
    k[:n] = keep[:n]
    return {"image": canvas, "boxes": boxes, "box_mask": mask, "keep": k,
            "scale": np.float32(s)}  # fmt: skip

  return fn


def keep_lookup_from_mat(gt_dir: str):
  """``name -> [g, 3]`` keep-lists from ``wider_{easy,medium,hard}_val.mat``."""
  mat = read_wider_face_mat(gt_dir)
  table = {}
  for i in range(len(mat["events"])):
    for j, f in enumerate(mat["files"][i]):
      table[f] = np.stack([mat["keep"][s][i][j] for s in SETTINGS], 1)

  def lookup(name):
    stem = name.split("/")[-1].rsplit(".", 1)[0]
    if stem not in table:
      raise KeyError(f"{stem} is not in the keep-lists under {gt_dir}")
    return table[stem]

  return lookup


def wider_sources(cfg):
  """``(train, eval)`` sources over ``vj_wider_face``."""
  d = cfg.data
  kw = dict(data_dir=d.data_dir or None, manual_dir=d.wider_dir or None)
  train = vdata.load("vj_wider_face", "train", **kw)
  val = vdata.load("vj_wider_face", "validation", **kw)
  lookup = keep_lookup_from_mat(d.gt_dir) if d.gt_dir else None
  ev = eval_transform(int(d.eval_size), int(d.max_faces), lookup)
  return (
    train,
    vdata.MappedSource(val, ev),
    train_transform(int(d.train_size), int(d.max_faces), flip=bool(d.flip)),
  )
