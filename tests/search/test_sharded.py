"""Database sharded over 8 fake CPU devices: same ids/scores as the unsharded search."""

import jax
import numpy as np
import pytest

from tests.search.compare import assert_same_topk
from vision_jax.search import index as ix
from vision_jax.search.data import synthetic_clustered
from vision_jax.search.sharded import shard_index


@pytest.fixture(scope="module")
def setup(num_devices):
  x = synthetic_clustered(800, 16, num_clusters=8, seed=0)
  q = synthetic_clustered(12, 16, num_clusters=8, seed=1)
  index = ix.AVQIndex.build(x, num_leaves=8, dims_per_block=2, threshold=0.2, training_iterations=3)
  mesh = jax.make_mesh((num_devices,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  return index, shard_index(index, mesh, axis="data"), q


@pytest.mark.parametrize("leaves,k,reorder", [(2, 10, 0), (3, 5, 40), (8, 10, 800)])
def test_sharded_equals_unsharded(setup, leaves, k, reorder):
  index, sharded, q = setup
  ref = index.search(q, k, leaves_to_search=leaves, reorder=reorder, backend="xla")
  got = sharded.search(q, k, leaves_to_search=leaves, reorder=reorder)
  assert_same_topk(got, ref, tol=1e-6)


def test_each_device_holds_one_eighth_of_the_database(setup):
  index, sharded, _ = setup
  n, nl = index.num_points, index.num_leaves
  for arr, full in (
    (sharded.database, index.database),
    (sharded.codes, index.codes),
    (sharded.ids, None),
  ):
    shards = arr.addressable_shards
    assert len(shards) == 8 and len({s.device for s in shards}) == 8
    assert all(s.data.nbytes * 8 == arr.nbytes for s in shards)
    if full is not None:
      # At most one padding row per (device, leaf) on top of n/8.
      assert shards[0].data.shape[1] <= -(-n // 8) + nl
      assert arr.nbytes <= full.nbytes * (1 + 8 * nl / n)
  ids = np.asarray(sharded.ids).ravel()
  np.testing.assert_array_equal(np.sort(ids[ids >= 0]), np.arange(n))
