"""M2FPA (Multi-yaw Multi-pitch Facial Pose Analysis) from its image tree.

M2FPA has 397,544 images of 229 subjects with varying yaw, pitch, attribute, illumination and
accessory; its poses are 62 (yaw, pitch) pairs, not a full yaw x pitch product, so poses are an
explicit set read from the data and every pose label is checked against it.

Assumed layout (relative to the manual dir)::

  <Split>/<subject>/<attribute>/<expression>/<illumination><layer>-<camera>.<jpg|jpeg|png>

e.g. ``Train/001/White/Neutral/a4-7.jpg``: split ``Train``, subject ``001``, attribute ``White``,
expression ``Neutral``, illumination ``a``, camera ``(layer 4, camera 7)``. The illumination
prefix is the (possibly empty) run of non-digits before the first digit of the file stem.

Choice: the official release's naming is not documented where we could read it. The layout above
is the one the only public unofficial loader (atheeth96/pose_invariant_face_detector,
``Utils/gen_dataframe.py``) walks; it treats ``<illum>4-7.jpg`` in the same folder as the frontal
ground truth, so ``FRONTAL_CAMERA = (4, 7)``. Both are hints, not facts: which camera is frontal
is not stored (the caller picks the gallery), and the camera -> (yaw, pitch) table is read from an
optional ``camera_poses.csv`` (``layer,camera,yaw,pitch`` per line, ``#`` comments) in the manual
dir; without it ``yaw``/``pitch`` are NaN and poses are known only as ``(layer, camera)``.

References:
  Li, Wu, Hu, He, Sun. "M2FPA: A Multi-Yaw Multi-Pitch High-Quality Dataset and Benchmark for
  Facial Pose Analysis." ICCV 2019, arXiv:1904.00168.
"""

import math
import os
import re
from typing import NamedTuple

import numpy as np
import tensorflow_datasets as tfds

from vision_jax.data.builders import ManualDirBuilder

M2FPA_IMAGE_EXTS = (".jpg", ".jpeg", ".png")
FRONTAL_CAMERA = (4, 7)
CAMERA_POSES_FILE = "camera_poses.csv"
_STEM_RE = re.compile(r"^(?P<illumination>\D*)(?P<layer>\d+)-(?P<camera>\d+)$")


class M2fpaRecord(NamedTuple):
  path: str  # relative to the manual dir, '/'-separated
  split: str
  subject: str
  attribute: str
  expression: str
  illumination: str
  layer: int
  camera: int


def parse_m2fpa_path(relpath: str) -> M2fpaRecord:
  """Parses ``<Split>/<subject>/<attribute>/<expression>/<illum><layer>-<camera>.jpg``.

  Raises:
    ValueError: the path does not have five components or its file name does not parse; the
      message names the path and the expected form.
  """
  parts = relpath.replace(os.sep, "/").split("/")
  form = "<Split>/<subject>/<attribute>/<expression>/<illumination><layer>-<camera>.jpg"
  if len(parts) != 5 or not all(parts):
    raise ValueError(f"M2FPA path {relpath!r} does not have the form {form}.")
  stem, ext = os.path.splitext(parts[4])
  m = _STEM_RE.match(stem)
  if m is None or ext.lower() not in M2FPA_IMAGE_EXTS:
    raise ValueError(
      f"M2FPA file name {parts[4]!r} (in {relpath!r}) does not parse as "
      "<illumination><layer>-<camera>.jpg (e.g. 'a4-7.jpg')."
    )
  return M2fpaRecord(
    path="/".join(parts),
    split=parts[0],
    subject=parts[1],
    attribute=parts[2],
    expression=parts[3],
    illumination=m.group("illumination"),
    layer=int(m.group("layer")),
    camera=int(m.group("camera")),
  )


def list_m2fpa(root: str) -> list[M2fpaRecord]:
  """Every image under ``root``, parsed and sorted by path.

  Files with other extensions (``Thumbs.db``, ``.txt``) are skipped; an image whose path does not
  parse raises.

  Raises:
    FileNotFoundError: ``root`` is not a directory.
    ValueError: an image path that does not parse (named).
  """
  if not os.path.isdir(root):
    raise FileNotFoundError(f"M2FPA root {root!r} is not a directory.")
  records = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for fn in sorted(filenames):
      if fn.lower().endswith(M2FPA_IMAGE_EXTS):
        rel = os.path.relpath(os.path.join(dirpath, fn), root)
        records.append(parse_m2fpa_path(rel))
  return sorted(records, key=lambda r: r.path)


