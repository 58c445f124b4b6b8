"""AVQIndex: ADC exactness, exhaustive recall, save/load, bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.search import index as ix
from vision_jax.search import quantization as qz
from vision_jax.search.data import synthetic_clustered


@pytest.fixture(scope="module")
def data():
  x = synthetic_clustered(600, 16, num_clusters=8, seed=0)
  q = synthetic_clustered(20, 16, num_clusters=8, seed=1)
  return x, q


@pytest.fixture(scope="module")
def tree_index(data):
  x, _ = data
  return ix.AVQIndex.build(x, num_leaves=8, dims_per_block=2, threshold=0.2, training_iterations=5)


def test_lookup_tables_and_adc_equal_decoded_inner_products():
  rng = np.random.default_rng(0)
  cb = jnp.asarray(rng.normal(size=(4, 16, 3)), jnp.float32)
  codes = jnp.asarray(rng.integers(0, 16, size=(50, 4)), jnp.int32)
  q = jnp.asarray(rng.normal(size=(7, 12)), jnp.float32)
  luts = ix.lookup_tables(q, cb)
  ref = np.asarray(q) @ np.asarray(qz.pq_decode(codes, cb)).T
  np.testing.assert_allclose(ix.adc_scores(luts, codes), ref, rtol=1e-5, atol=1e-5)
  per_query = jnp.broadcast_to(codes[None], (7, 50, 4))
  np.testing.assert_allclose(ix.adc_scores(luts, per_query), ref, rtol=1e-5, atol=1e-5)


def test_search_scores_equal_decoded_inner_products(data, tree_index):
  x, q = data
  ids, scores = tree_index.search(q, 5, leaves_to_search=3)
  dec = np.asarray(tree_index.decoded())
  ref = np.take_along_axis(q @ dec.T, np.asarray(ids), axis=1)
  np.testing.assert_allclose(scores, ref, rtol=1e-5, atol=1e-5)


def test_exhaustive_settings_give_recall_one(data, tree_index):
  x, q = data
  gt, gs = ix.exact_mips(q, x, 10)
  ids, scores = tree_index.search(q, 10, leaves_to_search=8, reorder=len(x))
  assert ix.recall_at(ids, gt, n_true=10, k=10) == 1.0
  np.testing.assert_allclose(scores, gs, rtol=1e-5)
  flat = ix.AVQIndex.build(x, dims_per_block=4, threshold=0.2, training_iterations=3)
  ids, _ = flat.search(q, 10, reorder=len(x))
  assert ix.recall_at(ids, gt, n_true=10, k=10) == 1.0


def test_recall_metric():
  gt = np.array([[1, 2], [3, 4]])
  found = np.array([[2, 9], [5, 6]])
  assert ix.recall_at(found, gt, n_true=1, k=2) == 0.0
  assert ix.recall_at(found, gt, n_true=2, k=2) == 0.25


def test_save_load_round_trip(tmp_path, data, tree_index):
  _, q = data
  path = str(tmp_path / "idx.npz")
  tree_index.save(path)
  loaded = ix.AVQIndex.load(path)
  for kw in ({"leaves_to_search": 2}, {"leaves_to_search": 4, "reorder": 20}):
    a = tree_index.search(q, 5, **kw)
    b = loaded.search(q, 5, **kw)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
  assert loaded.info["threshold"] == 0.2 and loaded.bits_per_vector == 32


def test_anisotropic_index_lowers_score_aware_loss(data):
  x, _ = data
  iso = ix.AVQIndex.build(x, dims_per_block=2, training_iterations=5)
  ani = ix.AVQIndex.build(x, dims_per_block=2, threshold=0.5, training_iterations=5)
  li = float(jnp.mean(qz.score_aware_loss(x, iso.decoded(), threshold=0.5)))
  la = float(jnp.mean(qz.score_aware_loss(x, ani.decoded(), threshold=0.5)))
  assert la < li


def test_bad_inputs_name_argument_and_value(data, tree_index):
  x, q = data
  bad = x.copy()
  bad[3, 2] = np.nan
  with pytest.raises(ValueError, match="database contains non-finite.*index \\(3, 2\\)"):
    ix.AVQIndex.build(bad)
  badq = q.copy()
  badq[0, 0] = np.inf
  with pytest.raises(ValueError, match="queries contains non-finite"):
    tree_index.search(badq, 5)
  with pytest.raises(ValueError, match="dimension 15 .* d=16"):
    tree_index.search(q[:, :15], 5)
  with pytest.raises(ValueError, match="k=601"):
    tree_index.search(q, 601)
  with pytest.raises(ValueError, match="dims_per_block=3 .* d=16"):
    ix.AVQIndex.build(x, dims_per_block=3)
  small = x.copy()
  small[0] *= 0.01 / np.linalg.norm(small[0])
  with pytest.raises(ValueError, match="threshold=0.2 .* min\\|\\|x\\|\\|=0.01"):
    ix.AVQIndex.build(small, threshold=0.2)
  with pytest.raises(ValueError, match="not both"):
    ix.AVQIndex.build(x, threshold=0.1, eta=2.0)
  with pytest.raises(ValueError, match="leaves_to_search=9"):
    tree_index.search(q, 5, leaves_to_search=9)
  with pytest.raises(ValueError, match="reorder=3"):
    tree_index.search(q, 5, reorder=3)


@pytest.mark.parametrize("backend", ["xla", "native"])
def test_jit_search_kernel_no_retrace(data, tree_index, backend):
  _, q = data
  fn = ix._search_batch if backend == "xla" else ix._search_batch_native
  tree_index.search(q, 5, leaves_to_search=2, reorder=10, backend=backend)
  before = fn._cache_size()
  tree_index.search(q + 0.1, 5, leaves_to_search=2, reorder=10, backend=backend)
  assert fn._cache_size() == before
  assert jax.device_count() >= 1
