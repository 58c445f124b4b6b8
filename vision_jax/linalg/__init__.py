"""vision_jax.linalg: low-rank principal eigenmatrix analysis (LR-PEA) and its baselines.

Public API:
  matricized_power_method, top_k_eigenmatrices, kronecker_init, partial_traces — LR-PEA.
  power_method, truncated_power_method, eigh_top — baselines.
  covariance_operator, dense_operator, deflated_operator — matrix-free / explicit operators.
"""

from vision_jax.linalg._power import ConvergenceWarning, IndefiniteWarning
from vision_jax.linalg.baselines import (
  EigenvectorResult,
  eigh_top,
  power_method,
  truncated_power_method,
)
from vision_jax.linalg.eigenmatrix import (
  EigenmatrixResult,
  kronecker_init,
  matricized_power_method,
  partial_traces,
  top_k_eigenmatrices,
)
from vision_jax.linalg.operators import covariance_operator, deflated_operator, dense_operator

__all__ = [
  "ConvergenceWarning",
  "EigenmatrixResult",
  "EigenvectorResult",
  "IndefiniteWarning",
  "covariance_operator",
  "deflated_operator",
  "dense_operator",
  "eigh_top",
  "kronecker_init",
  "matricized_power_method",
  "partial_traces",
  "power_method",
  "top_k_eigenmatrices",
  "truncated_power_method",
]
