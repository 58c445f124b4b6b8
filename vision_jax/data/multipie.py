"""CMU Multi-PIE from its release tree, with the setting-2 style identification protocol.

Layout (relative to the manual dir; the manual dir may also be the ``data`` folder itself)::

  data/session<ss>/multiview/<subject>/<recording>/<camera>/<subject>_<ss>_<recording>_<cam>_<illum>.png

e.g. ``data/session01/multiview/001/01/05_1/001_01_01_051_07.png``: subject ``001`` (3 digits,
001..346), session ``01`` (01..04), recording ``01`` (2 digits), camera ``05_1`` (written
``051`` in the file name), illumination ``07`` (00..19, the 20 flash conditions). The file name
must repeat the folders' subject, session, recording and camera.

Expression per (session, recording) (Gross et al. 2010): session 01: 01 neutral, 02 smile;
session 02: 01 neutral, 02 surprise, 03 squint; session 03: 01 neutral, 02 smile, 03 disgust;
session 04: 01 neutral, 02 neutral, 03 scream.

Camera -> pose (yaw, pitch) in degrees, ``MULTIPIE_CAMERA_POSES``: the 13 head-height cameras
in 15 degree steps, pitch 0, and the two raised cameras::

  11_0 -90   12_0 -75   09_0 -60   08_0 -45   13_0 -30   14_0 -15   05_1 0
  05_0 +15   04_1 +30   19_0 +45   20_0 +60   01_0 +75   24_0 +90
  08_1 (-30, -15) raised      19_1 (+30, -15) raised

Choice: the order of the 13 head-height cameras is the one the Multi-PIE readers we read agree on
(idiap ``xbob.db.multipie`` protocol ``P``: 24_0 "right profile" ... 11_0 "left profile"; a
public preprocessing script's ``camera2ang``); the sign (24_0 = +90) follows that script, and
whether it matches `vision_jax.data.synthetic_faces`' "positive yaw turns the face towards the
image's right" is not verified. Choice: the raised cameras 08_1 / 19_1 are labelled "left / right
quarter-profile from above" by idiap, hence yaw -30 / +30 (the same script puts 19_1 at +45); no
source we read gives their elevation, so their pitch is -15 (seen from above, i.e. as if the head
were pitched down; `synthetic_faces` has positive pitch = face tilted up). Pass
``camera_poses=`` to use other angles. Poses are an explicit set of (yaw, pitch) pairs, as for
M2FPA (`vision_jax.data.m2fpa.m2fpa_poses`).

Protocol (``MultiPieProtocol``, default = setting 2 of TP-GAN, after Zhu et al.; recalled, not
checked against the papers): neutral-expression images of all four sessions, the 13 head-height
cameras and all 20 illuminations; subjects ``<= 200`` train, the rest test. The gallery is one
image per test subject: camera 05_1, illumination 07, in the first (session, recording) where
the subject has it; the probes are every other selected image of the test subjects whose camera
is not the gallery camera. Choice: frontal (05_1) images under other lights are neither gallery
nor probes (TP-GAN's table has no 0 degree column); ``frontal_probes=True`` keeps them.

References:
  Gross, Matthews, Cohn, Kanade, Baker. "Multi-PIE." Image and Vision Computing 28(5), 2010.
  Huang, Zhang, Li, He. "Beyond Face Rotation: Global and Local Perception GAN for Photorealistic
  and Identity Preserving Frontal View Synthesis." ICCV 2017, arXiv:1704.04086.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import tensorflow_datasets as tfds

from vision_jax.data.builders import ManualDirBuilder

HEAD_HEIGHT_CAMERAS = (
  "11_0", "12_0", "09_0", "08_0", "13_0", "14_0", "05_1",
  "05_0", "04_1", "19_0", "20_0", "01_0", "24_0",
)  # fmt: skip
RAISED_CAMERAS = ("08_1", "19_1")
MULTIPIE_CAMERA_POSES: dict[str, tuple[float, float]] = {
  **{c: (15.0 * (i - 6), 0.0) for i, c in enumerate(HEAD_HEIGHT_CAMERAS)},
  "08_1": (-30.0, -15.0),
  "19_1": (30.0, -15.0),
}
EXPRESSIONS: dict[tuple[int, int], str] = {
  (1, 1): "neutral", (1, 2): "smile",
  (2, 1): "neutral", (2, 2): "surprise", (2, 3): "squint",
  (3, 1): "neutral", (3, 2): "smile", (3, 3): "disgust",
  (4, 1): "neutral", (4, 2): "neutral", (4, 3): "scream",
}  # fmt: skip
NUM_ILLUMINATIONS = 20
FRONTAL_CAMERA = "05_1"
_FORM = "data/session<ss>/multiview/<subject>/<rec>/<cam>/<subject>_<ss>_<rec>_<cam>_<illum>.png"
_NAME_RE = re.compile(r"^(\d{3})_(\d{2})_(\d{2})_(\d{2})(\d)_(\d{2})\.png$")


class MultiPieRecord(NamedTuple):
  path: str  # relative to the manual dir, '/'-separated
  subject: int
  session: int
  recording: int
  camera: str  # "05_1"
  illumination: int
  expression: str


def parse_multipie_path(relpath: str) -> MultiPieRecord:
  """Parses one image path of the layout in the module docstring.

  Raises:
    ValueError: the path does not have the layout, its file name does not parse, the file name
      disagrees with its folders, an unknown (session, recording), or an illumination outside
      00..19; the message names the path.
  """
  parts = relpath.replace(os.sep, "/").split("/")
  if len(parts) != 7 or parts[0] != "data" or parts[2] != "multiview" or not all(parts):
    raise ValueError(f"Multi-PIE path {relpath!r} does not have the form {_FORM}.")
  m = _NAME_RE.match(parts[6])
  if m is None:
    raise ValueError(
      f"Multi-PIE file name {parts[6]!r} (in {relpath!r}) does not parse as "
      "<subject>_<session>_<recording>_<camera>_<illumination>.png (e.g. '001_01_01_051_07.png')."
    )
  subj, ses, rec, cam_a, cam_b, ill = m.groups()
  camera = f"{cam_a}_{cam_b}"
  folders = (parts[1], parts[3], parts[4], parts[5])
  if folders != (f"session{ses}", subj, rec, camera):
    raise ValueError(
      f"Multi-PIE file name {parts[6]!r} says session{ses}/{subj}/{rec}/{camera}, but it lies in "
      f"{'/'.join(folders)} ({relpath!r})."
    )
  session, recording, illumination = int(ses), int(rec), int(ill)
  if (session, recording) not in EXPRESSIONS:
    raise ValueError(
      f"Multi-PIE image {relpath!r}: session {ses} has no recording {rec} (known: "
      f"{sorted(EXPRESSIONS)})."
    )
  if illumination >= NUM_ILLUMINATIONS:
    raise ValueError(
      f"Multi-PIE image {relpath!r}: illumination {ill} is outside 00..{NUM_ILLUMINATIONS - 1}."
    )
  return MultiPieRecord(
    path="/".join(parts),
    subject=int(subj),
    session=session,
    recording=recording,
    camera=camera,
    illumination=illumination,
    expression=EXPRESSIONS[(session, recording)],
  )


def multipie_data_dir(root: str) -> str:
  """The folder holding ``session<ss>/``: ``<root>/data``, or ``root`` when it is that folder."""
  d = os.path.join(root, "data")
  if not os.path.isdir(d) and os.path.isdir(root):
    if any(re.fullmatch(r"session\d{2}", n) for n in os.listdir(root)):
      return root
  return d


def list_multipie(root: str) -> list[MultiPieRecord]:
  """Every ``.png`` under ``multipie_data_dir(root)``, parsed (paths ``data/...``) and sorted.

  Raises:
    FileNotFoundError: ``root`` has no ``data/`` (nor is it one).
    ValueError: a ``.png`` whose path does not parse (named).
  """
  top = multipie_data_dir(root)
  if not os.path.isdir(top):
    raise FileNotFoundError(
      f"Multi-PIE root {root!r} has no data/ folder (nor session<ss>/ folders); expected {_FORM}."
    )
  records = []
  for dirpath, dirnames, filenames in os.walk(top):
    dirnames.sort()
    for fn in sorted(filenames):
      if fn.lower().endswith(".png"):
        rel = os.path.relpath(os.path.join(dirpath, fn), top).replace(os.sep, "/")
        records.append(parse_multipie_path("data/" + rel))
  return sorted(records, key=lambda r: r.path)


def multipie_pose(
  record: MultiPieRecord, camera_poses: Mapping[str, tuple[float, float]] = MULTIPIE_CAMERA_POSES
) -> tuple[float, float]:
  """``(yaw, pitch)`` of ``record``'s camera.

  Raises:
    ValueError: the camera is not in ``camera_poses`` (names the camera and the file).
  """
  if record.camera not in camera_poses:
    raise ValueError(
      f"Multi-PIE image {record.path!r}: unknown camera {record.camera!r}; known cameras: "
      f"{sorted(camera_poses)}."
    )
  yaw, pitch = camera_poses[record.camera]
  return float(yaw), float(pitch)


def multipie_poses(
  records: Sequence[MultiPieRecord],
  camera_poses: Mapping[str, tuple[float, float]] = MULTIPIE_CAMERA_POSES,
) -> np.ndarray:
  """The explicit pose set present in ``records``: float64 ``[P, 2]`` (yaw, pitch), sorted.

  Raises:
    ValueError: a record's camera is missing from ``camera_poses`` (names the file and camera).
  """
  used = {multipie_pose(r, camera_poses) for r in records}
  return np.asarray(sorted(used), np.float64).reshape(-1, 2)


@dataclasses.dataclass(frozen=True)
class MultiPieProtocol:
  """Which images go where (see the module docstring; defaults = setting 2).

  Attributes:
    train_max_subject: subjects ``<= train_max_subject`` train, the others test.
    sessions, expressions, cameras: the images selected (all illuminations).
    gallery_camera, gallery_illumination: each test subject's gallery image.
    frontal_probes: also probe with gallery-camera images of other illuminations / sessions.
  """

  train_max_subject: int = 200
  sessions: tuple[int, ...] = (1, 2, 3, 4)
  expressions: tuple[str, ...] = ("neutral",)
  cameras: tuple[str, ...] = HEAD_HEIGHT_CAMERAS
  gallery_camera: str = FRONTAL_CAMERA
  gallery_illumination: int = 7
  frontal_probes: bool = False

  def __post_init__(self):
    known = set(EXPRESSIONS.values())
    bad = [e for e in self.expressions if e not in known]
    if bad or not self.expressions:
      raise ValueError(f"MultiPieProtocol.expressions={self.expressions!r}: use {sorted(known)}")
    if not self.sessions or not set(self.sessions) <= {1, 2, 3, 4}:
      raise ValueError(f"MultiPieProtocol.sessions={self.sessions!r}: use a subset of 1..4")
    if not self.cameras or self.gallery_camera not in self.cameras:
      raise ValueError(
        f"MultiPieProtocol.gallery_camera={self.gallery_camera!r} must be one of cameras="
        f"{self.cameras!r}"
      )
    if not 0 <= self.gallery_illumination < NUM_ILLUMINATIONS:
      raise ValueError(
        f"MultiPieProtocol.gallery_illumination={self.gallery_illumination} is outside 0..19"
      )


def multipie_protocol(
  records: Sequence[MultiPieRecord], protocol: MultiPieProtocol = MultiPieProtocol()
) -> dict[str, list[MultiPieRecord]]:
  """Splits ``records`` into ``{"train", "gallery", "probe"}`` (each sorted by path).

  Raises:
    ValueError: a test subject without a gallery image, or no train / no test subject (the
      message names the subjects and the protocol fields).
  """
  p = protocol
  sel = [
    r for r in records
    if r.session in p.sessions and r.expression in p.expressions and r.camera in p.cameras
  ]  # fmt: skip
  train = [r for r in sel if r.subject <= p.train_max_subject]
  test = [r for r in sel if r.subject > p.train_max_subject]
  if not train or not test:
    raise ValueError(
      f"Multi-PIE protocol: {len(train)} train and {len(test)} test images after selecting "
      f"sessions={p.sessions}, expressions={p.expressions}, {len(p.cameras)} cameras and "
      f"train_max_subject={p.train_max_subject}; both must be non-empty."
    )
  gallery = {}
  for r in sorted(test, key=lambda r: (r.session, r.recording, r.path)):
    if (
      r.camera == p.gallery_camera and r.illumination == p.gallery_illumination
      and r.subject not in gallery
    ):  # fmt: skip
      gallery[r.subject] = r
  missing = sorted({r.subject for r in test} - set(gallery))
  if missing:
    raise ValueError(
      f"Multi-PIE protocol: test subject(s) {[f'{s:03d}' for s in missing[:10]]} have no gallery "
      f"image (camera {p.gallery_camera}, illumination {p.gallery_illumination:02d})."
    )
  g_paths = {r.path for r in gallery.values()}
  probe = [
    r for r in test
    if r.path not in g_paths and (p.frontal_probes or r.camera != p.gallery_camera)
  ]  # fmt: skip
  by_path = lambda rs: sorted(rs, key=lambda r: r.path)  # noqa: E731
  return {"train": by_path(train), "gallery": by_path(gallery.values()), "probe": by_path(probe)}


class MultiPieConfig(tfds.core.BuilderConfig):
  """A `vj_multipie` config: the protocol, and the camera -> (yaw, pitch) table."""

  def __init__(self, *, protocol: MultiPieProtocol = MultiPieProtocol(),
               camera_poses: Mapping[str, tuple[float, float]] | None = None, **kwargs):  # fmt: skip
    super().__init__(**kwargs)
    self.protocol = protocol
    self.camera_poses = dict(camera_poses or MULTIPIE_CAMERA_POSES)


class VjMultipie(ManualDirBuilder):
  """Multi-PIE: splits ``train``, ``gallery``, ``probe`` of the config's protocol.

  Configs: ``setting2`` (the default protocol of the module docstring). Another protocol:
  ``load("vj_multipie", split, builder_kwargs=dict(config=MultiPieConfig(name="mine",
  protocol=MultiPieProtocol(...))))``.

  Element: ``{"image": uint8 [H, W, 3] (the original PNG bytes), "label": index of the subject
  among the sorted subjects of its side (train subjects 0..K-1; test subjects 0..T-1, shared by
  gallery and probe), "subject", "session", "recording", "illumination": int64, "camera",
  "expression", "path": bytes, "yaw", "pitch": float32 degrees}``, sorted by path.

  Raises (at build time):
    FileNotFoundError: no ``data/`` folder or no images.
    ValueError: a path that does not parse, an unknown camera (names camera and file), or a test
      subject without a gallery image.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Original PNGs, protocol splits, array_record."}
  BUILDER_CONFIGS = [
    MultiPieConfig(name="setting2", description="Setting 2: neutral, 4 sessions, 13 cameras.")
  ]
  INSTALL_HINT = (
    "CMU Multi-PIE is licensed by Carnegie Mellon University "
    "(https://www.cs.cmu.edu/afs/cs/project/PIE/MultiPie/Multi-Pie/Home.html); pass "
    f"manual_dir=DIR where DIR/{_FORM} (or DIR is the data/ folder)."
  )
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTALL_HINT

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text()
    return self.dataset_info(
      {
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
        "label": np.int64,
        "subject": np.int64,
        "session": np.int64,
        "recording": np.int64,
        "illumination": np.int64,
        "camera": text,
        "expression": text,
        "yaw": np.float32,
        "pitch": np.float32,
        "path": text,
      },
      description="CMU Multi-PIE multiview images with a pose-binned identification protocol.",
      homepage="https://www.cs.cmu.edu/afs/cs/project/PIE/MultiPie/Multi-Pie/Home.html",
    )

  def _split_generators(self, dl_manager):
    d = self.manual_path(dl_manager)
    records = list_multipie(d)
    if not records:
      raise FileNotFoundError(f"{self.name}: no images under {d}. Fix: {self.INSTALL_HINT}")
    cfg = self.builder_config
    multipie_poses(records, cfg.camera_poses)  # every camera must be known
    splits = multipie_protocol(records, cfg.protocol)
    top = multipie_data_dir(d)
    train_ids = {s: i for i, s in enumerate(sorted({r.subject for r in splits["train"]}))}
    test_ids = {s: i for i, s in enumerate(sorted({r.subject for r in splits["gallery"]}))}
    return {
      "train": self._generate_examples(top, splits["train"], train_ids),
      "gallery": self._generate_examples(top, splits["gallery"], test_ids),
      "probe": self._generate_examples(top, splits["probe"], test_ids),
    }

  def _generate_examples(self, top, records, labels):
    table = self.builder_config.camera_poses
    for r in records:
      with open(os.path.join(top, r.path.removeprefix("data/")), "rb") as f:
        data = f.read()
      yaw, pitch = multipie_pose(r, table)
      yield (
        r.path,
        {
          "image": data,
          "label": labels[r.subject],
          "subject": r.subject,
          "session": r.session,
          "recording": r.recording,
          "illumination": r.illumination,
          "camera": r.camera,
          "expression": r.expression,
          "yaw": yaw,
          "pitch": pitch,
          "path": r.path,
        },
      )


__all__ = [
  "EXPRESSIONS",
  "HEAD_HEIGHT_CAMERAS",
  "MULTIPIE_CAMERA_POSES",
  "MultiPieConfig",
  "MultiPieProtocol",
  "MultiPieRecord",
  "RAISED_CAMERAS",
  "VjMultipie",
  "list_multipie",
  "multipie_data_dir",
  "multipie_pose",
  "multipie_poses",
  "multipie_protocol",
  "parse_multipie_path",
]
