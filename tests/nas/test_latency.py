"""Latency table: re-measurement tolerance, prediction, reachable range, caching and bad input."""

import itertools
import json

import numpy as np
import pytest

from tests.nas._fixtures import TINY, synthetic_table
from vision_jax.nas import (
  OPS,
  LatencyTable,
  SearchSpace,
  Stage,
  arch_from_choices,
  cached_table,
  device_identity,
  measure_nets,
  measure_table,
  time_interleaved,
)
from vision_jax.nas import latency as lat_lib
from vision_jax.nas.supernet import nominal_widths, width_bounds

ONE = SearchSpace(
  image_size=8, in_channels=1, num_classes=4, stem=4, stem_stride=1, stem_block=4,
  stem_block_se=2, stages=(Stage(8, 2, 1, "relu"),), head=8,
)  # fmt: skip


def test_measured_table_has_every_block_and_predicts_positive_times():
  """A measured table covers each (kernel, SE) block of the stage and predicts a positive, finite
  time for every net; the derived nets time positive too. How close two measurements and the
  timed nets are depends on the machine and its load: ``benchmarks/bench_nas_latency.py``
  prints those ratios instead of asserting them here."""
  t1 = measure_table(ONE, num_widths=2, warmup=1, rounds=2, inner=1, isolated=False)
  assert t1.device == device_identity()
  assert len(t1.blocks) == 6  # k3/k5 x (no SE, SE c_in, SE 2 c_in)
  for e in t1.blocks.values():
    assert len(e["widths"]) == len(e["ms"]) == 2 and np.all(np.isfinite(e["ms"]))
  lo, hi = width_bounds(ONE)
  archs = [arch_from_choices(ONE, [o], [1], w) for o in (0, 7) for w in (lo, hi)]
  p1 = np.array([t1.predict(a) for a in archs])
  assert np.all(np.isfinite(p1)) and np.all(p1 > 0), p1
  meas = [m for m, _ in measure_nets(archs[:1], warmup=1, rounds=2, inner=1, isolated=False)]
  assert np.all(np.isfinite(meas)) and np.all(np.array(meas) > 0), meas


def test_time_interleaved_shape_and_order_independent():
  import jax
  import jax.numpy as jnp

  f = jax.jit(lambda x: x * 2.0)
  t = time_interleaved([(f, (jnp.ones(3),)), (f, (jnp.ones(5),))], warmup=1, rounds=4, inner=2)
  assert t.shape == (4, 2) and np.all(t > 0)


def test_prediction_is_base_plus_interpolated_blocks():
  table = synthetic_table()
  w = nominal_widths(TINY)
  arch = arch_from_choices(TINY, [1, 2, 3], [2, 1], w)
  want = table.base_ms
  for slot, o in zip(TINY.slots, [1, 2, 3]):
    key = lat_lib.slot_key(slot, OPS[o])
    e = table.blocks[key]
    want += np.interp(w[slot.index, o], e["widths"], e["ms"]) - table.dispatch_ms
  assert table.predict(arch) == pytest.approx(want, rel=1e-9)
  assert table.base_ms == pytest.approx(0.05 + 0.03 - 0.01)


def test_reachable_range_matches_enumeration():
  table = synthetic_table()
  lo_w, hi_w = width_bounds(TINY)
  preds = []
  for ops in itertools.product(range(8), repeat=3):
    for d0 in (1, 2):
      for w in (lo_w, hi_w):  # synthetic latency grows with width: extremes suffice
        preds.append(table.predict(arch_from_choices(TINY, ops, [d0, 1], w)))
  lo, hi = table.reachable(TINY)
  assert lo == pytest.approx(min(preds), rel=1e-6)
  assert hi == pytest.approx(max(preds), rel=1e-6)


def test_target_outside_reachable_range():
  table = synthetic_table()
  lo, hi = table.reachable(TINY)
  with pytest.raises(ValueError, match=rf"below the smallest reachable net.*{lo:.4f} ms"):
    table.check_target(TINY, lo * 0.9)
  with pytest.raises(ValueError, match=rf"above the largest net.*{hi:.4f} ms"):
    table.check_target(TINY, hi * 1.1, where="targets_ms[2]")
  table.check_target(TINY, (lo + hi) / 2)  # inside: fine


def test_unknown_op_and_uncovered_configs():
  table = synthetic_table()
  arch = arch_from_choices(TINY, [0, 0, 0], [1, 1], nominal_widths(TINY))
  bad = json.loads(json.dumps(arch))
  bad["blocks"][0]["op"] = "k7_e6_se"
  with pytest.raises(ValueError, match=r"arch.blocks\[0\].op='k7_e6_se' is not a TF-NAS op"):
    table.predict(bad)
  wide = json.loads(json.dumps(arch))
  for b in wide["blocks"]:
    b["cout"] = 12 if b["cout"] == 8 else b["cout"]
  wide["blocks"][1]["cin"] = 12
  with pytest.raises(
    ValueError, match=r"arch.blocks\[0\]: no latency-table entry for 'MBConv_8_4_0_12"
  ):
    table.predict(wide)
  big = json.loads(json.dumps(arch))
  big["blocks"][0]["mid"] = 1000
  with pytest.raises(ValueError, match=r"mid width 1000 .* outside the table's measured widths"):
    table.predict(big)


