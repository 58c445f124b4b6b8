"""LR-PEA synthetic study: error of the leading-eigenvector estimate vs sample size n.

Run (embedded default, offline; ~1 min on a 2-core CPU)::

    python -m experiments.lrpea --preset=default --workdir=runs/lrpea/default

Model: x ~ N(0, Sigma) with Sigma = lam v v^T + I, v = vec(V) / ||V||_F, rank(V) = r (case
"spiked"); Sigma a symmetric circulant whose top eigenvector is the constant vector (rank 1,
case "circulant"); Sigma = Sigma_1 kron Sigma_2 with AR(1) factors (top eigenvector u_1 kron u_2,
rank 1, case "kronecker"). Error = sin angle(v_hat, v), mean over seeds, for LR-PEA (partial-
trace start + num_restarts - 1 random starts; and random starts only), PCA (top eigenvector of
the sample covariance), TPower (Yuan & Zhang, started from PCA) and scikit-learn SparsePCA.

Hardware: 2-core x86 CPU; measured 1 min 4 s wall (idle machine; docs/lrpea.md).

Expected result of ``default``: the claim check prints PCA/LR-PEA >= 2 at 17 % of the 12 n < p
points (median 1.20x, so "far below PCA when n < p" does not hold), 56 LR-PEA iterations per
solve on average, every solve converged; at n = 4p on 20x20, r = 1, LR-PEA sin 0.098 +- 0.01
(docs' 6-seed mean 0.098 +- 0.003 s.e.) vs PCA 0.318.

Theory (derived, not from the paper, whose body is not public): for n large, sin angle ~
sqrt(d (1 + lam) / (n lam^2)) with d = p - 1 for PCA and d = r (p1 + p2 - r) - 1 (the tangent
dimension of unit-norm rank-r matrices) for LR-PEA, so on 20x20 with r = 1 LR-PEA should be
~sqrt(399 / 38) ~ 3.2x more accurate than PCA at large n (measured 3.24x at n = 4p; LR-PEA
theory 0.103); for n < p PCA follows the BBP limit and is near 1 below n = p / lam^2.

Presets:
  smoke    one 6x6 shape, r in {1, 2}, 2 sample sizes, 2 seeds; seconds (run by tests)
  default  spiked 20x20 (r = 1, 2, 3), circulant and kronecker 20x20; n = p/16 ... 4p,
           4 seeds (add --config.cells='((20,20,1),(20,20,2),(20,20,3),(50,50,1))'
           --config.num_seeds=6 for the 30-minute run in docs/lrpea.md); SparsePCA on 20x20
           with n <= 800 and 2 seeds only (one fit takes seconds, ~1000x the rest)
  paper    the full grid 20x20, 50x50, 100x100, r in {1, 2, 3}, 20 seeds (hours on 2 cores; the
           100x100 cells use the matrix-free covariance operator)
"""

import ml_collections

from vision_jax.utils.config_checks import (
  check_choices,
  check_number,
  check_numbers,
  config_error,
)

PRESETS = ("smoke", "default", "paper")
CASES = ("spiked", "circulant", "kronecker")
METHODS = ("lrpea", "lrpea_random", "pca", "tpower", "sparsepca")


