"""The LR-PEA study's smoke preset runs end to end through the launcher and writes its outputs."""

import json
import math
import os

import numpy as np

from experiments.lrpea import __main__ as launcher
from experiments.lrpea import study
from vision_jax.utils import load_config


def test_smoke_preset_runs(tmp_path, capsys):
  launcher.main(["--preset=smoke", f"--workdir={tmp_path}", "--config.num_seeds=2"])
  out = capsys.readouterr().out
  assert "mean sin angle" in out and "Claim 'LR-PEA error far below PCA" in out
  for name in ("config.json", "summary.json", "error_vs_n.png"):
    assert os.path.exists(tmp_path / name), name
  with open(tmp_path / "summary.json") as f:
    summary = json.load(f)
  cfg = load_config("lrpea", "smoke")
  n_cells = len(cfg.cells) + 2 * len(cfg.structured_shapes)  # spiked + circulant + kronecker
  assert len(summary["rows"]) == n_cells * len(cfg.n_fractions)
  for row in summary["rows"]:
    for m in ("lrpea", "lrpea_random", "pca", "tpower"):
      assert 0.0 <= row[m]["mean"] <= 1.0 and row[m]["seeds"] == 2
    assert row["lrpea"]["converged"] == 1.0
  # At n = 4p the structured estimate beats PCA on every case (it pools over the rank-r
  # tangent space instead of all p directions).
  big = [row for row in summary["rows"] if row["n"] == 4 * row["p"]]
  assert all(row["lrpea"]["mean"] < row["pca"]["mean"] for row in big)


def test_theory_formulas_by_hand():
  th = study.theory("spiked", 20, 20, 1, 400, 3.0)
  assert math.isclose(th["lrpea"], math.sqrt(38 * 4 / (400 * 9)))
  assert math.isclose(th["pca"], math.sqrt(399 * 4 / (400 * 9)))
  g = 1.0
  assert math.isclose(th["bbp"], math.sqrt(1 - (1 - g / 9) / (1 + g / 3)))
  assert study.theory("circulant", 20, 20, 1, 400, 3.0) == {}


def test_sampled_covariances_match_their_definitions():
  cfg = load_config("lrpea", "smoke")
  rng = np.random.default_rng(0)
  p1, p2, n = 3, 4, 200_000
  for case in ("circulant", "kronecker"):
    x, v = study.sample_case(case, p1, p2, 1, n, rng, cfg)
    emp = x.T @ x / n
    w, q = np.linalg.eigh(emp)
    assert study.sin_angle(q[:, -1], v) < 0.05, case
    # The truth is an eigenvector of the population covariance (rank 1 when matricized).
    assert np.linalg.matrix_rank(v.reshape(p1, p2), tol=1e-8) == 1
  x, v = study.sample_case("spiked", p1, p2, 2, n, rng, cfg)
  np.testing.assert_allclose(x.T @ x / n, np.eye(p1 * p2) + cfg.spike * np.outer(v, v), atol=0.05)
  assert np.linalg.matrix_rank(v.reshape(p1, p2), tol=1e-8) == 2
