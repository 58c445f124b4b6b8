"""Data: truncated / corrupt files and bad labels raise naming the file (never None examples)."""

import gzip
import os
import struct
import sys

import numpy as np
import pytest

import vision_jax.data as vd


def _write_idx_gz(path, array):
  header = (
    b"\x00\x00\x08" + bytes([array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
  )
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def _raw_dir(d, train_labels=None):
  rng = np.random.default_rng(0)
  train_labels = rng.integers(0, 10, 13) if train_labels is None else np.asarray(train_labels)
  _write_idx_gz(d / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (len(train_labels), 28, 28)))
  _write_idx_gz(d / "train-labels-idx1-ubyte.gz", train_labels)
  _write_idx_gz(d / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (5, 28, 28)))
  _write_idx_gz(d / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 5))
  return d


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  raw = _raw_dir(tmp_path_factory.mktemp("raw"))
  store = tmp_path_factory.mktemp("store")
  vd.fashion_mnist("train", data_dir=store, manual_dir=raw)
  return raw, store


def _shard(store, split):
  (path,) = [p for p in (store / "vj_fashion_mnist" / "2.0.0").glob(f"*-{split}.array_record*")]
  return path


def _truncated_copy(built, tmp_path):
  raw, store = built
  import shutil

  copy = tmp_path / "store"
  shutil.copytree(store, copy)
  shard = _shard(copy, "train")
  with open(shard, "r+b") as f:
    f.truncate(os.path.getsize(shard) // 2)
  return raw, copy, shard


def test_truncated_array_record_shard_names_file(built, tmp_path):
  raw, store, shard = _truncated_copy(built, tmp_path)
  with pytest.raises(ValueError, match=rf"shard '{shard}' .*truncated or corrupt; delete "):
    vd.fashion_mnist("train", data_dir=store, manual_dir=raw)
  # The undamaged split still loads, and a sub-split of the damaged one is caught too.
  assert len(vd.fashion_mnist("test", data_dir=store, manual_dir=raw)) == 5
  with pytest.raises(ValueError, match="truncated or corrupt"):
    vd.load("vj_fashion_mnist", "train[:3]", data_dir=store, manual_dir=raw)


def test_missing_shard_names_file(built, tmp_path):
  raw, store, shard = _truncated_copy(built, tmp_path)
  os.remove(shard)
  with pytest.raises(FileNotFoundError, match=rf"shard '{shard}' of vj_fashion_mnist is missing"):
    vd.fashion_mnist("train", data_dir=store, manual_dir=raw)


def test_truncated_built_dataset_through_cli(built, tmp_path, monkeypatch, capsys):
  from vision_jax.data import __main__ as cli

  raw, store, shard = _truncated_copy(built, tmp_path)
  argv = ["python -m vision_jax.data", "bench", f"--data_dir={store}", f"--manual_dir={raw}"]
  monkeypatch.setattr(sys, "argv", argv)
  with pytest.raises(ValueError, match=rf"shard '{shard}'"):
    cli.main()


def test_intact_dataset_still_loads(built):
  raw, store = built
  src = vd.fashion_mnist("train", data_dir=store, manual_dir=raw)
  assert len(src) == 13 and src[12]["image"].shape == (28, 28, 1)


def test_truncated_gzip_idx_names_path(tmp_path):
  good = tmp_path / "good-idx3-ubyte.gz"
  _write_idx_gz(good, np.zeros((4, 28, 28)))
  raw = good.read_bytes()
  bad = tmp_path / "train-images-idx3-ubyte.gz"
  bad.write_bytes(raw[: len(raw) // 2])
  with pytest.raises(ValueError, match=rf"{bad}: cannot decompress \(EOFError"):
    vd.read_idx(bad)
  notgz = tmp_path / "plain-idx1-ubyte.gz"
  notgz.write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 1) + b"\x01")
  with pytest.raises(ValueError, match=rf"{notgz}: cannot decompress \(BadGzipFile"):
    vd.read_idx(notgz)


def test_truncated_gzip_through_builder_names_path(tmp_path):
  (tmp_path / "raw").mkdir()
  raw = _raw_dir(tmp_path / "raw")
  p = raw / "train-labels-idx1-ubyte.gz"
  data = p.read_bytes()
  p.write_bytes(data[: len(data) - 12])
  with pytest.raises(ValueError, match=rf"{p}: cannot decompress"):
    vd.fashion_mnist("train", data_dir=tmp_path / "store", manual_dir=raw)


def test_idx_labels_out_of_range_rejected_before_tfds(tmp_path):
  (tmp_path / "raw").mkdir()
  labels = np.array([0, 1, 12, 3, 4, 5, 6, 7, 8, 9, 10, 2, 1])
  raw = _raw_dir(tmp_path / "raw", train_labels=labels)
  with pytest.raises(
    ValueError, match=r"train-labels-idx1-ubyte.gz: label\[2\]=12 is outside \[0, 10\) \(2 bad"
  ):
    vd.fashion_mnist("train", data_dir=tmp_path / "store", manual_dir=raw)


def test_long_tailed_indices_float_labels():
  with pytest.raises(TypeError, match=r"labels must be integer class ids, got dtype float64"):
    vd.long_tailed_indices(np.array([0.0, 1.0, 1.0, 0.0]), imbalance_ratio=2.0, seed=0)
  with pytest.raises(ValueError, match=r"labels must be >= 0; found labels\[1\]=-1"):
    vd.long_tailed_indices(np.array([0, -1, 1]), imbalance_ratio=2.0, seed=0)
  with pytest.raises(ValueError, match=r"imbalance_ratio=0.5 must be >= 1"):
    vd.long_tailed_indices(np.array([0, 1, 1, 0]), imbalance_ratio=0.5, seed=0)
  idx = vd.long_tailed_indices(np.array([0, 1, 1, 0]), imbalance_ratio=1.0, seed=0)
  np.testing.assert_array_equal(idx, [0, 1, 2, 3])


def test_long_tailed_counts_and_split_bad_values():
  with pytest.raises(ValueError, match=r"n_max=0 must be an int >= 1"):
    vd.long_tailed_counts(0, 10, 10.0)
  with pytest.raises(ValueError, match=r"imbalance_ratio=nan must be >= 1"):
    vd.long_tailed_counts(10, 10, float("nan"))
  with pytest.raises(ValueError, match=r"labels: class 1 has no examples"):
    vd.long_tailed_indices(np.array([0, 2, 2, 0]), imbalance_ratio=1.0, seed=0)
  with pytest.raises(ValueError, match=r"class_counts\[1\]=-1"):
    vd.head_medium_tail_split(np.array([5, -1, 3]))
  with pytest.raises(ValueError, match=r"class_counts\[0\]=nan"):
    vd.head_medium_tail_split(np.array([np.nan, 1.0]))


def test_truncated_built_dataset_through_experiment_cli(built, tmp_path):
  # Used to fail deep in the flip transform with "'NoneType' object is not subscriptable".
  from experiments.classification.__main__ import main

  raw, store, shard = _truncated_copy(built, tmp_path)
  argv = [
    "--preset=smoke",
    f"--workdir={tmp_path / 'run'}",
    "--host_allocator=default",
    "--config.data.name=fashion_mnist",
    f"--config.data.data_dir={store}",
    f"--config.data.manual_dir={raw}",
  ]
  with pytest.raises(ValueError, match=rf"shard '{shard}' .*truncated or corrupt"):
    main(argv)
