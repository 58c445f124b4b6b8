"""benchmarks/bench_detection.py runs and its baselines agree with the jitted versions."""

import importlib.util
import os

_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "bench_detection.py")


def test_bench_detection_smoke(tmp_path):
  spec = importlib.util.spec_from_file_location("bench_detection", _PATH)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  rows = mod.main(["--anchors=500", "--faces=6", "--batch=2", "--max_output=50", "--repeats=1",
                   "--no-train_step", f"--out={tmp_path}"])  # fmt: skip
  nms_row = next(r for r in rows if r["part"] == "nms")
  assert nms_row["outputs_agree"]
  assign_row = next(r for r in rows if r["part"] == "assign")
  assert assign_row["label_agreement"] > 0.99
