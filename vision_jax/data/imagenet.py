"""ImageNet class subsets from PyTorch-style image lists (TF-NAS's ImageNet-100 search split).

The TF-NAS code searches on 100 ImageNet classes, with the train images of those classes split
80/20 into two lists, ``dataset/ImageNet-100-effb0_{train,val}_cls_ratio0.8.txt`` (102,170 and
25,550 lines). Each line is ``<wnid>/<wnid>_<n>.JPEG <label>``, e.g.
``n01560419/n01560419_100.JPEG 0``, read by the code's ``ImageList`` with
``--img_root <ImageNet train folder>``.

References:
  Hu, Wu, He. "TF-NAS: Rethinking Three Search Freedoms of Latency-Constrained Differentiable
  Neural Architecture Search." ECCV 2020, arXiv:2008.05314 (code: github.com/AberHu/TF-NAS,
  ``dataset/dataset.py`` and the two list files).
  Russakovsky et al. "ImageNet Large Scale Visual Recognition Challenge." IJCV 2015.
"""

from __future__ import annotations

import io
import os

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from vision_jax.data.builders import ManualDirBuilder

TF_NAS_LISTS = (
  "ImageNet-100-effb0_train_cls_ratio0.8.txt",
  "ImageNet-100-effb0_val_cls_ratio0.8.txt",
)
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")


