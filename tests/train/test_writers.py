"""Curves and sweep comparison figures."""

import json
import os

import numpy as np

from vision_jax.train.writers import curve_panels, plot_comparison, plot_curves, smooth


def _rows(evals):
  rows = [
    {"step": s, "split": "train", "loss": 2.0 / s, "lr": 0.1, "grad_norm": 1.0, "nonfinite": 0.0}
    for s in range(1, 21)
  ]
  rows += [{"step": s, "split": "eval", "accuracy": a, "eval_seconds": 3.0} for s, a in evals]
  return rows


def test_single_eval_point_goes_to_title_and_timings_are_never_plotted():
  panels, once = curve_panels(_rows([(20, 0.9)]))
  assert [k for k, _ in panels] == ["loss", "lr", "grad_norm"]
  assert once == ["accuracy"]
  panels, once = curve_panels(_rows([(10, 0.8), (20, 0.9)]))
  assert [k for k, _ in panels] == ["loss", "lr", "grad_norm", "accuracy"] and once == []


def test_multi_update_metrics_get_one_curve_each(tmp_path):
  rows = [
    {"step": s, "split": "train", "d/loss": 1.0, "g/loss": 2.0, "d/lr": 1e-3, "g/lr": 2e-3}
    for s in range(1, 6)
  ]
  panels, _ = curve_panels(rows)
  assert [k for k, _ in panels] == ["loss", "lr"]
  with open(tmp_path / "metrics.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  assert os.path.getsize(plot_curves(str(tmp_path))) > 1000


def test_smooth_is_a_debiased_ema():
  x = np.array([1.0, 3.0, 2.0, 5.0])
  w = 0.9
  ref = [
    sum((1 - w) * w ** (i - j) * x[j] for j in range(i + 1)) / (1 - w ** (i + 1))
    for i in range(len(x))
  ]
  np.testing.assert_allclose(smooth(x, w), ref, rtol=1e-12)
  np.testing.assert_allclose(smooth(np.full(5, 7.0)), 7.0)


def test_plot_comparison_writes_one_sheet(tmp_path):
  runs = {}
  for i, name in enumerate(["a", "b"]):
    wd = tmp_path / name
    wd.mkdir()
    with open(wd / "metrics.jsonl", "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in _rows([]))
    json.dump(
      {"eval": {"accuracy": 0.5 + i / 10, "eval_seconds": 1.0}}, open(wd / "summary.json", "w")
    )
    runs[name] = str(wd)
  out = plot_comparison(runs, str(tmp_path / "cmp.png"), title="toy")
  assert out and os.path.getsize(out) > 1000
  assert plot_comparison({"x": str(tmp_path / "missing")}, str(tmp_path / "none.png")) is None
