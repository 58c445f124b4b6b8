"""Few-shot benchmarks from their original on-disk formats: miniImageNet, CUB-200-2011, Omniglot.

- **miniImageNet** (Ravi & Larochelle split): ``train.csv`` / ``val.csv`` / ``test.csv`` with the
  header ``filename,label`` (e.g. ``n0153282900000005.jpg,n01532829``) and an ``images/`` folder;
  64 / 16 / 20 classes of 600 images. Images are resized to 84x84 RGB (bilinear) at build time.
- **CUB-200-2011**: ``images.txt`` (``<id> <relative path>``), ``image_class_labels.txt``
  (``<id> <class 1..200>``), ``classes.txt`` (``<class> <name>``) and ``images/``; the CloserLook
  split over the 0-based class index ``i``: base ``i % 2 == 0`` (100), val ``i % 4 == 1`` (50),
  novel ``i % 4 == 3`` (50). Original JPEG bytes are kept.
- **Omniglot**: ``images_background/<alphabet>/<characterNN>/*.png`` (964 characters) and
  ``images_evaluation/...`` (659), 105x105 binary; every character at rotations 0/90/180/270
  degrees is a separate class (``label = 4 * character + k``), as Vinyals et al. / Snell et al.

Splits are named ``base`` / ``val`` / ``novel`` (miniImageNet, CUB) and ``background`` /
``evaluation`` (Omniglot). ``label`` is 0-based within the split; ``class_name`` is stored.

References:
  Ravi, Larochelle. "Optimization as a Model for Few-Shot Learning." ICLR 2017. Wah, Branson,
  Welinder, Perona, Belongie. "The Caltech-UCSD Birds-200-2011 Dataset." CNS-TR-2011-001. Lake,
  Salakhutdinov, Tenenbaum. "Human-level concept learning through probabilistic program
  induction." Science 2015. Chen et al. "A Closer Look at Few-shot Classification." ICLR 2019
  (the CUB split, ``write_CUB_filelist.py``).
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from vision_jax.data.builders import ManualDirBuilder

MINIIMAGENET_SPLITS = {"base": "train.csv", "val": "val.csv", "novel": "test.csv"}
CUB_SPLITS = ("base", "val", "novel")
OMNIGLOT_SPLITS = {"background": "images_background", "evaluation": "images_evaluation"}


def read_ravi_csv(path: str | os.PathLike) -> tuple[list[str], list[str]]:
  """Parses a Ravi-Larochelle split file: ``(filenames, wnid labels)`` in file order.

  Raises:
    ValueError: header is not ``filename,label`` or a row has not 2 fields (names file and line).
  """
  with open(path, newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f))
  if not rows or [c.strip() for c in rows[0]] != ["filename", "label"]:
    raise ValueError(f"{path}:1: expected header 'filename,label'; got {rows[0] if rows else ''}")
  names, labels = [], []
  for ln, row in enumerate(rows[1:], start=2):
    if not row:
      continue
    if len(row) != 2:
      raise ValueError(f"{path}:{ln}: expected 'filename,label'; got {row!r}")
    names.append(row[0].strip())
    labels.append(row[1].strip())
  return names, labels


def _read_id_table(path: str, what: str, int_value: bool = False) -> dict[int, str]:
  out = {}
  with open(path, encoding="utf-8") as f:
    for ln, line in enumerate(f, start=1):
      if not line.strip():
        continue
      parts = line.split(maxsplit=1)
      if (
        len(parts) != 2 or not parts[0].isdigit() or (int_value and not parts[1].strip().isdigit())
      ):
        raise ValueError(f"{path}:{ln}: expected '<id> <{what}>'; got {line.strip()!r}")
      out[int(parts[0])] = parts[1].strip()
  return out


def read_cub_metadata(root: str | os.PathLike) -> tuple[list[str], np.ndarray, list[str]]:
  """CUB-200-2011 ``(image paths relative to images/, 0-based class ids, class names)``.

  Raises:
    ValueError: malformed lines (file and line), an image without a class label, a class id not
      in ``classes.txt``.
  """
  root = os.fspath(root)
  images = _read_id_table(os.path.join(root, "images.txt"), "path")
  labels = _read_id_table(os.path.join(root, "image_class_labels.txt"), "class id", True)
  classes = _read_id_table(os.path.join(root, "classes.txt"), "class name")
  order = sorted(classes)
  index = {c: i for i, c in enumerate(order)}
  paths, ids = [], []
  for img_id in sorted(images):
    if img_id not in labels:
      raise ValueError(f"{root}/image_class_labels.txt: image id {img_id} has no class label.")
    c = int(labels[img_id])
    if c not in index:
      raise ValueError(
        f"{root}/image_class_labels.txt: image {img_id} has class {c}, not in classes.txt."
      )
    paths.append(images[img_id])
    ids.append(index[c])
  return paths, np.asarray(ids, np.int64), [classes[c] for c in order]


def cub_closerlook_split(class_index: int) -> str:
  """CloserLook's CUB split of a 0-based class index: ``base`` (i%2==0), ``val`` (i%4==1),
  ``novel`` (i%4==3)."""
  if class_index % 2 == 0:
    return "base"
  return "val" if class_index % 4 == 1 else "novel"


def list_omniglot(folder: str | os.PathLike) -> tuple[list[str], list[str]]:
  """``(png paths, character names "<alphabet>/<characterNN>")`` sorted, of one Omniglot folder.

  Raises:
    FileNotFoundError: no alphabet / character folders with PNGs below ``folder``.
  """
  folder = os.fspath(folder)
  paths, chars = [], []
  for alpha in sorted(os.listdir(folder)):
    ad = os.path.join(folder, alpha)
    if not os.path.isdir(ad):
      continue
    for ch in sorted(os.listdir(ad)):
      cd = os.path.join(ad, ch)
      if not os.path.isdir(cd):
        continue
      for fn in sorted(os.listdir(cd)):
        if fn.lower().endswith(".png"):
          paths.append(os.path.join(cd, fn))
          chars.append(f"{alpha}/{ch}")
  if not paths:
    raise FileNotFoundError(f"{folder}: no <alphabet>/<character>/*.png found (is it Omniglot?)")
  return paths, chars


def _features(image_feature):
  return tfds.features.FeaturesDict(
    {"image": image_feature, "label": np.int64, "class_name": tfds.features.Text()}
  )


class _FixedSizeBuilder(ManualDirBuilder, skip_registration=True):
  """A few-shot builder whose images are stored as raw uint8 ``[SIZE, SIZE, CHANNELS]``."""

  SIZE: int = 0
  CHANNELS: int = 3

  def _info(self):
    shape = (self.SIZE, self.SIZE, self.CHANNELS)
    return self.dataset_info(_features(tfds.features.Tensor(shape=shape, dtype=np.uint8)))


class VjMiniImagenet(_FixedSizeBuilder):
  """miniImageNet, Ravi-Larochelle split, 84x84x3 uint8 (see module doc)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Ravi-Larochelle csv + images/, resized to 84x84, array_record."}
  REQUIRED_FILES = ("train.csv", "val.csv", "test.csv", "images")
  SIZE = 84
  INSTALL_HINT = (
    "Get the miniImageNet images (the Ravi-Larochelle release: images/ with names like "
    "n0153282900000005.jpg) and train.csv / val.csv / test.csv from "
    "https://github.com/twitter/meta-learning-lstm/tree/master/data/miniImagenet into one folder."
  )
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTALL_HINT

  def _split_generators(self, dl_manager):
    d = self.manual_path(dl_manager)
    return {s: self._generate_examples(d, f) for s, f in MINIIMAGENET_SPLITS.items()}

  def _generate_examples(self, root, csv_name):
    names, wnids = read_ravi_csv(os.path.join(root, csv_name))
    classes = sorted(set(wnids))
    index = {c: i for i, c in enumerate(classes)}
    for i, (fn, wnid) in enumerate(zip(names, wnids)):
      path = os.path.join(root, "images", fn)
      if not os.path.exists(path):
        raise FileNotFoundError(f"{root}/{csv_name}:{i + 2}: image {path} does not exist.")
      with PIL.Image.open(path) as img:
        arr = np.asarray(img.convert("RGB").resize((self.SIZE, self.SIZE), PIL.Image.BILINEAR))
      yield i, {"image": arr, "label": index[wnid], "class_name": wnid}


