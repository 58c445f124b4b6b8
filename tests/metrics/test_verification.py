"""Verification metrics vs brute-force loops and scikit-learn."""

import numpy as np
import pytest

from vision_jax import metrics as M


def _pairs(n=200, seed=0, decimals=None):
  rng = np.random.default_rng(seed)
  issame = rng.random(n) < 0.5
  scores = rng.normal(size=n) + 1.2 * issame
  if decimals is not None:
    scores = np.round(scores, decimals)  # create ties
  return scores, issame


def _brute_best(scores, issame):
  u = sorted(set(scores.tolist()))
  best, best_i = -1.0, None
  for i in range(len(u) + 1):
    acc = 0
    for s, same in zip(scores, issame):
      pred = i < len(u) and s >= u[i]
      acc += pred == same
    acc /= len(scores)
    if acc > best:
      best, best_i = acc, i
  lo = u[best_i - 1] if best_i > 0 else u[0] - 2.0
  hi = u[best_i] if best_i < len(u) else u[-1] + 2.0
  return (lo + hi) / 2.0, best


@pytest.mark.parametrize("decimals", [None, 1])
def test_best_threshold_and_kfold_match_brute_force(decimals):
  scores, issame = _pairs(decimals=decimals)
  t, acc = M.best_threshold(scores, issame)
  t_ref, acc_ref = _brute_best(scores, issame)
  assert acc == pytest.approx(acc_ref)
  assert np.mean((scores > t) == issame) == pytest.approx(acc_ref)
  if decimals is None:
    assert t == pytest.approx(t_ref)

  res = M.kfold_verification_accuracy(scores, issame, num_folds=10)
  fold_accs = []
  for k in range(10):
    test = np.zeros(len(scores), bool)
    test[k * 20 : (k + 1) * 20] = True
    t_k, _ = _brute_best(scores[~test], issame[~test])
    fold_accs.append(np.mean([(s > t_k) == y for s, y in zip(scores[test], issame[test])]))
  np.testing.assert_allclose(res.fold_accuracies, fold_accs)
  assert res.accuracy == pytest.approx(np.mean(fold_accs))
  assert res.std == pytest.approx(np.std(fold_accs))


def test_kfold_split_is_sklearn_kfold():
  from sklearn.model_selection import KFold

  for n in (6000, 203):
    folds = M.kfold_split(n, 10)
    for k, (_, test) in enumerate(KFold(10).split(np.arange(n))):
      np.testing.assert_array_equal(np.flatnonzero(folds == k), test)


def test_fixed_grid_and_separable_data():
  scores = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3] * 5)
  issame = np.array([1, 1, 1, 0, 0, 0] * 5, bool)
  assert M.kfold_verification_accuracy(scores, issame).accuracy == 1.0
  t, acc = M.best_threshold(scores, issame, thresholds=np.linspace(-1, 1, 20001))
  assert acc == 1.0 and t == pytest.approx(0.3)  # first grid point > 0.3 - eps separating


def test_lfw_verification_mean_subtraction_brute_force():
  rng = np.random.default_rng(1)
  n, d = 100, 4
  ids = rng.normal(size=(n, d))
  issame = rng.random(n) < 0.5
  f1 = ids + 0.5 * rng.normal(size=(n, d)) + 3.0  # common offset: mean subtraction matters
  f2 = np.where(issame[:, None], ids, rng.normal(size=(n, d))) + 0.5 * rng.normal(size=(n, d)) + 3
  res = M.lfw_verification(f1, f2, issame, subtract_mean=True)
  accs = []
  for k in range(10):
    test = np.arange(n) // 10 == k
    mu = np.vstack([f1[~test], f2[~test]]).mean(0)
    a, b = f1 - mu, f2 - mu
    s = np.array([x @ y / np.linalg.norm(x) / np.linalg.norm(y) for x, y in zip(a, b)])
    t, _ = _brute_best(s[~test], issame[~test])
    accs.append(np.mean((s[test] > t) == issame[test]))
  np.testing.assert_allclose(res.fold_accuracies, accs)
  plain = M.lfw_verification(f1, f2, issame)
  ref = M.kfold_verification_accuracy(M.cosine_scores(f1, f2), issame)
  assert plain.accuracy == ref.accuracy


def test_roc_matches_sklearn_and_tar_at_far_brute_force():
  from sklearn.metrics import roc_curve as sk_roc

  scores, issame = _pairs(n=300, seed=2, decimals=2)
  far, tar, thr = M.roc_curve(scores, issame)
  sk_fpr, sk_tpr, sk_thr = sk_roc(issame, scores, drop_intermediate=False)
  np.testing.assert_allclose(far, sk_fpr)
  np.testing.assert_allclose(tar, sk_tpr)
  np.testing.assert_allclose(thr[1:], sk_thr[1:])
  targets = [0.0, 1e-3, 0.01, 0.05, 0.1, 0.5, 1.0]
  got = M.tar_at_far(scores, issame, targets)
  pos, neg = scores[issame], scores[~issame]
  for f, g in zip(targets, got):
    best = 0.0
    for t in list(np.unique(scores)) + [np.inf]:
      if np.mean(neg >= t) <= f:
        best = max(best, np.mean(pos >= t))
    assert g == pytest.approx(best), f


def test_where_mask_drops_padding():
  scores, issame = _pairs(n=120, seed=3)
  pad_s = np.concatenate([scores, np.full(8, np.nan)])
  pad_y = np.concatenate([issame, np.zeros(8, bool)])
  where = np.arange(128) < 120
  a = M.kfold_verification_accuracy(pad_s, pad_y, where=where)
  b = M.kfold_verification_accuracy(scores, issame)
  np.testing.assert_array_equal(a.fold_accuracies, b.fold_accuracies)
  np.testing.assert_array_equal(
    M.tar_at_far(pad_s, pad_y, [0.1], where=where), M.tar_at_far(scores, issame, [0.1])
  )
  with pytest.raises(ValueError, match="non-finite"):
    M.kfold_verification_accuracy(pad_s, pad_y)
  with pytest.raises(ValueError, match="both classes"):
    M.roc_curve(scores[issame], issame[issame])
