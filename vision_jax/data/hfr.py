"""Heterogeneous face protocols: CASIA NIR-VIS 2.0 (View 2, 10 folds) and CUFSF-style sketch-photo
lists of the same shape.

On disk (CASIA NIR-VIS 2.0)::

    NIR-VIS-2.0/s1..s4/{NIR,VIS}/<subject>/<image>.{bmp,jpg}
    NIR-VIS-2.0/protocols/{vis,nir}_train_<k>.txt, vis_gallery_<k>.txt, nir_probe_<k>.txt

Each list line names one image relative to the root, with Windows separators in the original
files (``s2\\VIS\\20001\\001.jpg``) and an optional trailing label. Without a label the subject is
the path component after the modality directory (``20001``), else the parent directory. CUFSF-style
sets use the same lists with ``sketch`` / ``photo`` in place of ``nir`` / ``vis``
(``sketch_probe_<k>.txt``, ``photo_gallery_<k>.txt``, ``{sketch,photo}_train_<k>.txt``).

Choice: a listed file that is missing is looked up with the other image extensions of the same
stem (the CASIA lists name ``.jpg`` for some ``.bmp`` files); if none exists the error names the
list file and line.

References:
  S. Z. Li, D. Yi, Z. Lei, S. Liao. "The CASIA NIR-VIS 2.0 Face Database." CVPR Workshops 2013.
  W. Zhang, X. Wang, X. Tang. "Coupled Information-Theoretic Encoding for Face Photo-Sketch
  Recognition." CVPR 2011 (CUFSF).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from vision_jax.data.builders import ManualDirBuilder, encode_png
from vision_jax.data.lfw import IMAGE_EXTS

# name -> (probe-side modality, gallery-side modality)
HFR_PROTOCOLS = {"casia_nir_vis_2": ("nir", "vis"), "cufsf": ("sketch", "photo")}
NUM_FOLDS = 10


class HfrRecord(NamedTuple):
  """One list entry: resolved file, subject id (string), modality (0 probe side, 1 gallery side),
  and where it was listed (``list_file``, 1-based ``line``)."""

  path: str
  subject: str
  modality: int
  list_file: str
  line: int


def _subject_from_path(parts: list[str], modality_name: str) -> str:
  low = [p.lower() for p in parts]
  if modality_name.lower() in low[:-1]:
    i = low.index(modality_name.lower())
    if i + 1 < len(parts) - 1:
      return parts[i + 1]
  if len(parts) < 2:
    return ""
  return parts[-2]


def _resolve(root: str, rel: str) -> str | None:
  p = os.path.join(root, rel)
  if os.path.isfile(p):
    return p
  stem = os.path.splitext(p)[0]
  for ext in IMAGE_EXTS + tuple(e.upper() for e in IMAGE_EXTS):
    if os.path.isfile(stem + ext):
      return stem + ext
  return None


def read_hfr_list(
  list_file: str, root: str, *, modality_name: str, modality: int
) -> list[HfrRecord]:
  """Parses one protocol list and resolves every file under ``root``.

  Args:
    list_file: e.g. ``protocols/nir_probe_1.txt``. root: dataset root the paths are relative to.
    modality_name: directory name of the modality in the paths (``NIR``, ``VIS``, ``sketch``).
    modality: 0 (probe side) or 1 (gallery side).

  Returns:
    Records in file order.

  Raises:
    FileNotFoundError: the list is missing, or a line names a file that is not there (message:
      ``<list>:<line>``, the path and the root).
    ValueError: a line with more than two fields or no subject.
  """
  if not os.path.isfile(list_file):
    raise FileNotFoundError(f"protocol list {list_file} does not exist")
  out = []
  with open(list_file, encoding="utf-8-sig") as f:
    for n, raw in enumerate(f, 1):
      fields = raw.strip().split()
      if not fields:
        continue
      if len(fields) > 2:
        raise ValueError(f"{list_file}:{n}: expected 'path [label]', got {raw.strip()!r}")
      rel = fields[0].replace("\\", "/")
      subject = fields[1] if len(fields) == 2 else _subject_from_path(rel.split("/"), modality_name)
      if not subject:
        raise ValueError(f"{list_file}:{n}: no subject in {rel!r} (give 'path label')")
      path = _resolve(root, rel)
      if path is None:
        raise FileNotFoundError(
          f"{list_file}:{n}: names {rel!r}, which is not under {root} (no file with that stem "
          f"and any of {', '.join(IMAGE_EXTS)})"
        )
      out.append(HfrRecord(path, subject, modality, list_file, n))
  if not out:
    raise ValueError(f"protocol list {list_file} is empty")
  return out


def protocol_files(name: str, fold: int) -> dict[str, tuple[str, str, int]]:
  """``{split: (list file name, modality dir name, modality)}`` of one fold of protocol ``name``.

  Splits: ``train_probe`` / ``train_gallery`` (both modalities' train lists), ``gallery``,
  ``probe``.

  Raises:
    ValueError: unknown protocol or fold outside 1..10.
  """
  if name not in HFR_PROTOCOLS:
    raise ValueError(f"unknown HFR protocol {name!r}; valid: {', '.join(HFR_PROTOCOLS)}")
  if not isinstance(fold, int) or not 1 <= fold <= NUM_FOLDS:
    raise ValueError(f"fold={fold!r}; CASIA-style protocols have folds 1..{NUM_FOLDS}")
  pm, gm = HFR_PROTOCOLS[name]
  return {
    "train_probe": (f"{pm}_train_{fold}.txt", pm, 0),
    "train_gallery": (f"{gm}_train_{fold}.txt", gm, 1),
    "gallery": (f"{gm}_gallery_{fold}.txt", gm, 1),
    "probe": (f"{pm}_probe_{fold}.txt", pm, 0),
  }


def read_hfr_fold(
  root: str, fold: int, *, name: str = "casia_nir_vis_2", protocol_dir: str = "protocols"
) -> dict[str, list[HfrRecord]]:
  """The ``train`` (both modalities), ``gallery`` and ``probe`` records of one fold.

  Raises:
    FileNotFoundError / ValueError: as `read_hfr_list`; a gallery subject listed twice; a probe
      subject missing from the gallery; train and test subjects that overlap.
  """
  files = protocol_files(name, fold)
  recs = {}
  for split, (fn, mod_name, mod) in files.items():
    recs[split] = read_hfr_list(
      os.path.join(root, protocol_dir, fn), root, modality_name=mod_name, modality=mod
    )
  gal = [r.subject for r in recs["gallery"]]
  dup = sorted({s for s in gal if gal.count(s) > 1})
  if dup:
    r = next(r for r in recs["gallery"] if r.subject == dup[0])
    raise ValueError(f"{r.list_file}: subject {dup[0]!r} appears more than once in the gallery")
  gal_set = set(gal)
  for r in recs["probe"]:
    if r.subject not in gal_set:
      raise ValueError(f"{r.list_file}:{r.line}: probe subject {r.subject!r} is not in the gallery")
  train = recs["train_probe"] + recs["train_gallery"]
  overlap = sorted({r.subject for r in train} & gal_set)
  if overlap:
    raise ValueError(
      f"fold {fold}: train and test subjects overlap ({overlap[:5]}); the protocol is subject-"
      "disjoint"
    )
  return {"train": train, "gallery": recs["gallery"], "probe": recs["probe"]}


def read_gray(path: str, size: int | None = None) -> np.ndarray:
  """Reads an image as grey uint8 ``[H, W, 1]`` (bilinear resize to ``size`` when given)."""
  with PIL.Image.open(path) as img:
    img = img.convert("L")
    if size is not None and img.size != (size, size):
      img = img.resize((size, size), PIL.Image.BILINEAR)
    return np.asarray(img, np.uint8)[..., None]


class VjHfr(ManualDirBuilder):
  """CASIA NIR-VIS 2.0 / CUFSF-style protocol folds as splits.

  Configs ``vj_hfr/casia_nir_vis_2`` (NIR probes vs VIS gallery) and ``vj_hfr/cufsf`` (sketch
  probes vs photo gallery). Splits ``train_<k>``, ``gallery_<k>``, ``probe_<k>`` for every fold
  ``k`` whose four lists exist (fold 1 required). Element: ``{"image": uint8 [H, W, 1] (PNG),
  "label": index of the subject in the sorted subjects of all lists, "subject": str,
  "modality": 0 probe side / 1 gallery side, "path": path relative to the root}``, in list
  order (train: probe-modality list, then gallery-modality list).

  Choice: images are stored grey (LightCNN's input; the official pipeline converts on load), at
  their original size.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Protocol lists -> grey PNG, array_record."}
  BUILDER_CONFIGS = [
    tfds.core.BuilderConfig(name=n, description=f"{n}: {p} probes vs {g} gallery")
    for n, (p, g) in HFR_PROTOCOLS.items()
  ]
  INSTALL_HINT = (
    "CASIA NIR-VIS 2.0 is distributed by CASIA on request "
    "(http://www.cbsr.ia.ac.cn/english/NIR-VIS-2.0-Database.html); pass manual_dir=DIR where "
    "DIR/protocols/nir_probe_1.txt and the s1..s4 image trees exist (aligned 128x128 crops). "
    "CUFSF-style sets: DIR/protocols/sketch_probe_1.txt, photo_gallery_1.txt, "
    "{sketch,photo}_train_1.txt."
  )
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTALL_HINT

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info(
      {
        "image": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
        "label": np.int64,
        "subject": tfds.features.Text(),
        "modality": np.int64,
        "path": tfds.features.Text(),
      },
      description="Heterogeneous face protocol folds (probe / gallery / train lists).",
    )

  def _split_generators(self, dl_manager):
    d = self.manual_path(dl_manager)
    name = self.builder_config.name
    folds = {}
    for k in range(1, NUM_FOLDS + 1):
      files = protocol_files(name, k)
      present = [os.path.exists(os.path.join(d, "protocols", f)) for f, _, _ in files.values()]
      if k == 1 and not all(present):
        missing = [f for (f, _, _), ok in zip(files.values(), present) if not ok]
        raise FileNotFoundError(
          f"{self.name}/{name}: missing protocol list(s) {missing} under {d}/protocols. "
          f"Fix: {self.INSTALL_HINT}"
        )
      if all(present):
        folds[k] = read_hfr_fold(d, k, name=name)
    subjects = sorted({r.subject for f in folds.values() for v in f.values() for r in v})
    label = {s: i for i, s in enumerate(subjects)}
    splits = {}
    for k, f in folds.items():
      for split in ("train", "gallery", "probe"):
        splits[f"{split}_{k}"] = self._generate_examples(d, f[split], label)
    return splits

  def _generate_examples(self, root, records, label):
    for i, r in enumerate(records):
      yield (
        i,
        {
          "image": encode_png(read_gray(r.path)),
          "label": label[r.subject],
          "subject": r.subject,
          "modality": r.modality,
          "path": os.path.relpath(r.path, root),
        },
      )


__all__ = [
  "HFR_PROTOCOLS",
  "HfrRecord",
  "VjHfr",
  "protocol_files",
  "read_gray",
  "read_hfr_fold",
  "read_hfr_list",
]
