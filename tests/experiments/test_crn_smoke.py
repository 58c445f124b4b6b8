"""The CRN experiment's smoke preset: both methods train, share test episodes, table and plot."""

import json
import os

import numpy as np
import pytest

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


def test_load_fewshot_from_miniimagenet_files(tmp_path):
  from experiments.crn.data import load_fewshot
  from tests.fewshot.test_data_builders import _ravi

  d = _ravi(tmp_path)
  cfg = load_config("crn", "smoke")
  with cfg.unlocked():
    cfg.data.name, cfg.data.manual_dir = "miniimagenet", str(d)
    cfg.data.data_dir, cfg.data.image_size, cfg.data.channels = str(tmp_path / "tfds"), 12, 3
  data = load_fewshot(cfg)
  assert data.images.shape == (11, 12, 12, 3)
  assert data.splits == {"base": [0, 1], "val": [2], "novel": [3, 4]}
  assert data.class_names == ("n01", "n02", "n05", "n07", "n09")
  np.testing.assert_array_equal(np.bincount(data.labels), [2, 3, 2, 2, 2])
  with cfg.unlocked():
    cfg.data.name = "imagenet"
  with pytest.raises(ValueError, match=r"config.data.name='imagenet'; valid: embedded"):
    load_fewshot(cfg)
