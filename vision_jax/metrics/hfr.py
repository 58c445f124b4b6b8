"""Heterogeneous face recognition protocol (CASIA NIR-VIS 2.0 View 2 style), host-side NumPy.

Per fold: probes (NIR / sketch) against a gallery (VIS / photo) by cosine similarity;
**Rank-1** (`identification_cmc`, ties counted against the probe) and **VR@FAR** = TPR at
FPR <= 1e-2, 1e-3, 1e-4 over *all* probe x gallery pairs (`tar_at_far`, no interpolation),
then mean ± std over folds (population std, ``ddof=0``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vision_jax.metrics.identification import _normalize, identification_cmc
from vision_jax.metrics.verification import tar_at_far

DEFAULT_FARS = (1e-2, 1e-3, 1e-4)


def hfr_fold_metrics(
  probe_features,
  probe_labels,
  gallery_features,
  gallery_labels,
  *,
  fars: Sequence[float] = DEFAULT_FARS,
) -> dict[str, float]:
  """Rank-1 and VR@FAR of one fold.

  Args:
    probe_features: ``[P, D]``. probe_labels: ``[P]`` int.
    gallery_features: ``[G, D]``. gallery_labels: ``[G]`` int.
    fars: false accept rates for VR@FAR.

  Returns:
    ``{"rank1": ..., "vr@far=0.01": ..., ...}`` in ``[0, 1]``.

  Raises:
    ValueError: bad shapes or no probe with a gallery mate (from `identification_cmc`); no
      genuine or no impostor pair (from `tar_at_far`).
  """
  p = _normalize(probe_features, "probe_features")
  g = _normalize(gallery_features, "gallery_features")
  pl = np.asarray(probe_labels).reshape(-1)
  gl = np.asarray(gallery_labels).reshape(-1)
  out = {"rank1": identification_cmc(p, pl, g, gl, ranks=(1,))[1]}
  scores = (p @ g.T).reshape(-1)
  same = (pl[:, None] == gl[None, :]).reshape(-1)
  vr = np.atleast_1d(tar_at_far(scores, same, np.asarray(fars, np.float64)))
  for f, v in zip(fars, vr):
    out[f"vr@far={f:g}"] = float(v)
  return out


def hfr_protocol_metrics(
  features,
  labels,
  folds: Sequence[tuple[np.ndarray, np.ndarray]],
  *,
  fars: Sequence[float] = DEFAULT_FARS,
) -> dict[str, float]:
  """Mean ± std over folds of `hfr_fold_metrics`.

  Args:
    features: ``[N, D]`` features of every evaluated image. labels: ``[N]``.
    folds: ``(probe_rows, gallery_rows)`` index arrays into ``features`` per fold.
    fars: as `hfr_fold_metrics`.

  Returns:
    ``{"<metric>": mean, "<metric>_std": std, "num_folds": k}`` for every metric.

  Raises:
    ValueError: no folds, or rows out of range (naming the fold).
  """
  features = np.asarray(features)
  labels = np.asarray(labels).reshape(-1)
  if len(folds) == 0:
    raise ValueError("folds is empty; give at least one (probe_rows, gallery_rows) pair.")
  if len(features) != len(labels):
    raise ValueError(f"features {features.shape} and labels {labels.shape} disagree.")
  per = []
  for k, (pr, gr) in enumerate(folds):
    pr, gr = np.asarray(pr, np.int64), np.asarray(gr, np.int64)
    for name, rows in (("probe", pr), ("gallery", gr)):
      if rows.size == 0 or rows.min() < 0 or rows.max() >= len(features):
        raise ValueError(f"fold {k}: {name} rows must be non-empty and in [0, {len(features)}).")
    per.append(hfr_fold_metrics(features[pr], labels[pr], features[gr], labels[gr], fars=fars))
  out: dict[str, float] = {}
  for key in per[0]:
    v = np.asarray([d[key] for d in per])
    out[key] = float(v.mean())
    out[f"{key}_std"] = float(v.std())
  out["num_folds"] = float(len(per))
  return out