def get_config(preset: str = "default") -> ml_collections.ConfigDict:
  cfg = ml_collections.ConfigDict()
  cfg.seed = 0
  cfg.cases = CASES
  # (p1, p2, r) cells of the spiked case.
  cfg.cells = ((20, 20, 1), (20, 20, 2), (20, 20, 3))
  cfg.structured_shapes = ((20, 20),)  # shapes of the circulant and kronecker cases (r = 1)
  cfg.n_fractions = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0, 4.0)  # n = round(f * p1 * p2)
  cfg.max_n = 2000  # sizes above are skipped (50x50 keeps n = p/16 ... p/2, the n < p regime)
  cfg.num_seeds = 4
  cfg.spike = 3.0  # lam in Sigma = lam v v^T + I, and in the circulant case
  cfg.circulant_rho = 0.5  # first row rho^dist of the circulant background
  cfg.kronecker_rho = 0.6  # AR(1) factors Sigma_i = toeplitz(rho^|i-j|)
  cfg.methods = METHODS
  cfg.solver = ml_collections.ConfigDict(
    dict(max_iters=500, tol=1e-5, num_restarts=4, matrix_free_above=2500)
  )
  cfg.tpower = ml_collections.ConfigDict(dict(cardinality="dof"))  # "dof" = r (p1 + p2), or int
  cfg.sparsepca = ml_collections.ConfigDict(
    dict(alpha=1.0, max_iter=20, max_p=400, max_n=800, num_seeds=2)
  )
  if preset == "smoke":
    cfg.cells = ((6, 6, 1), (6, 6, 2))
    cfg.structured_shapes = ((6, 6),)
    cfg.n_fractions = (0.5, 4.0)
    cfg.num_seeds = 2
    cfg.sparsepca.max_iter = 5
    cfg.sparsepca.num_seeds = 1
  elif preset == "paper":
    cfg.cells = tuple((p, p, r) for p in (20, 50, 100) for r in (1, 2, 3))
    cfg.structured_shapes = ((20, 20), (50, 50), (100, 100))
    cfg.n_fractions = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0, 4.0)
    cfg.num_seeds = 20
    cfg.max_n = 40_000
    cfg.sparsepca.max_p = 2500
    cfg.sparsepca.max_n = 2500
    cfg.sparsepca.num_seeds = 5
  return cfg


def _check_shapes(cfg, key: str, width: int) -> None:
  """Each entry of ``cfg.<key>`` is ``(p1, p2)`` (width 2) or ``(p1, p2, r)`` with 1 <= r <=
  min(p1, p2) (width 3), positive ints."""
  v = cfg[key]
  form = "(p1, p2, r) with 1 <= r <= min(p1, p2)" if width == 3 else "(p1, p2)"
  expected = f"a non-empty tuple of {form} tuples of positive ints, e.g. " + (
    "((20, 20, 1),)" if width == 3 else "((20, 20),)"
  )
  if isinstance(v, str) or not isinstance(v, tuple | list) or not v:
    raise config_error(key, v, expected)
  for i, cell in enumerate(v):
    ok = isinstance(cell, tuple | list) and len(cell) == width
    ok = ok and all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in cell)
    if ok and width == 3:
      ok = cell[2] <= min(cell[0], cell[1])
    if not ok:
      raise config_error(key, v, f"{expected} (element {i} is {cell!r})")


def validate(cfg: ml_collections.ConfigDict) -> None:
  """Rejects invalid study settings before any sampling starts.

  Raises:
    ConfigError: naming ``--config.<key>`` and its value (unknown case or method, a cell whose
      rank exceeds min(p1, p2), a spike <= 0, a correlation outside its range, ...).
  """
  check_choices(cfg, "cases", CASES)
  check_choices(cfg, "methods", METHODS)
  _check_shapes(cfg, "cells", 3)
  _check_shapes(cfg, "structured_shapes", 2)
  check_numbers(cfg, "n_fractions", low=0.0, low_open=True)
  check_number(cfg, "max_n", low=2, integer=True)
  check_number(cfg, "num_seeds", low=1, integer=True)
  check_number(cfg, "spike", low=0.0, low_open=True)
  # rho^dist with 0 <= rho < 1 keeps every circulant eigenvalue positive (sqrt is taken).
  check_number(cfg, "circulant_rho", low=0.0, high=1.0, high_open=True)
  check_number(cfg, "kronecker_rho", low=-1.0, high=1.0, low_open=True, high_open=True)
  check_number(cfg, "solver.max_iters", low=1, integer=True)
  check_number(cfg, "solver.tol", low=0.0, low_open=True)
  check_number(cfg, "solver.num_restarts", low=1, integer=True)
  check_number(cfg, "solver.matrix_free_above", low=1, integer=True)
  card = cfg.tpower.cardinality  # a string field: "dof", or digits from --config (e.g. "40")
  as_int = card if isinstance(card, int) and not isinstance(card, bool) else None
  if isinstance(card, str) and card.strip().isdigit():
    as_int = int(card)
  if card != "dof" and (as_int is None or as_int < 1):
    raise config_error("tpower.cardinality", card, "'dof' (= r (p1 + p2)) or an integer >= 1")
  check_number(cfg, "sparsepca.alpha", low=0.0)
  for key in ("max_iter", "max_p", "max_n", "num_seeds"):
    check_number(cfg, f"sparsepca.{key}", low=1, integer=True)
