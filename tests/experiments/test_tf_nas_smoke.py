"""The TF-NAS experiment's smoke preset: table, search, parse, retrain, timing, results.json.

The preset's 1-block, 2-op supernet keeps it at about 30 CPU-s (docs/tf_nas.md), so it runs in
the suite."""

import json

import numpy as np

from experiments.tf_nas import train
from vision_jax.nas import LatencyTable, validate_arch
from vision_jax.utils import load_config


def test_smoke_preset_runs(tmp_path):
  cfg = load_config("tf_nas", "smoke")
  results = train.run(cfg, str(tmp_path), progress=False)
  on_disk = json.loads((tmp_path / "results.json").read_text())
  assert set(on_disk["targets"]) == {"target_0"}
  r = on_disk["targets"]["target_0"]
  for k in ("target_ms", "predicted_ms", "measured_ms", "accuracy"):
    assert np.isfinite(r[k]), k
  lo, hi = on_disk["table"]["reachable_ms"]
  assert lo <= r["target_ms"] <= hi
  assert 0.0 <= r["accuracy"] <= 1.0 and r["measured_ms"] > 0
  arch = validate_arch(json.loads((tmp_path / "target_0" / "arch.json").read_text()))
  table = LatencyTable.load(str(tmp_path / "lut.json"))
  assert table.predict(arch) == r["predicted_ms"]
  assert "| target ms |" in train.format_table(cfg, results)
  # a second run resumes from the finished summaries and the cached table
  again = train.run(cfg, str(tmp_path), progress=False)
  assert again["targets"]["target_0"] == r
