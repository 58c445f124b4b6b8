"""DMUH experiment on the NUS-WIDE hashing-list format (multi-hot labels), from fixture files."""

import os

import numpy as np
import PIL.Image

from experiments.dmuh import train
from vision_jax.utils import load_config


def test_nuswide_list_format_runs(tmp_path):
  d = tmp_path / "nus"
  rng = np.random.default_rng(0)
  for split, n in (("train", 16), ("test", 8), ("database", 16)):
    lines = []
    for i in range(n):
      rel = f"images/{split}_{i}.jpg"
      os.makedirs(d / "images", exist_ok=True)
      PIL.Image.fromarray(rng.integers(0, 256, (20 + i % 3, 18, 3), dtype=np.uint8)).save(d / rel)
      y = np.zeros(21, int)
      y[rng.choice(21, 1 + i % 2, replace=False)] = 1
      lines.append(rel + " " + " ".join(map(str, y)))
    (d / f"{split}.txt").write_text("\n".join(lines) + "\n")
  cfg = load_config(
    "dmuh",
    "smoke",
    {
      "data.name": "nuswide_21",
      "data.image_list_dir": str(d),
      "data.data_dir": str(tmp_path / "tfds"),
      "data.image_size": "16",
      "data.global_batch_size": "8",
      "data.eval_batch_size": "8",
      "methods": "dmuh",
      "eval.topk": "10",
      "train.num_steps": "2",
    },
  )
  results = train.run(cfg, str(tmp_path / "run"), progress=False)
  ev = results["16"]["dmuh"]["eval"]
  assert 0.0 <= ev["map"] <= 1.0 and 0.0 <= ev["p_at_h2"] <= 1.0
