"""Labeled Faces in the Wild: the ``lfw/<Name>/<Name>_0001.jpg`` tree and ``pairs.txt``.

References:
  Huang, Ramesh, Berg, Learned-Miller. "Labeled Faces in the Wild: A Database for Studying Face
  Recognition in Unconstrained Environments." UMass Amherst TR 07-49, 2007.
"""

import os
from typing import NamedTuple

import numpy as np
import tensorflow_datasets as tfds

from vision_jax.data.builders import ManualDirBuilder

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


class LfwPairs(NamedTuple):
  """Parsed pairs file: ``N`` pairs, each two (name, 1-based image number)."""

  name1: list[str]
  num1: np.ndarray  # int64 [N]
  name2: list[str]
  num2: np.ndarray  # int64 [N]
  is_same: np.ndarray  # bool [N]
  fold: np.ndarray  # int64 [N]


def lfw_image_path(root: str, name: str, num: int) -> str:
  """``<root>/<name>/<name>_<num:04d>.jpg`` (LFW's naming)."""
  return os.path.join(root, name, f"{name}_{num:04d}.jpg")


def read_lfw_pairs(path: str | os.PathLike) -> LfwPairs:
  """Parses an LFW pairs file (both official layouts).

  - ``pairs.txt`` (view 2): header ``<folds>\\t<n>``, then per fold ``n`` matched lines
    ``name\\ti\\tj`` followed by ``n`` mismatched lines ``name1\\ti\\tname2\\tj`` (10 x 300 + 300).
  - ``pairsDevTrain.txt`` / ``pairsDevTest.txt`` (view 1): header ``<n>``, then ``n`` matched and
    ``n`` mismatched lines (one fold).

  Args:
    path: the pairs file.

  Returns:
    ``LfwPairs`` in file order.

  Raises:
    ValueError: malformed header/line or a line count that disagrees with the header; the message
      names the file and line number.
  """
  with open(path, encoding="utf-8") as f:
    lines = [ln.split() for ln in f.read().splitlines() if ln.strip()]
  if not lines:
    raise ValueError(f"{path}: empty pairs file.")
  head = lines[0]
  try:
    folds, n = (1, int(head[0])) if len(head) == 1 else (int(head[0]), int(head[1]))
  except ValueError:
    raise ValueError(f"{path}:1: header {head} is not '<folds> <n>' or '<n>'.") from None
  body = lines[1:]
  if len(body) != folds * 2 * n:
    raise ValueError(
      f"{path}: header says {folds} fold(s) x ({n} matched + {n} mismatched) = {folds * 2 * n} "
      f"lines, found {len(body)}."
    )
  out = LfwPairs([], np.zeros(len(body), np.int64), [], np.zeros(len(body), np.int64),
                 np.zeros(len(body), bool), np.zeros(len(body), np.int64))  # fmt: skip
  for k, parts in enumerate(body):
    fold, r = divmod(k, 2 * n)
    same = r < n
    try:
      if same and len(parts) == 3:
        a, i, j = parts[0], int(parts[1]), int(parts[2])
        b = a
      elif not same and len(parts) == 4:
        a, i, b, j = parts[0], int(parts[1]), parts[2], int(parts[3])
      else:
        raise ValueError
    except ValueError:
      kind = "'name i j'" if same else "'name1 i name2 j'"
      raise ValueError(f"{path}:{k + 2}: expected a {kind} line, got {parts}.") from None
    out.name1.append(a)
    out.name2.append(b)
    out.num1[k], out.num2[k], out.is_same[k], out.fold[k] = i, j, same, fold
  return out


def list_identity_folder(root: str) -> tuple[list[str], list[str], np.ndarray]:
  """Lists ``root/<identity>/<image>`` in sorted order.

  Returns:
    ``(identities, paths, labels)``: sorted identity directory names, image paths relative to
    ``root`` (sorted within identity), int64 labels indexing ``identities``.
  """
  identities = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
  paths, labels = [], []
  for label, ident in enumerate(identities):
    for fn in sorted(os.listdir(os.path.join(root, ident))):
      if fn.lower().endswith(IMAGE_EXTS):
        paths.append(os.path.join(ident, fn))
        labels.append(label)
  return identities, paths, np.asarray(labels, np.int64)


def _read(path: str) -> bytes:
  with open(path, "rb") as f:
    return f.read()


