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
  builder_kwargs: dict[str, Any] | None = None,
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
    builder_kwargs: extra constructor arguments of the builder, used when building (e.g.
      ``vj_imagenet_list``'s ``train_list`` / ``val_list``).

  Returns:
    A sequence (``len``, ``__getitem__``, ``__getitems__``) of decoded example dicts, e.g.
    ``{"image": uint8 [H, W, C], "label": int64}``.

  Raises:
    FileNotFoundError: the raw files are missing; the message names the path and the fix.
    ValueError: a built shard is truncated or corrupt (see :func:`check_shards`), or a raw file
      is (e.g. a truncated ``.gz``); the message names the file.
  """
  data_dir = os.fspath(data_dir) if data_dir is not None else default_data_dir()
  os.makedirs(data_dir, exist_ok=True)
  if build:
    builder = tfds.builder(
      name, data_dir=data_dir, file_format="array_record", **(builder_kwargs or {})
    )
    if not builder.is_prepared():
      _build(builder, name, data_dir, manual_dir)
  source = tfds.data_source(
    name,
    split=split,
    data_dir=data_dir,
    download=False,
    builder_kwargs={"file_format": "array_record"},
  )
  check_shards(source, name)
  return source


def check_shards(source, name: str = "") -> None:
  """Checks that every array_record shard behind ``source`` holds the records its dataset info
  promises (reads each shard's footer only).

  A truncated shard loses its footer, and ``tfds`` then decodes every example as
  ``{"image": None, "label": None}`` without an error; this turns that into one.

  Raises:
    FileNotFoundError: a shard file is missing.
    ValueError: a shard is unreadable or holds fewer/more records than recorded at build time;
      the message names the file and how to rebuild.
  """
  info, split = getattr(source, "dataset_info", None), getattr(source, "split", None)
  if info is None or split is None:
    return
  from array_record.python import array_record_module

  rebuild = (
    f"delete {info.data_dir} and rebuild it (python -m vision_jax.data prepare {name or info.name}"
    " --data_dir=...)"
  )
  try:
    instructions = info.splits[split].file_instructions
  except KeyError:  # no recorded splits (e.g. tfds.testing.mock_data): nothing to compare
    return
  for fi in instructions:
    path = os.fspath(fi.filename)
    if not os.path.exists(path):
      raise FileNotFoundError(f"array_record shard {path!r} of {info.name} is missing; {rebuild}.")
    try:
      reader = array_record_module.ArrayRecordReader(path)
      try:
        num = reader.num_records()
      finally:
        reader.close()
    except Exception as e:  # noqa: BLE001 - any reader failure means a damaged shard
      why = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
      raise ValueError(
        f"array_record shard {path!r} is unreadable ({why}): the file is truncated or corrupt; "
        f"{rebuild}."
      ) from e
    if num != fi.examples_in_shard:
      raise ValueError(
        f"array_record shard {path!r} holds {num} readable records but the dataset info "
        f"records {fi.examples_in_shard}: the file is truncated or corrupt; {rebuild}."
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
