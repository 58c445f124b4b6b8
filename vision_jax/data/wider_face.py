"""WIDER FACE: ``wider_face_split/wider_face_{train,val}_bbx_gt.txt`` + images by event folder.

Annotation format (one block per image)::

    0--Parade/0_Parade_marchingband_1_849.jpg
    1
    449 330 122 149 0 0 0 0 0 0

i.e. the image path relative to ``WIDER_<split>/images``, the face count ``g``, then ``g`` lines
``x1 y1 w h blur expression illumination invalid occlusion pose``. An image with 0 faces is
followed by one all-zero box line, which is not a face.

References:
  Yang, Luo, Loy, Tang. "WIDER FACE: A Face Detection Benchmark." CVPR 2016. arXiv:1511.06523.
"""

from __future__ import annotations

import logging
import os
from typing import NamedTuple

import numpy as np
import tensorflow_datasets as tfds

from vision_jax.data.builders import ManualDirBuilder

FLAG_NAMES = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
SPLIT_DIRS = {"train": "WIDER_train", "validation": "WIDER_val"}
ANNOTATION_FILES = {
  "train": "wider_face_split/wider_face_train_bbx_gt.txt",
  "validation": "wider_face_split/wider_face_val_bbx_gt.txt",
}

log = logging.getLogger(__name__)


class WiderFaceImage(NamedTuple):
  """One annotated image: ``name`` (``event/file.jpg``), ``boxes`` float32 ``[g, 4]`` ``x, y, w,
  h`` and ``flags`` int32 ``[g, 6]`` in :data:`FLAG_NAMES` order."""

  name: str
  boxes: np.ndarray
  flags: np.ndarray


def read_wider_face_annotations(path: str | os.PathLike) -> list[WiderFaceImage]:
  """Parses a ``wider_face_*_bbx_gt.txt`` file.

  Args:
    path: the annotation file.

  Returns:
    One :class:`WiderFaceImage` per block, in file order; 0-face images have ``[0, 4]`` boxes
    (their all-zero placeholder line is consumed, not returned).

  Raises:
    ValueError: a count or box line that does not parse, or a file that ends mid-block; the
      message names the file and the 1-based line number.
  """
  with open(path, encoding="utf-8") as f:
    lines = f.read().splitlines()
  out = []
  i = 0
  n = len(lines)

  def need(k, what):
    if k >= n:
      raise ValueError(f"{path}:{k + 1}: file ended; expected {what}.")
    return lines[k].strip()

  while i < n:
    name = lines[i].strip()
    if not name:
      i += 1
      continue
    if not name.lower().endswith((".jpg", ".jpeg", ".png")):
      raise ValueError(f"{path}:{i + 1}: expected an image path 'event/file.jpg', got {name!r}.")
    raw = need(i + 1, f"the face count of {name}")
    try:
      g = int(raw)
      if g < 0:
        raise ValueError
    except ValueError:
      raise ValueError(f"{path}:{i + 2}: expected the face count of {name}, got {raw!r}.") from None
    rows = max(g, 1)  # a 0-face image still has one placeholder line
    vals = np.zeros((rows, 10), np.float64)
    for r in range(rows):
      k = i + 2 + r
      parts = need(k, f"box line {r + 1} of {max(g, 1)} for {name}").split()
      try:
        if len(parts) < 4:
          raise ValueError
        v = [float(x) for x in parts[:10]]
      except ValueError:
        raise ValueError(
          f"{path}:{k + 1}: expected 'x y w h blur expression illumination invalid occlusion "
          f"pose' for {name}, got {lines[k]!r}."
        ) from None
      vals[r, : len(v)] = v
    if g == 0:
      vals = vals[:0]
    out.append(WiderFaceImage(name, vals[:, :4].astype(np.float32), vals[:, 4:10].astype(np.int32)))
    i += 2 + rows
  return out


