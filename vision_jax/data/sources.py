"""Loading built datasets as random-access sources (``tfds.data_source``, no TensorFlow)."""

import os
from collections.abc import Sequence
from typing import Any

import tensorflow_datasets as tfds

DATA_DIR_ENV = "VISION_JAX_DATA_DIR"


def default_data_dir() -> str:
  """Where array_record datasets are written/read.

  ``$VISION_JAX_DATA_DIR`` if set, else ``~/.cache/vision_jax/tensorflow_datasets``.
  """
  d = os.environ.get(DATA_DIR_ENV)
  return (
    os.path.expanduser(d) if d else os.path.expanduser("~/.cache/vision_jax/tensorflow_datasets")
  )


def load(
  name: str,
  split: str,
  *,
  data_dir: str | os.PathLike | None = None,
  manual_dir: str | os.PathLike | None = None,
  build: bool = True,
) -> Sequence[dict[str, Any]]:
  """Builds (once) and opens one split of a vision_jax TFDS builder as a random-access source.

  Args:
    name: builder name, e.g. ``"vj_fashion_mnist"`` (the builder module must be imported; this
      package imports all of them).
    split: e.g. ``"train"``, ``"test"``, ``"train[:1000]"``.
    data_dir: root of the array_record store; default ``default_data_dir()``.
    manual_dir: directory with the raw files in their original format; default: the builder's
      (see ``ManualDirBuilder.resolve_manual_dir``). Only used when the dataset is not built yet.
    build: build from the manual dir when missing (False: raise if not built).

  Returns:
    A sequence (``len``, ``__getitem__``, ``__getitems__``) of decoded example dicts, e.g.
    ``{"image": uint8 [H, W, C], "label": int64}``.

  Raises:
    FileNotFoundError: the raw files are missing; the message names the path and the fix.
  """
  data_dir = os.fspath(data_dir) if data_dir is not None else default_data_dir()
  os.makedirs(data_dir, exist_ok=True)
  if build:
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    if not builder.is_prepared():
      _build(builder, name, data_dir, manual_dir)
  return tfds.data_source(
    name,
    split=split,
    data_dir=data_dir,
    download=False,
    builder_kwargs={"file_format": "array_record"},
  )


def _build(builder, name: str, data_dir: str, manual_dir) -> None:
  """Builds ``name`` from its manual dir, printing what happens in our words.

  TFDS's own "Downloading and preparing dataset … download: Unknown size" lines and progress
  bars would tell a user the opposite of what happens (nothing is downloaded), so they are kept
  out; one line before and one after say where the raw files were read and how many examples
  each split got.
  """
  import contextlib
  import io
  import time

  resolve = getattr(type(builder), "resolve_manual_dir", None)
  src = os.fspath(manual_dir) if manual_dir is not None else None
  if src is None and resolve is not None:
    try:
      src = resolve()
    except FileNotFoundError:
      src = None  # the builder raises its own message naming the fix below
  print(f"building {name} from {src or '<manual dir>'} into {data_dir} ...", flush=True)
  config = tfds.download.DownloadConfig(
    manual_dir=os.fspath(manual_dir) if manual_dir is not None else None,
    try_download_gcs=False,
  )
  t0 = time.perf_counter()
  from tensorflow_datasets.core.utils import tqdm_utils

  was_active = tqdm_utils._active
  tfds.display_progress_bar(False)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      builder.download_and_prepare(download_config=config)
  finally:
    tfds.display_progress_bar(was_active)
  counts = ", ".join(f"{k}: {v.num_examples:,}" for k, v in sorted(builder.info.splits.items()))
  print(f"built {name} ({counts} examples) in {time.perf_counter() - t0:.1f} s", flush=True)


def fashion_mnist(
  split: str,
  *,
  data_dir: str | os.PathLike | None = None,
  manual_dir: str | os.PathLike | None = None,
) -> Sequence[dict[str, Any]]:
  """Fashion-MNIST ``split`` ("train" 60k / "test" 10k): ``{"image": uint8 [28,28,1], "label"}``.

  Built on first use from ``manual_dir`` (default ``/usr/share/datasets/fashion-mnist``, from
  ``apt-get install dataset-fashion-mnist``) into ``data_dir``.
  """
  return load("vj_fashion_mnist", split, data_dir=data_dir, manual_dir=manual_dir)
