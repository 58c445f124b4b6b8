"""Host-side feature checks shared by the metrics (NumPy, no device transfer)."""

from __future__ import annotations

import numpy as np


def feature_matrix(x, name: str, dtype=np.float64) -> np.ndarray:
  """``x`` as a ``[n, dim]`` array; raises ValueError naming ``name`` and the first row with
  NaN/Inf (a NaN feature would give NaN scores that rank arbitrarily)."""
  a = np.asarray(x, dtype)
  if a.ndim != 2:
    raise ValueError(f"{name} must be [n, dim]; got shape {a.shape}.")
  finite = np.isfinite(a).all(axis=1)
  if not finite.all():
    i = int(np.flatnonzero(~finite)[0])
    raise ValueError(
      f"{name} contain non-finite values (NaN/Inf) in row {i} ({int((~finite).sum())} bad rows "
      f"of {len(a)}); check the model output before computing metrics."
    )
  return a


def unit_rows(x, name: str, dtype=np.float64) -> np.ndarray:
  """:func:`feature_matrix`, L2-normalised row-wise (zero rows stay zero)."""
  a = feature_matrix(x, name, dtype)
  return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