class VjCubFewshot(ManualDirBuilder):
  """CUB-200-2011 with the CloserLook base / val / novel class split (original JPEGs)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "CUB_200_2011 metadata + images/, CloserLook split, array_record."}
  REQUIRED_FILES = ("images.txt", "image_class_labels.txt", "classes.txt", "images")
  INSTALL_HINT = (
    "Get CUB_200_2011.tgz (https://www.vision.caltech.edu/datasets/cub_200_2011/), extract, and "
    "pass manual_dir=.../CUB_200_2011."
  )
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTALL_HINT

  def _info(self):
    img = tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg")
    return self.dataset_info(_features(img))

  def _split_generators(self, dl_manager):
    d = self.manual_path(dl_manager)
    paths, ids, names = read_cub_metadata(d)
    return {s: self._generate_examples(d, paths, ids, names, s) for s in CUB_SPLITS}

  def _generate_examples(self, root, paths, ids, names, split):
    in_split = [c for c in range(len(names)) if cub_closerlook_split(c) == split]
    index = {c: i for i, c in enumerate(in_split)}
    for i, (p, c) in enumerate(zip(paths, ids)):
      if int(c) not in index:
        continue
      full = os.path.join(root, "images", p)
      with open(full, "rb") as f:
        data = f.read()
      with PIL.Image.open(io.BytesIO(data)) as img:
        if img.mode != "RGB":  # a few CUB images are grayscale: store them as RGB JPEG
          buf = io.BytesIO()
          img.convert("RGB").save(buf, format="JPEG", quality=95)
          data = buf.getvalue()
      yield i, {"image": data, "label": index[int(c)], "class_name": names[int(c)]}


class VjOmniglot(_FixedSizeBuilder):
  """Omniglot background / evaluation, 105x105x1, each rotation (0/90/180/270) its own class."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "images_background / images_evaluation PNGs with 4 rotations."}
  REQUIRED_FILES = tuple(OMNIGLOT_SPLITS.values())
  SIZE = 105
  CHANNELS = 1
  INSTALL_HINT = (
    "Get images_background.zip and images_evaluation.zip (https://github.com/brendenlake/omniglot"
    "/tree/master/python), unzip both into one folder."
  )
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTALL_HINT

  def _split_generators(self, dl_manager):
    d = self.manual_path(dl_manager)
    return {s: self._generate_examples(os.path.join(d, f)) for s, f in OMNIGLOT_SPLITS.items()}

  def _generate_examples(self, folder):
    paths, chars = list_omniglot(folder)
    index = {c: i for i, c in enumerate(sorted(set(chars)))}
    for i, (p, ch) in enumerate(zip(paths, chars)):
      with PIL.Image.open(p) as img:
        arr = np.asarray(img.convert("L"), np.uint8)
      if arr.shape != (self.SIZE, self.SIZE):
        raise ValueError(f"{p}: Omniglot images are {self.SIZE}x{self.SIZE}; got {arr.shape}.")
      for k in range(4):
        yield (
          4 * i + k,
          {
            "image": np.rot90(arr, k)[..., None].copy(),
            "label": 4 * index[ch] + k,
            "class_name": f"{ch}@rot{90 * k}",
          },
        )
