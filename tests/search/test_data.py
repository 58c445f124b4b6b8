"""Data loaders: ann-benchmarks HDF5 fixture, gensim KeyedVectors pickle, wefe, synthetic."""

import importlib.util
import pickle
import sys
import types

import numpy as np
import pytest

from vision_jax.search import data


def test_ann_benchmarks_hdf5_round_trip(tmp_path):
  pytest.importorskip("h5py")
  rng = np.random.default_rng(0)
  train = rng.normal(size=(50, 8)).astype(np.float32)
  test = rng.normal(size=(4, 8)).astype(np.float32)
  nb = np.argsort(-(test @ train.T), axis=1)[:, :10]
  dist = 1.0 - np.take_along_axis(test @ train.T, nb, 1)
  path = str(tmp_path / "fixture-8-angular.hdf5")
  data.write_ann_benchmarks_hdf5(path, train, test, nb, dist, distance="angular")
  got = data.load_ann_benchmarks_hdf5(path)
  np.testing.assert_array_equal(got["train"], train)
  np.testing.assert_array_equal(got["test"], test)
  np.testing.assert_array_equal(got["neighbors"], nb)
  np.testing.assert_allclose(got["distances"], dist)
  assert got["distance"] == "angular"
  with pytest.raises(FileNotFoundError, match="path="):
    data.load_ann_benchmarks_hdf5(str(tmp_path / "missing.hdf5"))


def test_read_gensim_pickle_without_gensim(tmp_path, monkeypatch):
  # Build a pickle whose class lives in a fake 'gensim.models.keyedvectors' module.
  mod = types.ModuleType("gensim.models.keyedvectors")

  class Word2VecKeyedVectors:
    pass

  Word2VecKeyedVectors.__module__ = mod.__name__
  Word2VecKeyedVectors.__qualname__ = "Word2VecKeyedVectors"
  mod.Word2VecKeyedVectors = Word2VecKeyedVectors
  for name in ("gensim", "gensim.models"):
    monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
  monkeypatch.setitem(sys.modules, mod.__name__, mod)
  kv = Word2VecKeyedVectors()
  vecs = np.arange(12, dtype=np.float32).reshape(3, 4)
  kv.vectors = vecs
  kv.index2word = ["a", "b", "c"]
  path = tmp_path / "m.kv"
  path.write_bytes(pickle.dumps(kv, protocol=4))
  monkeypatch.delitem(sys.modules, mod.__name__)
  got, words = data.read_gensim_keyed_vectors(str(path))
  np.testing.assert_array_equal(got, vecs)
  assert words == ["a", "b", "c"]
  # Anything but numpy + gensim stubs is refused.
  evil = tmp_path / "evil.kv"
  evil.write_bytes(pickle.dumps(print))
  with pytest.raises(pickle.UnpicklingError, match="refusing"):
    data.read_gensim_keyed_vectors(str(evil))


def test_word2vec_missing_wefe_names_install_command(tmp_path, monkeypatch):
  real = importlib.util.find_spec
  monkeypatch.setattr(
    importlib.util, "find_spec", lambda name, *a: None if name == "wefe" else real(name, *a)
  )
  with pytest.raises(ModuleNotFoundError, match="pip install --no-deps wefe"):
    data.load_word2vec_sample(cache_dir=str(tmp_path))


@pytest.mark.skipif(importlib.util.find_spec("wefe") is None, reason="wefe not installed")
def test_word2vec_sample_loads_and_caches(tmp_path):
  vecs, words = data.load_word2vec_sample(cache_dir=str(tmp_path))
  assert vecs.shape == (13013, 300) and vecs.dtype == np.float32 and len(words) == 13013
  assert (tmp_path / "word2vec_wefe.npy").exists()
  again, words2 = data.load_word2vec_sample(cache_dir=str(tmp_path))
  np.testing.assert_array_equal(again, vecs)
  assert words2 == words


def test_synthetic_clustered_and_split():
  x = data.synthetic_clustered(1000, 20, num_clusters=5, seed=0)
  assert x.shape == (1000, 20) and x.dtype == np.float32
  norms = np.linalg.norm(x, axis=1)
  assert norms.min() >= 1.0 - 1e-5 and norms.max() > 2.0  # power-law tail
  u = data.synthetic_clustered(100, 20, normalize=True)
  np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-5)
  db, q = data.split_queries(x, 100)
  assert db.shape == (900, 20) and q.shape == (100, 20)
  with pytest.raises(ValueError, match="num_queries=1000"):
    data.split_queries(x, 1000)
