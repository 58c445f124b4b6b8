"""IDX reader and the TF-free Fashion-MNIST builder on tiny gzip'ed IDX fixtures."""

import gzip
import struct
import sys

import numpy as np
import pytest

import vision_jax.data as vd


def _write_idx_by_hand(path, array):
  """Independent IDX writer (not vd.write_idx): magic 0x0000 08 ndim, big-endian uint32 dims."""
  header = (
    b"\x00\x00\x08" + bytes([array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
  )
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def fmnist_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("fmnist_raw")
  rng = np.random.default_rng(0)
  arrays = {
    "train": (
      rng.integers(0, 256, (13, 28, 28), dtype=np.uint8),
      rng.integers(0, 10, 13).astype(np.uint8),
    ),
    "t10k": (
      rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
      rng.integers(0, 10, 5).astype(np.uint8),
    ),
  }
  for prefix, (images, labels) in arrays.items():
    _write_idx_by_hand(d / f"{prefix}-images-idx3-ubyte.gz", images)
    _write_idx_by_hand(d / f"{prefix}-labels-idx1-ubyte.gz", labels)
  return d, arrays


def test_read_idx_matches_hand_written(fmnist_dir):
  d, arrays = fmnist_dir
  images = vd.read_idx(d / "train-images-idx3-ubyte.gz")
  labels = vd.read_idx(d / "train-labels-idx1-ubyte.gz")
  np.testing.assert_array_equal(images, arrays["train"][0])
  np.testing.assert_array_equal(labels, arrays["train"][1])
  assert images.shape == (13, 28, 28) and images.dtype == np.uint8


def test_write_idx_roundtrip_and_bytes(tmp_path):
  a = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5
  vd.write_idx(tmp_path / "a.idx", a)
  raw = (tmp_path / "a.idx").read_bytes()
  assert raw[:4] == b"\x00\x00\x0c\x03" and struct.unpack(">3I", raw[4:16]) == (2, 3, 4)
  np.testing.assert_array_equal(vd.read_idx(tmp_path / "a.idx"), a)


def test_read_idx_rejects_truncated(tmp_path):
  p = tmp_path / "bad-idx1-ubyte.gz"
  with gzip.open(p, "wb") as f:
    f.write(b"\x00\x00\x08\x01" + struct.pack(">I", 10) + b"\x01\x02")
  with pytest.raises(ValueError, match="10"):
    vd.read_idx(p)


def test_builder_roundtrip_without_tensorflow(fmnist_dir, tmp_path):
  d, arrays = fmnist_dir
  for split, prefix in (("train", "train"), ("test", "t10k")):
    src = vd.fashion_mnist(split, data_dir=tmp_path, manual_dir=d)
    images, labels = arrays[prefix]
    assert len(src) == len(labels)
    for i in range(len(labels)):
      ex = src[i]
      assert ex["image"].dtype == np.uint8 and ex["image"].shape == (28, 28, 1)
      np.testing.assert_array_equal(ex["image"][..., 0], images[i])
      assert int(ex["label"]) == int(labels[i])
  # The array_record files exist and TF never got imported (it is not installed here).
  assert list((tmp_path / "vj_fashion_mnist" / "2.0.0").glob("*.array_record*"))
  assert "tensorflow" not in sys.modules


def test_builder_via_tfds_data_source(fmnist_dir, tmp_path):
  import tensorflow_datasets as tfds

  d, arrays = fmnist_dir
  vd.fashion_mnist("train", data_dir=tmp_path, manual_dir=d)  # build
  src = tfds.data_source("vj_fashion_mnist", split="train", data_dir=tmp_path, download=False)
  batch = src.__getitems__([3, 0])
  np.testing.assert_array_equal(batch[0]["image"][..., 0], arrays["train"][0][3])
  np.testing.assert_array_equal(batch[1]["image"][..., 0], arrays["train"][0][0])


def test_missing_files_error_names_path_and_fix(tmp_path):
  empty = tmp_path / "nowhere"
  empty.mkdir()
  with pytest.raises(FileNotFoundError) as e:
    vd.fashion_mnist("train", data_dir=tmp_path / "store", manual_dir=empty)
  msg = str(e.value)
  assert str(empty / "train-images-idx3-ubyte.gz") in msg
  assert "apt-get install dataset-fashion-mnist" in msg
  assert "VISION_JAX_FASHION_MNIST_DIR" in msg


def test_env_var_manual_dir(fmnist_dir, tmp_path, monkeypatch):
  d, arrays = fmnist_dir
  monkeypatch.setenv("VISION_JAX_FASHION_MNIST_DIR", str(d))
  monkeypatch.setenv("VISION_JAX_DATA_DIR", str(tmp_path / "store"))
  assert vd.default_data_dir() == str(tmp_path / "store")
  src = vd.fashion_mnist("test")
  assert len(src) == 5
  assert int(src[4]["label"]) == int(arrays["t10k"][1][4])


def test_builder_source_feeds_pipeline(fmnist_dir, tmp_path):
  d, arrays = fmnist_dir
  src = vd.fashion_mnist("train", data_dir=tmp_path, manual_dir=d)
  ds = vd.train_dataset(src, global_batch_size=4, seed=0, process_count=1, process_index=0)
  batch = next(vd.prefetch_iterator(ds, 2, num_threads=1, buffer=1))
  assert batch["image"].shape == (4, 28, 28, 1) and batch["image"].dtype == np.uint8
  # Each batch row is some fixture row with its own label.
  for img, lab in zip(batch["image"], batch["label"]):
    i = int(np.flatnonzero((arrays["train"][0] == img[..., 0]).all(axis=(1, 2)))[0])
    assert int(lab) == int(arrays["train"][1][i])
  ev = list(vd.eval_batches(src, global_batch_size=8, process_count=1, process_index=0))
  assert [int(b["mask"].sum()) for b in ev] == [8, 5]
  np.testing.assert_array_equal(np.concatenate([b["label"] for b in ev])[:13], arrays["train"][1])


def test_materialize_equals_source(fmnist_dir, tmp_path):
  d, arrays = fmnist_dir
  src = vd.fashion_mnist("train", data_dir=tmp_path, manual_dir=d)
  mem = vd.materialize(src, chunk=5)
  assert isinstance(mem, vd.ArraySource) and len(mem) == 13
  np.testing.assert_array_equal(mem.arrays["image"][..., 0], arrays["train"][0])
  np.testing.assert_array_equal(mem.arrays["label"], arrays["train"][1])


def test_tfds_mock_data_works_without_files(tmp_path):
  """Smoke tests can run vj_* builders with tfds' random mock examples and no raw files."""
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
    src = vd.fashion_mnist("train", data_dir=tmp_path, manual_dir=tmp_path / "absent")
    assert len(src) == 6
    ex = src[5]
    assert ex["image"].shape == (28, 28, 1) and ex["image"].dtype == np.uint8
    assert 0 <= int(ex["label"]) < 10
  assert "tensorflow" not in sys.modules


def test_fashion_mnist_hashing_sources(fmnist_dir, tmp_path):
  d, arrays = fmnist_dir
  s = vd.fashion_mnist_hashing_sources(
    data_dir=tmp_path, manual_dir=d, num_query_per_class=0, num_train_per_class=0
  )
  # With zero query/train per class everything is database, in pooled (train then test) order.
  assert len(s["query"]) == 0 and len(s["train"]) == 0 and len(s["database"]) == 18
  pooled = np.concatenate([arrays["train"][1], arrays["t10k"][1]])
  np.testing.assert_array_equal([int(e["label"]) for e in s["database"]], pooled)
  np.testing.assert_array_equal(s["database"][15]["image"][..., 0], arrays["t10k"][0][2])


def test_png_encode_decode_roundtrip():
  rng = np.random.default_rng(0)
  for shape in [(5, 7), (5, 7, 1), (4, 6, 3)]:
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    y = vd.decode_image(vd.encode_png(x))
    np.testing.assert_array_equal(y, x if x.ndim == 3 else x[..., None])
  gray = rng.integers(0, 256, (3, 3), dtype=np.uint8)
  np.testing.assert_array_equal(
    vd.decode_image(vd.encode_png(gray), channels=3), np.repeat(gray[..., None], 3, -1)
  )
  with pytest.raises(TypeError, match="uint8"):
    vd.encode_png(np.zeros((2, 2), np.float32))
