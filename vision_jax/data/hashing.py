"""Deep-hashing data: CIFAR-10 python pickles, the standard query/train/database split, and the
image-list + multi-hot format of NUS-WIDE / MS-COCO hashing benchmarks.

References:
  Krizhevsky. "Learning Multiple Layers of Features from Tiny Images." Tech. report, 2009.
  DeepHash-pytorch (github.com/swuxyj/DeepHash-pytorch), ``utils/tools.py``: ``cifar_dataset``
  splits and the ``data/{nuswide_21,coco}/{train,test,database}.txt`` lists.
"""

import os
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from vision_jax.data.builders import ManualDirBuilder
from vision_jax.data.pipeline import ArraySource, SubsetSource

CIFAR10_CLASSES = (
  "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def read_cifar10_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """Reads one CIFAR-10 python pickle batch.

  The pickle is a dict with ``b"data"`` uint8 ``[n, 3072]`` (1024 R, 1024 G, 1024 B values, each
  row-major 32x32) and ``b"labels"`` (list of n ints).

  Returns:
    ``(images uint8 [n, 32, 32, 3], labels int64 [n])``.

  Raises:
    ValueError: missing keys or wrong data shape (names the file).
  """
  with open(path, "rb") as f:
    d = pickle.load(f, encoding="bytes")
  if b"data" not in d or b"labels" not in d:
    raise ValueError(
      f"{path}: not a CIFAR-10 python batch (keys {sorted(d)}; need b'data', b'labels')."
    )
  data = np.asarray(d[b"data"], np.uint8)
  if data.ndim != 2 or data.shape[1] != 3072:
    raise ValueError(f"{path}: b'data' has shape {data.shape}, expected [n, 3072].")
  images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), np.asarray(d[b"labels"], np.int64)


class VjCifar10(ManualDirBuilder):
  """CIFAR-10 from ``cifar-10-batches-py`` (``data_batch_1..5``, ``test_batch``).

  The manual dir is the folder the official tarball unpacks into (holding
  ``cifar-10-batches-py/``) or ``cifar-10-batches-py`` itself.

  Splits ``train`` (50,000, batches 1..5 in order) and ``test`` (10,000); element
  ``{"image": uint8 [32, 32, 3], "label": int64}``; ``source[i]`` is row ``i`` in file order.
  For hashing, see ``cifar10_hashing_sources``.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Python pickle batches, raw uint8 tensors, array_record."}
  REQUIRED_FILES = CIFAR10_FILES
  NESTED_DIRS = ("cifar-10-batches-py",)
  INSTALL_HINT = (
    "Download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, extract, "
    "and pass manual_dir=<the folder holding cifar-10-batches-py/> (or cifar-10-batches-py itself)."
  )
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTALL_HINT

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info(
      {
        "image": tfds.features.Tensor(shape=(32, 32, 3), dtype=np.uint8),
        "label": tfds.features.ClassLabel(names=CIFAR10_CLASSES),
      },
      supervised_keys=("image", "label"),
      homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    )

  def _split_generators(self, dl_manager):
    d = self.manual_path(dl_manager)
    return {
      "train": self._generate_examples([os.path.join(d, f) for f in CIFAR10_FILES[:5]]),
      "test": self._generate_examples([os.path.join(d, CIFAR10_FILES[5])]),
    }

  def _generate_examples(self, files: Sequence[str]):
    k = 0
    for path in files:
      images, labels = read_cifar10_batch(path)
      for x, y in zip(images, labels):
        yield k, {"image": x, "label": int(y)}
        k += 1


def hashing_split(
  labels: Sequence[int] | np.ndarray,
  *,
  num_query_per_class: int = 100,
  num_train_per_class: int = 500,
  seed: int = 0,
  variant: str = "cifar10",
) -> dict[str, np.ndarray]:
  """Query / train / database indices in the DeepHash-pytorch ``cifar_dataset`` style.

  Per class ``c`` (a seeded permutation of its indices): the first ``num_query_per_class`` go to
  query, the next ``num_train_per_class`` to train, the rest to the retrieval database.

  Variants (DeepHash-pytorch ``config["dataset"]``), for CIFAR-10's pooled 60,000 images:
    - ``"cifar10"``: query 1,000 / train 5,000 / database = the rest (54,000). The issue's
      "standard split" and our default.
    - ``"cifar10-1"``: database = train + rest (59,000).
    - ``"cifar10-2"``: database = train (pass 1,000 / 5,000 per class for 10,000 / 50,000).

  Args:
    labels: int ``[N]`` labels of the pooled set (CIFAR-10: train batches then test batch).
    num_query_per_class: queries per class.
    num_train_per_class: training images per class.
    seed: the per-class permutations (DeepHash-pytorch leaves it unseeded).
    variant: see above.

  Returns:
    ``{"query", "train", "database"}``: int64 index arrays, each sorted ascending.

  Raises:
    ValueError: a class has fewer than ``num_query + num_train`` images, or unknown variant.

  Choice: seeded ``np.random.default_rng(seed)`` permutations (the reference is unseeded), so the
    split is reproducible; classes visited in increasing label order.
  """
  labels = np.asarray(labels)
  if variant not in ("cifar10", "cifar10-1", "cifar10-2"):
    raise ValueError(f"variant={variant!r}; valid: 'cifar10', 'cifar10-1', 'cifar10-2'.")
  rng = np.random.default_rng(seed)
  q, t, db = [], [], []
  need = num_query_per_class + num_train_per_class
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    if idx.size < need:
      raise ValueError(
        f"class {c} has {idx.size} images, needs >= {need} (query + train per class)."
      )
    q.append(idx[:num_query_per_class])
    t.append(idx[num_query_per_class:need])
    db.append(idx[need:])
  query, train, rest = (np.sort(np.concatenate(a)).astype(np.int64) for a in (q, t, db))
  database = {
    "cifar10": rest,
    "cifar10-1": np.sort(np.concatenate([train, rest])),
    "cifar10-2": train,
  }[variant]
  return {"query": query, "train": train, "database": database}


class ConcatSource(Sequence):
  """Concatenation of random-access sources: ``concat[i]`` walks them in order."""

  def __init__(self, *sources: Sequence[dict[str, Any]]):
    self.sources = sources
    self.offsets = np.cumsum([0] + [len(s) for s in sources])

  def __len__(self) -> int:
    return int(self.offsets[-1])

  def __getitem__(self, i):
    if isinstance(i, slice):
      return [self[j] for j in range(*i.indices(len(self)))]
    i = int(i)
    if not 0 <= i < len(self):
      raise IndexError(f"index {i} out of range for ConcatSource of length {len(self)}.")
    k = int(np.searchsorted(self.offsets, i, side="right")) - 1
    return self.sources[k][i - int(self.offsets[k])]

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
    return [self[i] for i in indices]


def cifar10_hashing_sources(
  *,
  data_dir: str | None = None,
  manual_dir: str | None = None,
  seed: int = 0,
  variant: str = "cifar10",
  num_query_per_class: int = 100,
  num_train_per_class: int = 500,
) -> dict[str, SubsetSource]:
  """CIFAR-10 hashing split: pooled train+test (60,000), 1,000 query / 5,000 train / database.

  Returns:
    ``{"query", "train", "database"}`` sources of ``{"image": uint8 [32, 32, 3], "label"}``;
    see ``hashing_split`` for the variants.
  """
  from vision_jax.data.sources import load

  pool = ConcatSource(
    *(load("vj_cifar10", s, data_dir=data_dir, manual_dir=manual_dir) for s in ("train", "test"))
  )
  split = hashing_split(
    _labels(pool),
    num_query_per_class=num_query_per_class,
    num_train_per_class=num_train_per_class,
    seed=seed,
    variant=variant,
  )
  return {k: SubsetSource(pool, v) for k, v in split.items()}


def _labels(pool: ConcatSource) -> np.ndarray:
  out = []
  for s in pool.sources:
    getitems = getattr(s, "__getitems__", None)
    for start in range(0, len(s), 4096):
      idx = list(range(start, min(len(s), start + 4096)))
      out.extend(int(e["label"]) for e in (getitems(idx) if getitems else [s[i] for i in idx]))
  return np.asarray(out, np.int64)


def read_image_list(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
  """Reads a hashing image list: one ``<relative/path.jpg> <0|1> <0|1> ...`` line per image.

  Returns:
    ``(paths, labels uint8 [n, C])`` multi-hot.

  Raises:
    ValueError: a label that is not 0/1, or lines with different label counts (names the line).
  """
  paths, rows = [], []
  with open(path, encoding="utf-8") as f:
    for k, line in enumerate(f, 1):
      parts = line.split()
      if not parts:
        continue
      try:
        row = [int(v) for v in parts[1:]]
      except ValueError:
        raise ValueError(f"{path}:{k}: labels must be integers 0/1, got {parts[1:]}.") from None
      if any(v not in (0, 1) for v in row) or (rows and len(row) != len(rows[0])) or not row:
        raise ValueError(
          f"{path}:{k}: expected '<path> ' + {len(rows[0]) if rows else 'C'} labels in {{0,1}}, got {parts[1:]}."
        )
      paths.append(parts[0])
      rows.append(row)
  return paths, np.asarray(rows, np.uint8)


class VjHashingImageList(ManualDirBuilder):
  """NUS-WIDE / MS-COCO hashing lists: ``train.txt``, ``test.txt``, ``database.txt``.

  Each line is ``<image path relative to manual_dir> <C multi-hot 0/1 labels>`` (the
  DeepHash-pytorch ``data/nuswide_21`` (C = 21) and ``data/coco`` (C = 80) files; a leading
  ``./`` is stripped). Configs ``nuswide_21`` and ``coco`` fix C; splits ``train``, ``query``
  (``test.txt``) and ``database``. Element ``{"image": uint8 [H, W, 3] (original bytes),
  "labels": bool [C], "path": bytes}``.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Image lists with multi-hot labels, original JPEGs, array_record."}
  BUILDER_CONFIGS = [
    tfds.core.BuilderConfig(name="nuswide_21", description="NUS-WIDE, 21 most frequent concepts."),
    tfds.core.BuilderConfig(name="coco", description="MS-COCO 2014, 80 categories."),
  ]
  NUM_LABELS = {"nuswide_21": 21, "coco": 80}
  REQUIRED_FILES = ("train.txt", "test.txt", "database.txt")
  INSTALL_HINT = (
    "Put DeepHash-pytorch's data/<nuswide_21|coco>/{train,test,database}.txt in DIR and the images "
    "at the paths they list, relative to DIR; pass manual_dir=DIR."
  )
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTALL_HINT

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.NUM_LABELS[self.builder_config.name]
    return self.dataset_info(
      {
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
        "labels": tfds.features.Tensor(shape=(c,), dtype=np.bool_),
        "path": tfds.features.Text(),
      }
    )

  def _split_generators(self, dl_manager):
    d = self.manual_path(dl_manager)
    return {
      s: self._generate_examples(d, f)
      for s, f in (("train", "train.txt"), ("query", "test.txt"), ("database", "database.txt"))
    }

  def _generate_examples(self, root: str, list_file: str):
    c = self.NUM_LABELS[self.builder_config.name]
    paths, labels = read_image_list(os.path.join(root, list_file))
    if labels.shape[1] != c:
      raise ValueError(
        f"{self.name}/{self.builder_config.name}: {list_file} has {labels.shape[1]} labels per line, expected {c}."
      )
    for i, (p, y) in enumerate(zip(paths, labels)):
      rel = p[2:] if p.startswith("./") else p
      full = os.path.join(root, rel)
      if not os.path.exists(full):
        raise FileNotFoundError(
          f"{self.name}: {list_file} line {i + 1} lists {full}, which is missing. Fix: {self.INSTALL_HINT}"
        )
      with open(full, "rb") as f:
        data = f.read()
      yield i, {"image": data, "labels": y.astype(bool), "path": rel}


def array_hashing_sources(
  images: np.ndarray,
  labels: np.ndarray,
  *,
  num_query_per_class: int = 100,
  num_train_per_class: int = 500,
  seed: int = 0,
) -> dict[str, SubsetSource]:
  """``hashing_split`` over in-memory arrays (e.g. Fashion-MNIST train+test pooled).

  Fashion-MNIST in the same style: 1,000 query / 5,000 train / 64,000 database with the defaults.
  """
  pool = ArraySource({"image": images, "label": np.asarray(labels, np.int64)})
  split = hashing_split(
    labels,
    num_query_per_class=num_query_per_class,
    num_train_per_class=num_train_per_class,
    seed=seed,
  )
  return {k: SubsetSource(pool, v) for k, v in split.items()}


def fashion_mnist_hashing_sources(
  *,
  data_dir: str | None = None,
  manual_dir: str | None = None,
  seed: int = 0,
  num_query_per_class: int = 100,
  num_train_per_class: int = 500,
) -> dict[str, SubsetSource]:
  """Fashion-MNIST in the CIFAR-10 hashing style: pooled 70,000 (train then test), in memory.

  Defaults give 1,000 query / 5,000 train / 64,000 database (``hashing_split``, variant
  ``"cifar10"``). Materializing the pool takes ~10 s and 55 MB.
  """
  from vision_jax.data.pipeline import materialize
  from vision_jax.data.sources import fashion_mnist

  parts = [
    materialize(fashion_mnist(s, data_dir=data_dir, manual_dir=manual_dir))
    for s in ("train", "test")
  ]
  images = np.concatenate([p.arrays["image"] for p in parts])
  labels = np.concatenate([p.arrays["label"] for p in parts])
  return array_hashing_sources(
    images,
    labels,
    num_query_per_class=num_query_per_class,
    num_train_per_class=num_train_per_class,
    seed=seed,
  )