def read_camera_poses(path: str) -> dict[tuple[int, int], tuple[float, float]]:
  """Reads ``layer,camera,yaw,pitch`` lines into ``{(layer, camera): (yaw, pitch)}``.

  Raises:
    ValueError: a malformed line, a duplicate camera or a duplicate (yaw, pitch); the message
      names ``path:line``.
  """
  table, seen = {}, {}
  with open(path) as f:
    for lineno, line in enumerate(f, 1):
      line = line.split("#", 1)[0].strip()
      if not line or line.replace(" ", "").lower() == "layer,camera,yaw,pitch":
        continue
      fields = [s.strip() for s in line.split(",")]
      try:
        layer, cam, yaw, pitch = int(fields[0]), int(fields[1]), float(fields[2]), float(fields[3])
        if len(fields) != 4 or not (math.isfinite(yaw) and math.isfinite(pitch)):
          raise ValueError
      except (ValueError, IndexError):
        raise ValueError(
          f"{path}:{lineno}: expected 'layer,camera,yaw,pitch' (ints, ints, degrees), got {line!r}."
        ) from None
      if (layer, cam) in table:
        raise ValueError(f"{path}:{lineno}: camera {layer}-{cam} is listed twice.")
      if (yaw, pitch) in seen:
        raise ValueError(
          f"{path}:{lineno}: pose (yaw={yaw}, pitch={pitch}) is already camera "
          f"{seen[(yaw, pitch)][0]}-{seen[(yaw, pitch)][1]}."
        )
      table[(layer, cam)] = (yaw, pitch)
      seen[(yaw, pitch)] = (layer, cam)
  return table


def m2fpa_poses(
  records: list[M2fpaRecord], camera_poses: dict[tuple[int, int], tuple[float, float]]
) -> np.ndarray:
  """The explicit pose set present in ``records``: float64 ``[P, 2]`` (yaw, pitch), sorted.

  Raises:
    ValueError: a record's camera is missing from ``camera_poses`` (names the file and camera).
  """
  used = set()
  for r in records:
    if (r.layer, r.camera) not in camera_poses:
      raise ValueError(
        f"M2FPA image {r.path!r}: camera {r.layer}-{r.camera} is not in the camera pose table "
        f"({len(camera_poses)} cameras); add a 'layer,camera,yaw,pitch' line to {CAMERA_POSES_FILE}."
      )
    used.add(camera_poses[(r.layer, r.camera)])
  return np.asarray(sorted(used), np.float64).reshape(-1, 2)


class VjM2fpa(ManualDirBuilder):
  """M2FPA from its image tree; one TFDS split per top-level folder (``Train`` -> ``train``).

  Element: ``{"image": uint8 [H, W, 3] (original bytes), "label": index of the subject in the
  sorted subjects of all splits, "subject", "attribute", "expression", "illumination": bytes,
  "layer", "camera": int64, "yaw", "pitch": float32 degrees (NaN without camera_poses.csv), "path": bytes}``, sorted by
  path. Which camera is frontal is left to the protocol (default ``FRONTAL_CAMERA``).

  Raises (at build time):
    FileNotFoundError: no images under the manual dir.
    ValueError: an image path that does not parse, or (with camera_poses.csv) an image whose
      camera the table lacks; the message names the file.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Original encoded images, array_record."}
  INSTALL_HINT = (
    "M2FPA is distributed on request by its authors (CASIA, arXiv:1904.00168). Pass "
    "manual_dir=DIR where DIR/Train/<subject>/<attribute>/<expression>/<illum><layer>-<cam>.jpg "
    f"and optionally DIR/{CAMERA_POSES_FILE} (layer,camera,yaw,pitch)."
  )
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTALL_HINT

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text()
    return self.dataset_info(
      {
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
        "label": np.int64,
        "subject": text,
        "attribute": text,
        "expression": text,
        "illumination": text,
        "layer": np.int64,
        "camera": np.int64,
        "yaw": np.float32,
        "pitch": np.float32,
        "path": text,
      },
      description="M2FPA multi-yaw multi-pitch faces with subject, condition and camera fields.",
      homepage="https://arxiv.org/abs/1904.00168",
    )

  def _split_generators(self, dl_manager):
    d = self.manual_path(dl_manager)
    records = list_m2fpa(d)
    if not records:
      raise FileNotFoundError(f"{self.name}: no images under {d}. Fix: {self.INSTALL_HINT}")
    table_path = os.path.join(d, CAMERA_POSES_FILE)
    table = read_camera_poses(table_path) if os.path.exists(table_path) else None
    if table is not None:
      m2fpa_poses(records, table)  # every camera must be in the table
    subjects = {s: i for i, s in enumerate(sorted({r.subject for r in records}))}
    splits = {}
    for split in sorted({r.split for r in records}):
      rs = [r for r in records if r.split == split]
      splits[split.lower()] = self._generate_examples(d, rs, subjects, table)
    return splits

  def _generate_examples(self, root, records, subjects, table):
    for r in records:
      with open(os.path.join(root, r.path), "rb") as f:
        data = f.read()
      yaw, pitch = table[(r.layer, r.camera)] if table is not None else (math.nan, math.nan)
      yield (
        r.path,
        {
          "image": data,
          "label": subjects[r.subject],
          "subject": r.subject,
          "attribute": r.attribute,
          "expression": r.expression,
          "illumination": r.illumination,
          "layer": r.layer,
          "camera": r.camera,
          "yaw": yaw,
          "pitch": pitch,
          "path": r.path,
        },
      )
