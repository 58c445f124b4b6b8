"""The DMUH experiment's smoke preset: EMA network, uncertainty logging, retrieval metrics."""

import os

import numpy as np

from experiments.dmuh import train
from vision_jax.train import read_metrics
from vision_jax.utils import load_config


def test_smoke_preset_runs(tmp_path):
  cfg = load_config("dmuh", "smoke")
  results = train.run(cfg, str(tmp_path), progress=False)
  assert set(results["16"]) == {"csq", "dmuh"}
  for m, s in results["16"].items():
    ev = s["eval"]
    assert 0.0 < ev["map"] <= 1.0 and 0.0 <= ev["p_at_h2"] <= 1.0, (m, ev)
  rows = [
    r
    for r in read_metrics(str(tmp_path / "16bits" / "dmuh" / "metrics.jsonl"))
    if r["split"] == "train"
  ]
  u = np.array([[r[f"ubit_{k:02d}"] for k in range(16)] for r in rows])
  assert u.shape[1] == 16 and np.all(u >= 0)
  # The momentum network starts as a copy: uncertainty at step 1 is tiny (BN train vs eval
  # mode is the only difference), and it is a mean of |h - h_ema| <= 2.
  assert np.all(u <= 2.0)
  np.testing.assert_allclose(np.mean(u, 1), [r["uncertainty"] for r in rows], rtol=1e-5)
  assert os.path.exists(tmp_path / "bit_uncertainty.png")
  assert "| dmuh |" in train.format_table(results)
