"""train_dataset / eval_batches / prefetch_iterator: determinism, coverage, process slicing."""

import jax
import numpy as np
import pytest

from vision_jax.data import pipeline as pl


def _indexed(n):
  return pl.ArraySource({"idx": np.arange(n), "label": np.arange(n) % 3})


def _noise_transform(ex, rng):
  return {**ex, "noise": rng.integers(0, 2**31)}


def test_deterministic_in_seed_and_step():
  src = _indexed(23)
  a = pl.train_dataset(
    src, global_batch_size=4, seed=7, transform=_noise_transform, process_count=1, process_index=0
  )
  b = pl.train_dataset(
    src, global_batch_size=4, seed=7, transform=_noise_transform, process_count=1, process_index=0
  )
  c = pl.train_dataset(
    src, global_batch_size=4, seed=8, transform=_noise_transform, process_count=1, process_index=0
  )
  steps = [11, 0, 5, 11, 3]  # random access, out of order, repeated
  for s in steps:
    for k in ("idx", "noise"):
      np.testing.assert_array_equal(a[s][k], b[s][k])
  assert any(not np.array_equal(a[s]["idx"], c[s]["idx"]) for s in range(6))
  assert a[0]["idx"].shape == (4,)


def test_each_epoch_is_a_permutation_and_epochs_differ():
  n, bsz = 10, 4
  ds = pl.train_dataset(
    _indexed(n), global_batch_size=bsz, seed=0, process_count=1, process_index=0
  )
  stream = np.concatenate([ds[s]["idx"] for s in range(3 * n // bsz + 1)])  # >= 3 epochs
  epochs = [stream[e * n : (e + 1) * n] for e in range(3)]
  for e in epochs:
    np.testing.assert_array_equal(np.sort(e), np.arange(n))
  assert not np.array_equal(epochs[0], epochs[1]) or not np.array_equal(epochs[1], epochs[2])
  assert not np.array_equal(epochs[0], np.arange(n))


def test_two_processes_reconstruct_global_batch_including_augmentation():
  src = _indexed(17)
  full = pl.train_dataset(
    src, global_batch_size=6, seed=3, transform=_noise_transform, process_count=1, process_index=0
  )
  parts = [
    pl.train_dataset(
      src, global_batch_size=6, seed=3, transform=_noise_transform, process_count=2, process_index=p
    )
    for p in range(2)
  ]
  for s in (0, 1, 2, 9):
    for k in ("idx", "noise"):
      joined = np.concatenate([parts[0][s][k], parts[1][s][k]])
      np.testing.assert_array_equal(joined, full[s][k])
    assert parts[0][s]["idx"].shape == (3,)


def test_transform_rng_depends_on_position_not_example():
  src = pl.ArraySource({"idx": np.zeros(8, np.int64)})  # identical examples
  ds = pl.train_dataset(
    src, global_batch_size=8, seed=0, transform=_noise_transform, process_count=1, process_index=0
  )
  assert len(set(ds[0]["noise"].tolist())) == 8


def test_prefetch_iterator_resumes_at_step():
  src = _indexed(13)
  ds = pl.train_dataset(
    src, global_batch_size=4, seed=5, transform=_noise_transform, process_count=1, process_index=0
  )
  it = pl.prefetch_iterator(ds, 6, num_threads=2, buffer=3)
  for s in range(6, 12):
    b = next(it)
    np.testing.assert_array_equal(b["idx"], ds[s]["idx"])
    np.testing.assert_array_equal(b["noise"], ds[s]["noise"])
  it0 = pl.prefetch_iterator(ds, 6, num_threads=0, buffer=1)
  np.testing.assert_array_equal(next(it0)["idx"], ds[6]["idx"])


@pytest.mark.parametrize("n,bsz,procs", [(10, 4, 2), (8, 4, 1), (5, 8, 4), (1, 2, 2)])
def test_eval_batches_cover_once_with_mask(n, bsz, procs):
  src = _indexed(n)
  per_proc = [
    list(pl.eval_batches(src, global_batch_size=bsz, process_count=procs, process_index=p))
    for p in range(procs)
  ]
  nb = -(-n // bsz)
  assert all(len(b) == nb for b in per_proc)
  real = []
  for p in range(procs):
    for b in per_proc[p]:
      assert b["mask"].dtype == np.bool_ and b["mask"].shape == (bsz // procs,)
      assert b["idx"].shape == (bsz // procs,)
      real.extend(b["idx"][b["mask"]].tolist())
  assert sorted(real) == list(range(n))
  # Global order: step b, process p -> block p of positions [b*B, (b+1)*B).
  glob = np.concatenate(
    [np.concatenate([per_proc[p][b]["mask"] for p in range(procs)]) for b in range(nb)]
  )
  np.testing.assert_array_equal(glob, np.arange(nb * bsz) < n)
  gidx = np.concatenate(
    [np.concatenate([per_proc[p][b]["idx"] for p in range(procs)]) for b in range(nb)]
  )
  np.testing.assert_array_equal(gidx[:n], np.arange(n))


def test_eval_batches_transform_and_prefetch():
  src = _indexed(7)
  ev = pl.eval_batches(
    src,
    global_batch_size=4,
    transform=lambda ex, rng: {**ex, "y": ex["idx"] * 2},
    process_count=1,
    process_index=0,
  )
  got = list(pl.prefetch_iterator(ev, 0, num_threads=2, buffer=2))
  assert len(got) == 2
  np.testing.assert_array_equal(got[0]["y"], [0, 2, 4, 6])
  np.testing.assert_array_equal(got[1]["mask"], [True, True, True, False])


def test_bad_batch_size_and_process_errors():
  src = _indexed(4)
  with pytest.raises(ValueError, match="global_batch_size=5"):
    pl.train_dataset(src, global_batch_size=5, seed=0, process_count=2, process_index=0)
  with pytest.raises(ValueError, match="process_index=2"):
    pl.eval_batches(src, global_batch_size=4, process_count=2, process_index=2)
  with pytest.raises(ValueError, match="empty"):
    pl.train_dataset(
      pl.SubsetSource(src, []), global_batch_size=2, seed=0, process_count=1, process_index=0
    )


def test_synthetic_source_spec_and_determinism():
  a = pl.synthetic_source(50, (8, 6, 3), 4, seed=1)
  b = pl.synthetic_source(50, (8, 6, 3), 4, seed=1)
  assert len(a) == 50
  ex = a[3]
  assert ex["image"].dtype == np.uint8 and ex["image"].shape == (8, 6, 3)
  assert 0 <= int(ex["label"]) < 4
  np.testing.assert_array_equal(a.arrays["image"], b.arrays["image"])
  # Learnable: nearest class mean classifies better than chance.
  x = a.arrays["image"].reshape(50, -1).astype(np.float64)
  y = a.arrays["label"]
  means = np.stack(
    [x[y == c].mean(0) if (y == c).any() else np.full(x.shape[1], 1e9) for c in range(4)]
  )
  pred = np.argmin(((x[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
  assert (pred == y).mean() > 0.9


def test_subset_source():
  src = _indexed(10)
  sub = pl.SubsetSource(src, [7, 2, 2])
  assert len(sub) == 3 and int(sub[0]["idx"]) == 7
  assert [int(e["idx"]) for e in sub.__getitems__([2, 0])] == [2, 7]
  with pytest.raises(ValueError, match="indices"):
    pl.SubsetSource(src, [10])


def test_to_global_arrays_on_fake_devices(num_devices):
  mesh = jax.make_mesh((num_devices,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  ds = pl.train_dataset(_indexed(20), global_batch_size=16, seed=0)  # default: this 1 process
  batch = ds[0]
  g = pl.to_global_arrays(batch, sharding)
  assert g["idx"].shape == (16,) and len(g["idx"].sharding.device_set) == num_devices
  np.testing.assert_array_equal(np.asarray(g["idx"]), batch["idx"])


def test_mapped_source_applies_fn_on_read():
  src = pl.ArraySource({"x": np.arange(5), "y": np.arange(5) * 10})
  m = pl.MappedSource(src, lambda e: {"x": e["x"] + 1})
  assert len(m) == 5 and m[2] == {"x": 3}
  assert [e["x"] for e in m.__getitems__([4, 0])] == [5, 1]
  batches = list(pl.eval_batches(m, global_batch_size=4, process_index=0, process_count=1))
  np.testing.assert_array_equal(batches[0]["x"], [1, 2, 3, 4])
  np.testing.assert_array_equal(batches[1]["mask"], [True, False, False, False])