class VjLfw(ManualDirBuilder):
  """LFW from its original files, as two configs; pairs reference rows of the images split.

  Manual dir layout: ``lfw/<Name>/<Name>_0001.jpg`` (or the deep-funneled ``lfw-deepfunneled/``
  tree, used when ``lfw/`` is absent) and ``pairs.txt``; optional ``pairsDevTrain.txt`` and
  ``pairsDevTest.txt``.

  Configs / splits:
    - ``vj_lfw/images``, split ``images``: ``{"image": uint8 [250, 250, 3] (JPEG), "label":
      identity id (index into sorted names), "name": bytes, "num": 1-based image number}``,
      sorted by (name, file); row ``i`` is ``source[i]``.
    - ``vj_lfw/pairs``, splits ``pairs`` (view 2, 10 folds x 600) and, when the files exist,
      ``dev_train`` / ``dev_test`` (view 1): ``{"index1", "index2"`` (rows of ``images``),
      ``"is_same": bool, "fold": int}`` in file order.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Original JPEGs + pairs files, array_record."}
  BUILDER_CONFIGS = [
    tfds.core.BuilderConfig(name="images", description="All images with identity labels."),
    tfds.core.BuilderConfig(name="pairs", description="Verification pairs as row indices."),
  ]
  REQUIRED_FILES = ("pairs.txt",)
  INSTALL_HINT = (
    "Download lfw.tgz and pairs.txt from http://vis-www.cs.umass.edu/lfw/ (or a mirror) and "
    "extract so that DIR/lfw/<Name>/<Name>_0001.jpg and DIR/pairs.txt exist."
  )
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTALL_HINT

  def _info(self) -> tfds.core.DatasetInfo:
    if self.builder_config.name == "images":
      features = {
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
        "label": np.int64,
        "name": tfds.features.Text(),
        "num": np.int64,
      }
    else:
      features = {"index1": np.int64, "index2": np.int64, "is_same": np.bool_, "fold": np.int64}
    return self.dataset_info(
      features,
      description="LFW faces and verification pairs (index pairs into vj_lfw/images).",
      homepage="http://vis-www.cs.umass.edu/lfw/",
    )

  @staticmethod
  def image_root(manual_dir: str) -> str:
    for sub in ("lfw", "lfw-deepfunneled", "lfw_funneled"):
      if os.path.isdir(os.path.join(manual_dir, sub)):
        return os.path.join(manual_dir, sub)
    raise FileNotFoundError(
      f"vj_lfw: missing image tree {os.path.join(manual_dir, 'lfw')}/<Name>/<Name>_0001.jpg. "
      f"Fix: {VjLfw.INSTALL_HINT}"
    )

  def _split_generators(self, dl_manager):
    d = self.manual_path(dl_manager)
    root = self.image_root(d)
    identities, paths, labels = list_identity_folder(root)
    if self.builder_config.name == "images":
      return {
        "images": self._generate_examples(
          root=root, identities=identities, paths=paths, labels=labels
        )
      }
    row = {os.path.normpath(os.path.join(root, p)): i for i, p in enumerate(paths)}
    splits = {}
    for split, fn in (
      ("pairs", "pairs.txt"),
      ("dev_train", "pairsDevTrain.txt"),
      ("dev_test", "pairsDevTest.txt"),
    ):
      if os.path.exists(os.path.join(d, fn)):
        splits[split] = self._generate_examples(root=root, pairs_file=os.path.join(d, fn), row=row)
    return splits

  def _generate_examples(
    self, root, identities=None, paths=None, labels=None, pairs_file=None, row=None
  ):
    if pairs_file is None:
      for i, (p, lab) in enumerate(zip(paths, labels)):
        stem = os.path.splitext(os.path.basename(p))[0].rsplit("_", 1)
        num = int(stem[1]) if len(stem) == 2 and stem[1].isdigit() else -1
        yield (
          i,
          {
            "image": _read(os.path.join(root, p)),
            "label": int(lab),
            "name": identities[lab],
            "num": num,
          },
        )
      return
    pairs = read_lfw_pairs(pairs_file)
    for k in range(len(pairs.is_same)):
      idx = []
      for name, num in ((pairs.name1[k], pairs.num1[k]), (pairs.name2[k], pairs.num2[k])):
        p = os.path.normpath(lfw_image_path(root, name, int(num)))
        if p not in row:
          raise FileNotFoundError(
            f"vj_lfw: {pairs_file} line {k + 2} refers to {p}, which is missing."
          )
        idx.append(row[p])
      yield (
        k,
        {
          "index1": idx[0],
          "index2": idx[1],
          "is_same": bool(pairs.is_same[k]),
          "fold": int(pairs.fold[k]),
        },
      )
