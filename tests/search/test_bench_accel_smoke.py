"""benchmarks/bench_mips_accel.py runs end to end (on CPU here; it is meant for a GPU host)."""

import importlib.util
import os

_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "bench_mips_accel.py")


def test_bench_mips_accel_smoke(tmp_path):
  spec = importlib.util.spec_from_file_location("bench_mips_accel", _PATH)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  rows = mod.main(
    [
      "--n=2000",
      "--dim=16",
      "--num_queries=64",
      "--batch=32",
      "--num_leaves=8",
      "--leaves=1,8",
      "--reorder=50",
      "--repeats=1",
      f"--out={tmp_path / 'r.json'}",
    ]
  )
  by = {r["method"]: r for r in rows}
  assert by["brute force (float32 operands)"]["recall10_at_10"] == 1.0
  # Probing every leaf with a deep reorder finds (almost) everything; one leaf finds less.
  assert by["tree ADC, leaves=8, reorder 50"]["recall10_at_10"] >= 0.95
  assert by["tree ADC, leaves=1, reorder 50"]["recall10_at_10"] < 1.0
  assert (tmp_path / "r.json").exists()
