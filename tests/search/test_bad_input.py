"""Search: bad input raises naming the argument (or the file), never a raw JAX/NumPy error."""

import os
import zipfile

import numpy as np
import pytest

from vision_jax import search
from vision_jax.search import index as ix
from vision_jax.search import quantization as qz


def _xq(n=50, nq=4, d=8, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(nq, d)).astype(np.float32)


def test_exact_mips_nan_queries():
  x, q = _xq()
  q[2, 1] = np.nan
  with pytest.raises(ValueError, match=r"queries contains non-finite values.*index \(2, 1\)"):
    search.exact_mips(q, x, 3)


def test_exact_mips_nan_database_row():
  x, q = _xq()
  x[7, 0] = np.inf
  with pytest.raises(ValueError, match=r"database contains non-finite values \(first in row 7\)"):
    search.exact_mips(q, x, 3)


@pytest.mark.parametrize("k", [0, 51, 2.0, True])
def test_exact_mips_k_out_of_range(k):
  x, q = _xq()
  with pytest.raises(ValueError, match=r"k=.* must be an integer in \[1, database size n=50\]"):
    search.exact_mips(q, x, k)


def test_exact_mips_dimension_mismatch():
  x, q = _xq()
  with pytest.raises(ValueError, match=r"queries have dimension d=6 but database has d=8"):
    search.exact_mips(q[:, :6], x, 3)
  with pytest.raises(ValueError, match=r"database must be a non-empty \[n, d\] matrix"):
    search.exact_mips(q, x[0], 3)


def test_exact_mips_still_exact():
  x, q = _xq()
  ids, scores = search.exact_mips(q, x, 3, batch_size=3)
  ref = np.argsort(-(q @ x.T), axis=1)[:, :3]
  np.testing.assert_array_equal(ids, ref)
  np.testing.assert_allclose(scores, np.take_along_axis(q @ x.T, ref, 1), rtol=1e-5)


def test_split_blocks_not_dividing():
  with pytest.raises(
    ValueError, match=r"num_blocks=3 does not divide the dimension d=8.*\[1, 2, 4, 8\]"
  ):
    qz.split_blocks(np.zeros((2, 8), np.float32), 3)
  with pytest.raises(ValueError, match=r"x must be \[n, d\]"):
    qz.split_blocks(np.zeros(8, np.float32), 2)


def test_pq_encode_nearest_dimension_mismatch():
  cb = np.zeros((4, 16, 2), np.float32)  # encodes d = 8
  with pytest.raises(ValueError, match=r"pq_encode_nearest: targets has shape \(5, 6\).*\[n, 8\]"):
    qz.pq_encode_nearest(np.zeros((5, 6), np.float32), cb)
  with pytest.raises(ValueError, match=r"lookup_tables: queries has shape \(2, 6\)"):
    search.lookup_tables(np.zeros((2, 6), np.float32), cb)
  with pytest.raises(ValueError, match=r"pq_encode_anisotropic: directions has shape \(5, 4\)"):
    qz.pq_encode_anisotropic(np.zeros((5, 8)), np.zeros((5, 4)), cb, 1.0)


def test_recall_at_query_count_mismatch():
  with pytest.raises(ValueError, match=r"found_ids has 3 queries but true_ids has 4"):
    search.recall_at(np.zeros((3, 10), int), np.zeros((4, 10), int), n_true=1, k=10)
  with pytest.raises(ValueError, match=r"k=20 must be an int in \[1, 10\]"):
    search.recall_at(np.zeros((3, 10), int), np.zeros((3, 10), int), n_true=1, k=20)
  with pytest.raises(ValueError, match=r"n_true=0 must be an int"):
    search.recall_at(np.zeros((3, 10), int), np.zeros((3, 10), int), n_true=0, k=10)


@pytest.fixture(scope="module")
def saved_index(tmp_path_factory):
  x, _ = _xq(200, d=8)
  path = str(tmp_path_factory.mktemp("idx") / "index.npz")
  ix.AVQIndex.build(x, dims_per_block=2, training_iterations=2).save(path)
  return path


def _assert_closed(path):
  """No file descriptor of this process refers to ``path`` (checked while the caught exception,
  and so its traceback's frames, are still alive)."""
  fds = os.listdir("/proc/self/fd")
  for fd in fds:
    try:
      assert os.readlink(f"/proc/self/fd/{fd}") != path
    except FileNotFoundError:
      pass


def test_load_truncated_npz_names_path_and_closes_file(saved_index, tmp_path):
  raw = open(saved_index, "rb").read()
  bad = str(tmp_path / "truncated.npz")
  with open(bad, "wb") as f:
    f.write(raw[: len(raw) // 2])
  with pytest.raises(ValueError, match=rf"index file '{bad}' is not a readable \.npz") as err:
    ix.AVQIndex.load(bad)
  _assert_closed(bad)
  assert err.value.__cause__ is not None  # the zip error is chained, the traceback kept


def test_load_npz_of_another_format(tmp_path):
  other = str(tmp_path / "other.npz")
  np.savez(other, weights=np.zeros(3))
  with pytest.raises(ValueError, match=rf"'{other}' is an \.npz without format_version.*weights"):
    ix.AVQIndex.load(other)
  _assert_closed(other)
  npy = str(tmp_path / "single.npy")
  np.save(npy, np.zeros(3))
  with pytest.raises(ValueError, match="single .npy array"):
    ix.AVQIndex.load(npy)
  text = str(tmp_path / "notes.npz")
  with open(text, "w") as f:
    f.write("not an index")
  with pytest.raises(ValueError, match=rf"'{text}' is not a readable \.npz"):
    ix.AVQIndex.load(text)


def test_load_other_format_version(saved_index, tmp_path):
  z = dict(np.load(saved_index))
  z["format_version"] = np.asarray(99)
  path = str(tmp_path / "v99.npz")
  np.savez(path, **z)
  with pytest.raises(ValueError, match=r"format_version=99, expected 1"):
    ix.AVQIndex.load(path)


def test_load_corrupt_member(saved_index, tmp_path):
  path = str(tmp_path / "corrupt.npz")
  with zipfile.ZipFile(saved_index) as src, zipfile.ZipFile(path, "w") as dst:
    for name in src.namelist():
      data = src.read(name)
      dst.writestr(name, data[:20] if name == "codes.npy" else data)
  with pytest.raises(ValueError, match=rf"index file '{path}' is corrupt"):
    ix.AVQIndex.load(path)


def test_load_round_trip_still_works(saved_index):
  idx = ix.AVQIndex.load(saved_index)
  assert idx.num_points == 200 and idx.dim == 8


def test_garbage_hdf5_names_path(tmp_path):
  pytest.importorskip("h5py")
  path = str(tmp_path / "glove-100-angular.hdf5")
  with open(path, "wb") as f:
    f.write(b"\x89HDF garbage" * 10)
  with pytest.raises(ValueError, match=rf"'{path}' is not a readable HDF5 file"):
    search.load_ann_benchmarks_hdf5(path)
