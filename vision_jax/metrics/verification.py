"""Face verification protocols (host-side NumPy): LFW 10-fold accuracy, ROC, TAR@FAR.

Scores are similarities (higher = more likely the same identity). Every function accepts a
``where`` mask for padded evaluation batches; masked pairs are dropped before anything else.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vision_jax.metrics._checks import unit_rows


def _as_pairs(scores, issame, where):
  scores = np.asarray(scores, np.float64).reshape(-1)
  issame = np.asarray(issame).reshape(-1)
  if scores.shape != issame.shape:
    raise ValueError(f"scores {scores.shape} and issame {issame.shape} must have the same length.")
  if issame.dtype != bool:
    if not np.isin(issame, (0, 1)).all():
      raise ValueError("issame must be boolean (or 0/1).")
    issame = issame.astype(bool)
  if where is not None:
    where = np.asarray(where, bool).reshape(-1)
    if where.shape != scores.shape:
      raise ValueError(f"where {where.shape} must match scores {scores.shape}.")
    scores, issame = scores[where], issame[where]
  if not np.isfinite(scores).all():
    raise ValueError(f"scores contain {int((~np.isfinite(scores)).sum())} non-finite values.")
  return scores, issame


def cosine_scores(features1, features2) -> np.ndarray:
  """Row-wise cosine similarity of two ``[num_pairs, dim]`` feature arrays, ``[num_pairs]``.

  Raises:
    ValueError: different shapes, or NaN/Inf in a row (the message names the array and row).
  """
  a, b = np.shape(features1), np.shape(features2)
  if a != b or len(a) != 2:
    raise ValueError(f"features1 {a} and features2 {b} must both be [num_pairs, dim].")
  return np.sum(unit_rows(features1, "features1") * unit_rows(features2, "features2"), axis=1)


def _accuracies(scores, issame, thresholds):
  """Accuracy of ``same <=> score > t`` for every t in ``thresholds`` (vectorised)."""
  pos = np.sort(scores[issame])
  neg = np.sort(scores[~issame])
  true_pos = len(pos) - np.searchsorted(pos, thresholds, side="right")
  true_neg = np.searchsorted(neg, thresholds, side="right")
  return (true_pos + true_neg) / len(scores)


def _candidate_thresholds(scores):
  u = np.unique(scores)
  return np.concatenate([[u[0] - 1.0], (u[:-1] + u[1:]) / 2.0, [u[-1] + 1.0]])


def best_threshold(scores, issame, *, thresholds=None, where=None) -> tuple[float, float]:
  """Threshold maximising accuracy of ``same <=> score > t``; returns ``(threshold, accuracy)``.

  Choice: by default every distinct split of the scores is tried (midpoints between consecutive
  distinct scores, plus one below the minimum and one above the maximum), so the maximum is
  exact; ties go to the smallest threshold. Pass ``thresholds`` to use a fixed grid instead
  (SphereFace: ``np.linspace(-1, 1, 20001)``; first maximum wins, as ``argmax``).
  """
  scores, issame = _as_pairs(scores, issame, where)
  if len(scores) == 0:
    raise ValueError("no (unmasked) pairs to choose a threshold from.")
  cand = _candidate_thresholds(scores) if thresholds is None else np.asarray(thresholds, float)
  acc = _accuracies(scores, issame, cand)
  k = int(np.argmax(acc))
  return float(cand[k]), float(acc[k])


def kfold_split(num_pairs: int, num_folds: int = 10) -> np.ndarray:
  """Fold id ``[num_pairs]`` of contiguous, unshuffled folds (LFW ``pairs.txt`` order).

  Matches ``sklearn.model_selection.KFold(n_splits, shuffle=False)``: the first
  ``num_pairs % num_folds`` folds get one extra pair. For LFW's 6,000 pairs this is 600 per
  fold, the SphereFace ``ceil(i / 600)`` and insightface split.
  """
  if num_folds < 2 or num_pairs < num_folds:
    raise ValueError(
      f"need 2 <= num_folds <= num_pairs; got num_folds={num_folds}, num_pairs={num_pairs}."
    )
  return np.concatenate(
    [np.full(len(c), i) for i, c in enumerate(np.array_split(np.arange(num_pairs), num_folds))]
  )


@dataclasses.dataclass(frozen=True)
class VerificationResult:
  """Result of k-fold verification: mean/std accuracy, per-fold accuracies and thresholds."""

  accuracy: float
  std: float
  fold_accuracies: np.ndarray
  fold_thresholds: np.ndarray


def kfold_verification_accuracy(
  scores, issame, *, num_folds: int = 10, folds=None, thresholds=None, where=None
) -> VerificationResult:
  """LFW protocol: per fold, the threshold is chosen on the other folds, accuracy on this one.

  .. math::
    \\text{acc} = \\frac{1}{K} \\sum_{k=1}^{K} \\text{acc}_{F_k}\\big(t_k\\big), \\qquad
    t_k = \\arg\\max_t \\text{acc}_{\\cup_{l \\ne k} F_l}(t)

  Args:
    scores: ``[num_pairs]`` similarities. issame: ``[num_pairs]`` bool.
    num_folds: K (10 for LFW). folds: optional explicit fold id per pair ``[num_pairs]``
      (default ``kfold_split`` after masking).
    thresholds: optional fixed threshold grid (see ``best_threshold``).
    where: optional ``[num_pairs]`` bool mask; False pairs (padding) are dropped first.

  Returns:
    ``VerificationResult`` (accuracy in [0, 1], std over folds, per-fold arrays).

  References:
    G. B. Huang et al. Labeled Faces in the Wild. UMass TR 07-49, 2007 (View 2 protocol);
    wy1iu/sphereface ``evaluation.m`` and insightface ``eval/verification.py``.
  """
  scores_all = np.asarray(scores)
  scores, issame = _as_pairs(scores, issame, where)
  if folds is None:
    folds = kfold_split(len(scores), num_folds)
  else:
    folds = np.asarray(folds).reshape(-1)
    if where is not None:
      if folds.shape != scores_all.reshape(-1).shape:
        raise ValueError("folds must have one entry per pair (before masking).")
      folds = folds[np.asarray(where, bool).reshape(-1)]
    if folds.shape != scores.shape:
      raise ValueError(f"folds {folds.shape} must match scores {scores.shape}.")
  accs, ths = [], []
  for k in np.unique(folds):
    test = folds == k
    t, _ = best_threshold(scores[~test], issame[~test], thresholds=thresholds)
    accs.append(float(np.mean((scores[test] > t) == issame[test])))
    ths.append(t)
  accs = np.asarray(accs)
  return VerificationResult(float(accs.mean()), float(accs.std()), accs, np.asarray(ths))


def lfw_verification(
  features1,
  features2,
  issame,
  *,
  num_folds: int = 10,
  subtract_mean: bool = False,
  thresholds=None,
  where=None,
) -> VerificationResult:
  """LFW 10-fold verification from pair features (cosine similarity).

  With ``subtract_mean=True`` (SphereFace ``evaluation.m``), each test fold's features are
  centred with the mean feature of the *other* folds (both images of every pair) before the
  cosine; otherwise plain cosine (insightface; on unit features its squared-L2 threshold is
  equivalent). The two conventions differ by about 0.1% on LFW.

  Args:
    features1, features2: ``[num_pairs, dim]`` features of the two images of each pair.
    issame: ``[num_pairs]`` bool. num_folds, thresholds, where: see
      ``kfold_verification_accuracy``.
    subtract_mean: centre with the training folds' mean feature.

  Returns:
    ``VerificationResult``.
  """
  f1 = np.asarray(features1, np.float64)
  f2 = np.asarray(features2, np.float64)
  if f1.shape != f2.shape or f1.ndim != 2:
    raise ValueError(
      f"features1 {f1.shape} and features2 {f2.shape} must both be [num_pairs, dim]."
    )
  if where is not None:
    w = np.asarray(where, bool).reshape(-1)
    f1, f2, issame = f1[w], f2[w], np.asarray(issame)[w]
  if not subtract_mean:
    return kfold_verification_accuracy(
      cosine_scores(f1, f2), issame, num_folds=num_folds, thresholds=thresholds
    )
  folds = kfold_split(len(f1), num_folds)
  issame = np.asarray(issame).astype(bool)
  accs, ths = [], []
  for k in range(num_folds):
    test = folds == k
    mu = np.concatenate([f1[~test], f2[~test]]).mean(axis=0, keepdims=True)
    s = cosine_scores(f1 - mu, f2 - mu)
    t, _ = best_threshold(s[~test], issame[~test], thresholds=thresholds)
    accs.append(float(np.mean((s[test] > t) == issame[test])))
    ths.append(t)
  accs = np.asarray(accs)
  return VerificationResult(float(accs.mean()), float(accs.std()), accs, np.asarray(ths))


def roc_curve(scores, issame, *, where=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """ROC over all distinct thresholds: ``(far, tar, thresholds)``, accept iff ``score >= t``.

  Same points as ``sklearn.metrics.roc_curve(issame, scores, drop_intermediate=False)``:
  thresholds descend from ``+inf`` (nothing accepted) through every distinct score.

  Returns:
    ``far [K]`` (false accept rate = FPR), ``tar [K]`` (true accept rate = TPR),
    ``thresholds [K]``.
  """
  scores, issame = _as_pairs(scores, issame, where)
  n_pos, n_neg = int(issame.sum()), int((~issame).sum())
  if n_pos == 0 or n_neg == 0:
    raise ValueError(f"ROC needs both classes; got {n_pos} positive and {n_neg} negative pairs.")
  thr = np.unique(scores)[::-1]
  pos = np.sort(scores[issame])
  neg = np.sort(scores[~issame])
  tar = (n_pos - np.searchsorted(pos, thr, side="left")) / n_pos
  far = (n_neg - np.searchsorted(neg, thr, side="left")) / n_neg
  return (
    np.concatenate([[0.0], far]),
    np.concatenate([[0.0], tar]),
    np.concatenate([[np.inf], thr]),
  )


def tar_at_far(scores, issame, far_targets, *, where=None) -> np.ndarray:
  """True accept rate at the largest ROC point whose false accept rate is ``<= far``.

  .. math::
    \\text{TAR@FAR}(f) = \\max_{t:\\, \\text{FAR}(t) \\le f} \\text{TAR}(t)

  Choice: no interpolation between ROC points (insightface interpolates the threshold); the
  MegaFace devkit convention "TPR at the largest FAR <= target" is used. With N negative pairs
  a target below 1/N can only be met by accepting no negative.

  Args:
    scores: ``[num_pairs]``. issame: ``[num_pairs]`` bool. far_targets: float or ``[K]``.
    where: optional mask.

  Returns:
    ``[K]`` (or scalar) TAR values in [0, 1].
  """
  far, tar, _ = roc_curve(scores, issame, where=where)
  targets = np.asarray(far_targets, np.float64)
  if np.any(targets < 0) or np.any(targets > 1):
    raise ValueError(f"far_targets must lie in [0, 1]; got {far_targets}.")
  idx = np.searchsorted(far, targets, side="right") - 1  # far is non-decreasing
  return tar[idx]