def test_table_from_another_device(tmp_path):
  path = str(tmp_path / "lut.json")
  synthetic_table(device="gpu:Some GPU").save(path)
  with pytest.raises(ValueError, match=r"measured on 'gpu:Some GPU' but this process runs on"):
    LatencyTable.load(path)
  assert LatencyTable.load(path, device="gpu:Some GPU").device == "gpu:Some GPU"


def test_malformed_table_files(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    LatencyTable.load(str(tmp_path / "none.json"))
  p = tmp_path / "bad.json"
  p.write_text("{")
  with pytest.raises(ValueError, match="not valid JSON"):
    LatencyTable.load(str(p))
  d = synthetic_table().to_dict()
  del d["blocks"]
  p.write_text(json.dumps(d))
  with pytest.raises(ValueError, match=r"missing field\(s\) \['blocks'\]"):
    LatencyTable.load(str(p))


def test_cached_table_measures_once(tmp_path, monkeypatch):
  calls = []

  def fake(space, **kw):
    calls.append(kw)
    return synthetic_table(space, device=device_identity())

  monkeypatch.setattr(lat_lib, "measure_table", fake)
  t1, p1 = cached_table(TINY, str(tmp_path), batch_size=1, rounds=3)
  t2, p2 = cached_table(TINY, str(tmp_path), batch_size=1, rounds=3)
  assert p1 == p2 and len(calls) == 1 and t1.blocks == t2.blocks
  _, p3 = cached_table(TINY, str(tmp_path), batch_size=32, rounds=3)  # other protocol: new table
  assert p3 != p1 and len(calls) == 2


def test_measure_table_bad_arguments():
  with pytest.raises(ValueError, match="batch_size=0 must be an int >= 1"):
    measure_table(ONE, batch_size=0)


def test_calibration_scales_every_prediction_by_the_median_ratio(tmp_path):
  table = synthetic_table()
  archs = lat_lib.random_archs(TINY, 5, seed=3)
  raw = [table.predict(a) for a in archs]
  factors = [1.2, 1.5, 1.3, 1.9, 1.4]  # median 1.4
  cal, fit = lat_lib.calibrate_table(table, archs, [f * p for f, p in zip(factors, raw)])
  assert fit["scale"] == pytest.approx(1.4, rel=1e-9) and cal.scale == fit["scale"]
  assert fit["ratios"] == pytest.approx(factors, rel=1e-9)
  assert table.scale == 1.0  # the input table is not modified
  other = lat_lib.random_archs(TINY, 3, seed=4)
  for a in other:  # every prediction, the dense curve and the reachable range scale alike
    assert cal.predict(a) == pytest.approx(1.4 * table.predict(a), rel=1e-6)
  b0, c0 = table.dense(TINY)
  b1, c1 = cal.dense(TINY)
  assert b1 == pytest.approx(1.4 * b0, rel=1e-6)
  np.testing.assert_allclose(c1, 1.4 * c0, rtol=1e-6)
  np.testing.assert_allclose(
    cal.reachable(TINY), 1.4 * np.asarray(table.reachable(TINY)), rtol=1e-6
  )
  # a second calibration fits against the raw sum, not the already scaled table
  cal2, fit2 = lat_lib.calibrate_table(cal, archs, [f * p for f, p in zip(factors, raw)])
  assert fit2["scale"] == pytest.approx(1.4, rel=1e-9)
  # the scale survives save / load; a table file without the field loads with scale 1
  path = str(tmp_path / "lut.json")
  cal.save(path)
  assert LatencyTable.load(path, device=table.device).scale == pytest.approx(1.4)
  d = json.load(open(path))
  d.pop("scale")
  json.dump(d, open(path, "w"))
  assert LatencyTable.load(path, device=table.device).scale == 1.0


def test_calibration_bad_input():
  table = synthetic_table()
  archs = lat_lib.random_archs(TINY, 2, seed=0)
  with pytest.raises(ValueError, match="archs is empty"):
    lat_lib.calibrate_table(table, [], [])
  with pytest.raises(ValueError, match="1 measured times for 2 architectures"):
    lat_lib.calibrate_table(table, archs, [1.0])
  with pytest.raises(ValueError, match=r"measured_ms\[1\]=nan must be finite"):
    lat_lib.calibrate_table(table, archs, [1.0, float("nan")])
  with pytest.raises(ValueError, match="scale=-1.0 must be a finite number > 0"):
    table.with_scale(-1.0)
  with pytest.raises(ValueError, match="n=-1 must be an int"):
    lat_lib.random_archs(TINY, -1, seed=0)


def test_random_archs_are_valid_and_seeded():
  a, b = lat_lib.random_archs(TINY, 4, seed=1), lat_lib.random_archs(TINY, 4, seed=1)
  assert a == b and len(a) == 4
  assert lat_lib.random_archs(TINY, 4, seed=2) != a
  table = synthetic_table()
  for arch in a:
    assert table.predict(arch) > 0
