"""The HAMBox experiment's smoke preset end to end, and the WIDER FACE transforms."""

import os

import numpy as np

from experiments.hambox import train
from experiments.hambox.wider import eval_transform, train_transform
from vision_jax.train import read_metrics
from vision_jax.utils import load_config


def test_smoke_preset_runs(tmp_path):
  cfg = load_config("hambox", "smoke")
  results = train.run(cfg, str(tmp_path), progress=False)
  assert set(results["scenes"]) == {"standard", "hambox"}
  for method, s in results["scenes"].items():
    ev = s["eval"]
    for k in ("ap_easy", "ap_medium", "ap_hard"):
      assert np.isnan(ev[k]) or 0.0 <= ev[k] <= 1.0, (method, ev)
    rows = [r for r in read_metrics(str(tmp_path / "scenes" / method / "metrics.jsonl"))
            if r["split"] == "train"]  # fmt: skip
    assert rows and all(r["matched"] >= r["faces"] > 0 for r in rows)  # >= 1 anchor per face
    assert all(r["compensated"] >= 0 for r in rows)
    if method == "standard":
      assert all(r["compensated"] == 0 and r["ignored"] == 0 for r in rows)
    assert os.path.exists(tmp_path / "scenes" / method / "detections.png")
  table = train.format_table(results)
  assert "| scenes | hambox |" in table and "| scenes | standard |" in table


def test_wider_transforms():
  rng = np.random.default_rng(0)
  ex = {
    "image": rng.integers(0, 255, (60, 100, 3), np.uint8),
    "boxes": np.array([[10, 10, 20, 30], [50, 5, 0, 10], [90, 50, 30, 30]], np.float32),
    "name": b"0--Parade/0_Parade_1.jpg",
  }
  ev = eval_transform(200, 4)(ex)
  assert ev["image"].shape == (200, 200, 3) and ev["scale"] == np.float32(2.0)
  np.testing.assert_allclose(ev["boxes"][0], [20, 20, 60, 80])
  assert ev["box_mask"].tolist() == [True, True, True, False]  # all annotated faces kept
  assert ev["keep"][:3].all() and not ev["keep"][3].any()
  tr = train_transform(64, 4, flip=True)
  seen = 0
  for seed in range(10):
    out = tr(ex, np.random.default_rng(seed))
    b = out["boxes"][out["box_mask"]]
    assert out["image"].shape == (64, 64, 3)
    assert np.all(b[:, 2:] > b[:, :2]) and np.all(b >= 0) and np.all(b <= 64)
    seen += len(b)
  assert seen > 0  # some crops keep faces (the 0-width one is always dropped)
  assert tr.counts["dropped"] >= 1
