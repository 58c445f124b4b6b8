"""The CRN experiment's smoke preset: both methods train, share test episodes, table and plot."""

import json
import os

import numpy as np

from experiments.crn import train
from vision_jax.utils import load_config


def test_smoke_preset_runs(tmp_path):
  cfg = load_config("crn", "smoke")
  out = train.run(cfg, str(tmp_path), progress=False)
  assert set(out["methods"]) == {"protonet", "crn"}
  for m, s in out["methods"].items():
    f = s["fewshot"]
    for k in (1, 5):
      assert 0.0 <= f[f"{k}shot_acc"] <= 1.0 and f[f"{k}shot_ci95"] >= 0.0, (m, f)
    assert s["step"] == cfg.train.num_steps
  a = np.load(tmp_path / "embedded" / "crn" / "episodes.npz")
  b = np.load(tmp_path / "embedded" / "protonet" / "episodes.npz")
  assert a["correct_1shot"].shape == (cfg.eval.episodes, cfg.eval.ways * cfg.eval.queries)
  d = a["correct_1shot"].mean(1) - b["correct_1shot"].mean(1)
  np.testing.assert_allclose(out["paired"]["1shot"]["acc_diff"], d.mean(), rtol=1e-9, atol=1e-12)
  assert os.path.exists(tmp_path / "prototype_variance.png")
  assert json.loads((tmp_path / "comparison.json").read_text())["ways"] == cfg.eval.ways
  table = train.format_table(out)
  assert "| crn |" in table and "CRN − ProtoNet (paired)" in table
  # Re-running skips both finished runs and returns the same numbers.
  again = train.run(cfg, str(tmp_path), progress=False)
  assert again["paired"] == out["paired"]