def sanitize_boxes(
  boxes: np.ndarray, height: int, width: int, *, min_size: float = 1.0
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
  """Clips ``x, y, w, h`` boxes to the image and drops those left with a side below ``min_size``.

  Args:
    boxes: ``[g, 4]`` ``x, y, w, h``.
    height, width: image size.
    min_size: smallest side kept after clipping.

  Returns:
    ``(boxes [g', 4] x1, y1, x2, y2, kept [g] bool, counts)`` with ``counts =
    {"clipped": ..., "dropped": ...}`` for the caller's log line.
  """
  b = np.asarray(boxes, np.float32).reshape(-1, 4)
  xyxy = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], 1)
  clipped = np.stack(
    [np.clip(xyxy[:, 0], 0, width), np.clip(xyxy[:, 1], 0, height),
     np.clip(xyxy[:, 2], 0, width), np.clip(xyxy[:, 3], 0, height)], 1,
  )  # fmt: skip
  kept = np.minimum(clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]) >= min_size
  changed = np.any(np.abs(clipped - xyxy) > 0, axis=1) & kept
  return clipped[kept], kept, {"clipped": int(changed.sum()), "dropped": int((~kept).sum())}


class VjWiderFace(ManualDirBuilder):
  """WIDER FACE train / validation from the official files.

  Manual dir layout: ``wider_face_split/wider_face_{train,val}_bbx_gt.txt`` and
  ``WIDER_{train,val}/images/<event>/<file>.jpg`` (a split whose annotation file is missing is
  skipped; the test split has no public annotations and is not built).

  Element: ``{"image": uint8 [H, W, 3] (original JPEG bytes), "name": "event/file.jpg",
  "event": "0--Parade", "boxes": float32 [g, 4] x, y, w, h as annotated (unclipped, in file
  order, so the eval keep-lists' indices still apply), "blur" ... "pose": int32 [g]}``.

  Choice: boxes are stored as annotated; clipping and dropping of degenerate boxes happens in the
    training transform (:func:`sanitize_boxes`), because the evaluation keep-lists index the
    original boxes. The builder logs how many boxes have a non-positive width or height.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Original JPEGs + bbx_gt annotations with all flags, array_record."}
  REQUIRED_FILES = ("wider_face_split",)
  INSTALL_HINT = (
    "Download WIDER_train.zip, WIDER_val.zip and wider_face_split.zip from "
    "http://shuoyang1213.me/WIDERFACE/ and unzip them into one directory DIR so that "
    "DIR/wider_face_split/wider_face_val_bbx_gt.txt and DIR/WIDER_val/images/0--Parade/ exist."
  )
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTALL_HINT

  def _info(self) -> tfds.core.DatasetInfo:
    feats = {
      "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
      "name": tfds.features.Text(),
      "event": tfds.features.Text(),
      "boxes": tfds.features.Tensor(shape=(None, 4), dtype=np.float32),
    }
    feats.update({k: tfds.features.Tensor(shape=(None,), dtype=np.int32) for k in FLAG_NAMES})
    return self.dataset_info(
      feats,
      description="WIDER FACE face boxes with blur/expression/illumination/invalid/occlusion/pose.",
      homepage="http://shuoyang1213.me/WIDERFACE/",
    )

  def _split_generators(self, dl_manager):
    d = self.manual_path(dl_manager)
    splits = {}
    for split, ann in ANNOTATION_FILES.items():
      if os.path.exists(os.path.join(d, ann)):
        splits[split] = self._generate_examples(d, split)
    if not splits:
      raise FileNotFoundError(
        f"vj_wider_face: neither {', '.join(os.path.join(d, a) for a in ANNOTATION_FILES.values())}"
        f" exists. Fix: {self.INSTALL_HINT}"
      )
    return splits

  def _generate_examples(self, manual_dir: str, split: str):
    ann = os.path.join(manual_dir, ANNOTATION_FILES[split])
    root = os.path.join(manual_dir, SPLIT_DIRS[split], "images")
    images = read_wider_face_annotations(ann)
    degenerate = 0
    for i, im in enumerate(images):
      path = os.path.join(root, im.name)
      if not os.path.exists(path):
        raise FileNotFoundError(
          f"vj_wider_face: {ann} lists {im.name}, but {path} is missing. Fix: {self.INSTALL_HINT}"
        )
      with open(path, "rb") as f:
        data = f.read()
      degenerate += int(np.sum(np.min(im.boxes[:, 2:], axis=1) <= 0)) if len(im.boxes) else 0
      ex = {
        "image": data,
        "name": im.name,
        "event": im.name.split("/")[0],
        "boxes": im.boxes,
      }
      ex.update({k: im.flags[:, j].copy() for j, k in enumerate(FLAG_NAMES)})
      yield i, ex
    log.warning(
      "vj_wider_face %s: %d images, %d boxes with non-positive width or height (kept as "
      "annotated; training drops them).",
      split,
      len(images),
      degenerate,
    )
