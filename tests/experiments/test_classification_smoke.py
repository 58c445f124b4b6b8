"""The classification experiment's smoke preset runs end to end through the shared loop."""

import json
import os

import numpy as np

from experiments.classification import train
from vision_jax.utils import load_config


def test_smoke_preset_runs(tmp_path):
  cfg = load_config("classification", "smoke")
  summary = train.run(cfg, str(tmp_path), progress=False)
  assert summary["step"] == cfg.train.num_steps
  ev = summary["eval"]
  assert ev["num_examples"] == 256.0 and 0.0 <= ev["accuracy"] <= 1.0 and np.isfinite(ev["loss"])
  with open(tmp_path / "summary.json") as f:
    assert json.load(f)["eval"]["accuracy"] == ev["accuracy"]
  assert os.path.exists(tmp_path / "curves.png")
  assert "test accuracy" in train.format_table(summary)
