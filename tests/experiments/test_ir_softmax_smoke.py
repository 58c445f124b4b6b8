"""The IR-Softmax experiment's smoke preset runs both settings end to end."""

import json
import os

import numpy as np
import pytest

from experiments.ir_softmax import data as ird
from experiments.ir_softmax import train
from vision_jax.utils import load_config


def test_smoke_preset_runs_and_resumes(tmp_path):
  cfg = load_config("ir_softmax", "smoke")
  results = train.run(cfg, str(tmp_path), progress=False)
  assert set(results) == {"closed_lt10", "open"}
  for setting, res in results.items():
    assert set(res) == {"softmax", "ir_am_softmax"}
    for m, s in res.items():
      assert s["step"] == 4 and not s["preempted"]
      angles = np.asarray(s["weight_center_angle_deg"])
      assert angles.shape == (len(s["class_counts"]),)
      if m.startswith("ir_"):
        np.testing.assert_allclose(angles, 0.0, atol=1e-2)  # weights are the centres
      # The loop wrote the finalize metrics into the run's own summary.json.
      with open(tmp_path / setting / m / "summary.json") as f:
        assert json.load(f)["weight_center_angle_deg"] == s["weight_center_angle_deg"]
  closed = results["closed_lt10"]["softmax"]
  assert {"accuracy", "head_accuracy", "medium_accuracy", "tail_accuracy"} <= set(closed["eval"])
  opened = results["open"]["ir_am_softmax"]["eval"]
  assert 0.0 <= opened["verification_accuracy"] <= 1.0
  assert os.path.exists(tmp_path / "weight_center_angle.png")
  assert "| ir_am_softmax |" in train.format_table(results)
  # Re-running skips finished runs.
  mtime = os.path.getmtime(tmp_path / "open" / "softmax" / "summary.json")
  train.run(cfg, str(tmp_path), progress=False)
  assert os.path.getmtime(tmp_path / "open" / "softmax" / "summary.json") == mtime
  with open(tmp_path / "results.json") as f:
    assert json.load(f)["open"]["softmax"]["step"] == 4


def test_method_names_validated():
  cfg = load_config("ir_softmax", "smoke")
  assert train.method_spec("ir_arcface", cfg)[:2] == ("arcface", True)
  with pytest.raises(ValueError, match="unknown method 'cosface'"):
    train.method_spec("cosface", cfg)
  with pytest.raises(ValueError, match="IR applies"):
    train.method_spec("ir_softmax", cfg)


def test_verification_pairs_are_lfw_style():
  labels = np.repeat(np.arange(12), 5)
  a, b, same = ird.verification_pairs(labels, num_folds=3, pairs_per_fold=7, seed=1)
  assert a.shape == (42,) and same.sum() == 21
  np.testing.assert_array_equal(labels[a][same], labels[b][same])
  assert np.all(labels[a][~same] != labels[b][~same])
  assert np.all(a[same] != b[same])
  np.testing.assert_array_equal(same[:14], [True] * 7 + [False] * 7)
