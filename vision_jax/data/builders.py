"""TF-free TFDS builders base class and the Fashion-MNIST builder.

Every builder here is a ``tfds.core.GeneratorBasedBuilder`` that reads a dataset's *real* on-disk
format from a manual directory and writes ``array_record`` shards, which ``tfds.data_source``
reads back with random access and without TensorFlow.

TF-free feature encodings (verified with tensorflow-datasets 4.9.10 and no TensorFlow installed):

- ``tfds.features.Image`` fed a NumPy array calls ``tf.image.encode_png`` and fails with
  ``No module named 'tensorflow'``; fed encoded PNG/JPEG *bytes* it stores them as-is and decodes
  with PIL on read. Used for variable-size photos (faces, re-ID crops), kept in their original
  JPEG bytes.
- ``tfds.features.Tensor(dtype=uint8)`` stores raw bytes with NumPy, no TF. Used for small
  fixed-size images (Fashion-MNIST, CIFAR): decoding a 28x28 PNG with PIL capped reads at
  ~2,200 examples/s here, raw tensors read at ~12,000 examples/s (batched ``__getitems__``).
"""

import io
import os
from collections.abc import Iterator, Sequence

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from vision_jax.data.idx import read_idx


def encode_png(image: np.ndarray) -> bytes:
  """Encodes a uint8 image ``[H, W]`` or ``[H, W, C]`` (C in 1, 3, 4) as PNG bytes."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise TypeError(f"encode_png: image dtype must be uint8, got {image.dtype}.")
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  buf = io.BytesIO()
  PIL.Image.fromarray(image).save(buf, format="PNG", compress_level=1)
  return buf.getvalue()


def decode_image(data: bytes, channels: int | None = None) -> np.ndarray:
  """Decodes PNG/JPEG bytes to uint8 ``[H, W, C]`` (``channels`` 1 or 3 converts)."""
  img = PIL.Image.open(io.BytesIO(data))
  if channels == 1:
    img = img.convert("L")
  elif channels == 3:
    img = img.convert("RGB")
  arr = np.asarray(img, dtype=np.uint8)
  return arr[..., None] if arr.ndim == 2 else arr


def env_name(builder_name: str) -> str:
  """Environment variable that overrides a builder's default manual dir."""
  name = builder_name.removeprefix("vj_")
  return f"VISION_JAX_{name.upper()}_DIR"


class ManualDirBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base class: finds the manual directory and checks that the expected files exist.

  Manual dir precedence: ``DownloadConfig(manual_dir=...)`` when given explicitly, else the
  environment variable ``VISION_JAX_<NAME>_DIR`` (name without ``vj_``), else ``DEFAULT_MANUAL_DIR``.

  Subclasses set ``REQUIRED_FILES`` (paths relative to the manual dir), ``DEFAULT_MANUAL_DIR``
  and ``INSTALL_HINT`` (how to get the files), and use ``self.manual_path(dl_manager)``.
  ``NESTED_DIRS`` names the folder(s) the official archive unpacks to (``cifar-10-batches-py``):
  a manual dir that holds one of them instead of the files themselves is accepted too.
  """

  DEFAULT_MANUAL_DIR: str | None = None
  REQUIRED_FILES: Sequence[str] = ()
  INSTALL_HINT: str = ""
  NESTED_DIRS: Sequence[str] = ()

  def dataset_info(self, features, **kwargs) -> tfds.core.DatasetInfo:
    """This builder's ``DatasetInfo``: ``features`` (a dict or ``FeaturesDict``) and ``kwargs``
    (``description``, ``homepage``, ``supervised_keys``), with shuffling disabled so that the
    examples keep the order of the raw files (eval protocols and pair lists index into it)."""
    if not isinstance(features, tfds.features.FeaturesDict):
      features = tfds.features.FeaturesDict(features)
    return tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True, **kwargs)

  @classmethod
  def resolve_manual_dir(cls, dl_manager=None) -> str:
    explicit = None
    if dl_manager is not None:
      manual = getattr(dl_manager, "_manual_dir", None)
      default_tfds = os.fspath(dl_manager.download_dir / "manual")
      if manual is not None and os.fspath(manual) != default_tfds:
        explicit = os.fspath(manual)
    if explicit is not None:
      return explicit
    env = os.environ.get(env_name(cls.name))
    if env:
      return env
    if cls.DEFAULT_MANUAL_DIR is None:
      raise FileNotFoundError(
        f"{cls.name}: no manual dir given. Pass manual_dir=... (or "
        f"DownloadConfig(manual_dir=...)) or set {env_name(cls.name)}. {cls.INSTALL_HINT}"
      )
    return cls.DEFAULT_MANUAL_DIR

  @classmethod
  def check_files(cls, manual_dir: str) -> None:
    """Raises FileNotFoundError naming every missing file and the fix."""
    missing = [os.path.join(manual_dir, f) for f in cls.REQUIRED_FILES]
    missing = [p for p in missing if not os.path.exists(p)]
    if missing:
      raise FileNotFoundError(
        f"{cls.name}: missing file(s): {', '.join(missing)}. Fix: {cls.INSTALL_HINT} "
        f"Or pass manual_dir=DIR (or set {env_name(cls.name)}=DIR) pointing at a directory "
        f"that holds {', '.join(cls.REQUIRED_FILES)}."
      )

  @classmethod
  def locate(cls, manual_dir: str) -> str:
    """``manual_dir`` itself, or its ``NESTED_DIRS`` child that holds the required files."""
    have = lambda d: all(os.path.exists(os.path.join(d, f)) for f in cls.REQUIRED_FILES)
    if not have(manual_dir):
      for sub in cls.NESTED_DIRS:
        if have(os.path.join(manual_dir, sub)):
          return os.path.join(manual_dir, sub)
    return manual_dir

  def manual_path(self, dl_manager) -> str:
    """The resolved manual dir; raises FileNotFoundError (naming it and the fix) when it is not
    a directory or lacks a ``REQUIRED_FILES`` entry."""
    manual_dir = self.locate(self.resolve_manual_dir(dl_manager))
    if not os.path.isdir(manual_dir):
      raise FileNotFoundError(
        f"{self.name}: manual dir {manual_dir} does not exist. Fix: {self.INSTALL_HINT}"
      )
    self.check_files(manual_dir)
    return manual_dir


FASHION_MNIST_CLASSES = (
  "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


class VjFashionMnist(ManualDirBuilder):
  """Fashion-MNIST (Xiao et al., 2017, arXiv:1708.07747) from the IDX ``.gz`` files.

  Splits ``train`` (60,000) and ``test`` (10,000); element ``{"image": uint8 [28, 28, 1],
  "label": int64 in [0, 10)}``. Shuffling is disabled at write time, so ``source[i]`` is row
  ``i`` of the IDX file.
  """

  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {
    "1.0.0": "IDX files from a manual dir, PNG-encoded, array_record.",
    "2.0.0": "Raw uint8 Tensor feature instead of PNG (5x faster reads).",
  }
  DEFAULT_MANUAL_DIR = "/usr/share/datasets/fashion-mnist"
  REQUIRED_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
  )
  INSTALL_HINT = "sudo apt-get install dataset-fashion-mnist (Debian/Ubuntu; installs into /usr/share/datasets/fashion-mnist)."
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTALL_HINT

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info(
      {
        "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
        "label": tfds.features.ClassLabel(names=FASHION_MNIST_CLASSES),
      },
      description="Fashion-MNIST: 28x28 grayscale images of 10 clothing classes.",
      supervised_keys=("image", "label"),
      homepage="https://github.com/zalandoresearch/fashion-mnist",
    )

  def _split_generators(self, dl_manager):
    d = self.manual_path(dl_manager)
    return {
      "train": self._generate_examples(d, "train"),
      "test": self._generate_examples(d, "t10k"),
    }

  def _generate_examples(self, manual_dir: str, prefix: str) -> Iterator[tuple[int, dict]]:
    images = read_idx(os.path.join(manual_dir, f"{prefix}-images-idx3-ubyte.gz"))
    labels_path = os.path.join(manual_dir, f"{prefix}-labels-idx1-ubyte.gz")
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
      raise ValueError(
        f"vj_fashion_mnist: {manual_dir}/{prefix}-*: expected images [n, 28, 28] and labels [n], "
        f"got {images.shape} and {labels.shape}."
      )
    if images.dtype != np.uint8:
      raise ValueError(
        f"vj_fashion_mnist: {manual_dir}/{prefix}-images: dtype {images.dtype}, "
        "expected uint8 (IDX type 0x08)."
      )
    num_classes = len(FASHION_MNIST_CLASSES)
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
      i = int(np.flatnonzero(bad)[0])
      raise ValueError(
        f"vj_fashion_mnist: {labels_path}: label[{i}]={int(labels[i])} is outside [0, "
        f"{num_classes}) ({int(bad.sum())} bad labels); not a Fashion-MNIST label file."
      )
    for i in range(images.shape[0]):
      yield i, {"image": images[i][:, :, None], "label": int(labels[i])}
