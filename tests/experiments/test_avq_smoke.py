"""The AVQ experiment's smoke preset runs end to end through the launcher and writes its outputs."""

import json
import os

from experiments.avq import __main__ as launcher
from vision_jax.utils import load_config


def test_smoke_preset_runs(tmp_path, capsys):
  launcher.main(["--preset=smoke", f"--workdir={tmp_path}"])
  out = capsys.readouterr().out
  assert "Recall1@10 [0-1]" in out and "anisotropic beats reconstruction" in out
  for name in ("config.json", "summary.json", "recall_vs_bits.png"):
    assert os.path.exists(tmp_path / name), name
  with open(tmp_path / "summary.json") as f:
    summary = json.load(f)
  cfg = load_config("avq", "smoke")
  n_rows = (len(cfg.thresholds) + 1) * len(cfg.dims_per_block)
  assert len(summary["rows"]) == n_rows
  for row in summary["rows"]:
    assert 0.0 <= row["recall1_at10"] <= 1.0 and 0.0 <= row["recall10_at10"] <= 1.0
    assert row["rel_err_top1"] >= 0.0
    assert row["bits"] == 4 * 24 // row["dims_per_block"]
  # More bits, better quantization (reconstruction loss).
  base = sorted((r for r in summary["rows"] if r["threshold"] == 0.0), key=lambda r: r["bits"])
  assert base[-1]["recall10_at10"] >= base[0]["recall10_at10"]
  assert set(summary["verdicts"]) == {"T=0.3", "T=0.3 encode-only"}