def read_label_list(path: str | os.PathLike) -> tuple[list[str], np.ndarray, list[int]]:
  """Reads a single-label image list: one ``<relative/path> <integer label>`` line per image.

  Blank lines are skipped; a leading ``./`` is stripped from the path.

  Returns:
    ``(paths, labels int64 [n], line numbers)`` in file order.

  Raises:
    FileNotFoundError: ``path`` does not exist.
    ValueError: a line without exactly two fields, or a label that is not a non-negative integer
      (names the file and line).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"image list {path!r} does not exist.")
  paths, labels, lines = [], [], []
  with open(path, encoding="utf-8") as f:
    for k, line in enumerate(f, 1):
      parts = line.split()
      if not parts:
        continue
      if len(parts) != 2 or not parts[1].isdigit():
        raise ValueError(
          f"{path}:{k}: expected '<relative/path> <non-negative integer label>', got "
          f"{line.rstrip()!r}."
        )
      p = parts[0][2:] if parts[0].startswith("./") else parts[0]
      paths.append(p)
      labels.append(int(parts[1]))
      lines.append(k)
  if not paths:
    raise ValueError(f"{path}: the image list is empty.")
  return paths, np.asarray(labels, np.int64), lines


def class_wnids(paths: list[str], labels: np.ndarray, where: str) -> dict[str, int]:
  """``{wnid: label}`` from the first path component of each listed image.

  Raises:
    ValueError: a folder listed under two labels, or a label under two folders (names ``where``).
  """
  wnid_of: dict[int, str] = {}
  label_of: dict[str, int] = {}
  for p, y in zip(paths, labels):
    w, y = p.split("/", 1)[0], int(y)
    if label_of.setdefault(w, y) != y:
      raise ValueError(f"{where}: folder {w!r} is listed with labels {label_of[w]} and {y}.")
    if wnid_of.setdefault(y, w) != w:
      raise ValueError(f"{where}: label {y} is listed for folders {wnid_of[y]!r} and {w!r}.")
  return label_of


def check_contiguous(labels: np.ndarray, where: str) -> int:
  """Number of classes ``C``; the labels must be exactly ``{0, ..., C-1}``.

  Raises:
    ValueError: labels with gaps (names ``where`` and the missing labels).
  """
  present = np.unique(labels)
  c = int(present[-1]) + 1
  if len(present) != c:
    missing = sorted(set(range(c)) - set(present.tolist()))
    raise ValueError(
      f"{where}: labels must be 0..C-1 with every class present; max label {c - 1} but "
      f"{len(missing)} labels never occur (first: {missing[:5]})."
    )
  return c


def _image_bytes(path: str) -> bytes:
  """The file's bytes; images PIL opens in a mode other than RGB / L (ImageNet has a CMYK JPEG)
  are converted to RGB and stored as PNG (PIL decodes by content)."""
  with open(path, "rb") as f:
    data = f.read()
  with PIL.Image.open(io.BytesIO(data)) as im:
    if im.mode in ("RGB", "L"):
      return data
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="PNG")
  return buf.getvalue()


class VjImagenetList(ManualDirBuilder):
  """ImageNet images named by two single-label lists (TF-NAS's ImageNet-100 search split).

  Manual dir: ``train/<wnid>/<file>.JPEG`` (the ImageNet train folder, or a link to it), the two
  lists (default: TF-NAS's file names in the manual dir; ``train_list=`` / ``val_list=`` name
  others, absolute or relative to the manual dir) and optionally ``val/<wnid>/<file>.JPEG`` (the
  ImageNet val images in per-class folders).

  Splits: ``search_train`` (the train list), ``search_val`` (the val list), and ``val`` (every
  image under ``val/<wnid>/`` of the listed classes, sorted; present only when ``val/`` exists).
  Element: ``{"image": uint8 [H, W, 3] (original encoded bytes), "label": int64, "path": bytes}``
  in list order.

  Choice: a list path is relative to the ImageNet *train* folder (as in the code's lists, read
    with ``--img_root <train folder>``); a path that starts with ``train/`` is taken relative to
    the manual dir itself.
  Choice: the ``val`` split needs the val images in per-class ``val/<wnid>/`` folders (the
    torchvision ``ImageFolder`` layout), its label the train list's label of that folder.

  Raises (while building):
    FileNotFoundError: a list, ``train/`` or a listed image is missing (names list and line), or
      ``val/`` lacks a listed class's folder.
    ValueError: a malformed line, labels not ``0..C-1`` in the train list, a val-list label
      absent from the train list, or a folder under two labels.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Single-label image lists over an ImageNet tree, original JPEGs."}
  INSTALL_HINT = (
    "Pass manual_dir=DIR with DIR/train/<wnid>/<file>.JPEG (ImageNet ILSVRC-2012 train images, "
    "from image-net.org) and the lists ImageNet-100-effb0_{train,val}_cls_ratio0.8.txt (TF-NAS's "
    "dataset/ folder) in DIR, or train_list=/val_list= pointing at them; optionally "
    "DIR/val/<wnid>/<file>.JPEG."
  )
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTALL_HINT

  def __init__(self, *, train_list: str | None = None, val_list: str | None = None, **kwargs):
    self.list_files = (train_list or TF_NAS_LISTS[0], val_list or TF_NAS_LISTS[1])
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
          "label": np.int64,
          "path": tfds.features.Text(),
        }
      ),
      disable_shuffling=True,
    )

  def read_lists(self, root: str) -> dict[str, tuple[list[str], np.ndarray]]:
    """``{"search_train", "search_val"[, "val"]: (absolute image paths, labels)}``, checked."""
    if not os.path.isdir(os.path.join(root, "train")):
      raise FileNotFoundError(
        f"{self.name}: {os.path.join(root, 'train')} does not exist. Fix: {self.INSTALL_HINT}"
      )
    out, wnids = {}, None
    for split, lf in zip(("search_train", "search_val"), self.list_files):
      lpath = os.path.join(root, lf)
      if not os.path.isfile(lpath):
        raise FileNotFoundError(f"{self.name}: list {lpath} is missing. Fix: {self.INSTALL_HINT}")
      paths, labels, lines = read_label_list(lpath)
      paths = [p.removeprefix("train/") for p in paths]  # now relative to train/
      if wnids is None:
        check_contiguous(labels, lpath)
        wnids = class_wnids(paths, labels, lpath)
      else:
        for p, y, ln in zip(paths, labels, lines):
          w = p.split("/", 1)[0]
          if wnids.get(w) != int(y):
            raise ValueError(
              f"{lpath}:{ln}: {p} has label {int(y)}, but the train list "
              + (f"gives folder {w!r} label {wnids[w]}." if w in wnids else f"has no {w!r}.")
            )
      full = [os.path.join(root, "train", p) for p in paths]
      for f, ln in zip(full, lines):
        if not os.path.isfile(f):
          raise FileNotFoundError(
            f"{self.name}: {lpath} line {ln} lists {f}, which is missing. Fix: {self.INSTALL_HINT}"
          )
      out[split] = (full, labels)
    val_root = os.path.join(root, "val")
    if os.path.isdir(val_root):
      files, labels = [], []
      for w, y in sorted(wnids.items(), key=lambda kv: kv[1]):
        d = os.path.join(val_root, w)
        if not os.path.isdir(d):
          raise FileNotFoundError(
            f"{self.name}: {d} is missing: val/ must hold a folder per listed class "
            f"({len(wnids)} classes), or be absent. Fix: {self.INSTALL_HINT}"
          )
        names = sorted(n for n in os.listdir(d) if n.lower().endswith(IMAGE_EXTENSIONS))
        files += [os.path.join(d, n) for n in names]
        labels += [y] * len(names)
      out["val"] = (files, np.asarray(labels, np.int64))
    return out

  def _split_generators(self, dl_manager):
    root = self.resolve_manual_dir(dl_manager)
    if not os.path.isdir(root):
      raise FileNotFoundError(f"{self.name}: manual dir {root} does not exist. {self.INSTALL_HINT}")
    return {
      s: self._generate_examples(root, *pl) for s, pl in self.read_lists(root).items()
    }  # fmt: skip

  def _generate_examples(self, root, files, labels):
    for i, (f, y) in enumerate(zip(files, labels)):
      yield i, {"image": _image_bytes(f), "label": int(y), "path": os.path.relpath(f, root)}
