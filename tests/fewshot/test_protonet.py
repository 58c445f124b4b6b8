"""prototypes / proto_logits / fewshot_accuracy / prototype_shift against NumPy brute force."""

import jax
import numpy as np
import pytest

from vision_jax import fewshot as fs


def _episode(n=4, k=3, q=5, d=6, seed=0):
  r = np.random.default_rng(seed)
  lab = r.permutation(np.repeat(np.arange(n), k)).astype(np.int32)
  return (
    r.normal(size=(n * k, d)).astype(np.float32),
    lab,
    r.normal(size=(n * q, d)).astype(np.float32),
  )


def test_prototypes_are_class_means():
  s, lab, _ = _episode()
  ref = np.stack([s[lab == c].mean(0) for c in range(4)])
  np.testing.assert_allclose(fs.prototypes(s, lab, 4), ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
    jax.jit(fs.prototypes, static_argnums=2)(s, lab, 4), ref, rtol=1e-5, atol=1e-6
  )


def test_prototypes_bad_input():
  s, lab, _ = _episode()
  with pytest.raises(ValueError, match=r"support_labels\[\d+\]=3"):
    fs.prototypes(s, lab, 3)
  with pytest.raises(ValueError, match="support_labels must have shape"):
    fs.prototypes(s, lab[:-1], 4)
  with pytest.raises(TypeError, match="integer"):
    fs.prototypes(s, lab.astype(np.float32), 4)


@pytest.mark.parametrize("scale", [1.0, 0.3])
def test_sqeuclidean_logits(scale):
  s, lab, q = _episode()
  p = np.stack([s[lab == c].mean(0) for c in range(4)])
  ref = -scale * np.array([[np.sum((a - b) ** 2) for b in p] for a in q])
  got = fs.proto_logits(q, fs.prototypes(s, lab, 4), metric="sqeuclidean", scale=scale)
  np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_cosine_logits():
  _, _, q = _episode()
  p = np.random.default_rng(1).normal(size=(4, 6)).astype(np.float32)
  ref = 10.0 * np.array([[a @ b / np.linalg.norm(a) / np.linalg.norm(b) for b in p] for a in q])
  np.testing.assert_allclose(fs.proto_logits(q, p, metric="cosine", scale=10.0), ref, rtol=1e-5)


def test_proto_logits_bad_input():
  _, _, q = _episode()
  with pytest.raises(ValueError, match=r"metric='manhattan' is not supported.*sqeuclidean"):
    fs.proto_logits(q, q[:4], metric="manhattan")
  with pytest.raises(ValueError, match="feature dim mismatch"):
    fs.proto_logits(q, q[:4, :5])
  with pytest.raises(ValueError, match="scale=0"):
    fs.proto_logits(q, q[:4], scale=0.0)


def test_fewshot_accuracy_and_ci():
  r = np.random.default_rng(0)
  correct = r.random((600, 75)) < 0.6
  acc = correct.mean(1)
  mean, ci = fs.fewshot_accuracy(correct)
  assert mean == pytest.approx(acc.mean(), rel=1e-12)
  std = np.sqrt(np.mean((acc - acc.mean()) ** 2))  # ddof=0
  assert ci == pytest.approx(1.96 * std / np.sqrt(600), rel=1e-12)
  assert ci != pytest.approx(1.96 * acc.std(ddof=1) / np.sqrt(600), rel=1e-6)
  with pytest.raises(ValueError, match=r"\[episodes, N\*Q\]"):
    fs.fewshot_accuracy(correct[0])


def test_paired_difference():
  r = np.random.default_rng(1)
  a, b = r.random((50, 10)) < 0.7, r.random((50, 10)) < 0.5
  d = a.mean(1) - b.mean(1)
  mean, ci = fs.paired_difference(a, b)
  assert mean == pytest.approx(d.mean()) and ci == pytest.approx(1.96 * d.std() / np.sqrt(50))
  with pytest.raises(ValueError, match="same episodes"):
    fs.paired_difference(a, b[:, :9])


def test_prototype_shift_brute_force():
  r = np.random.default_rng(2)
  classes = np.stack([r.choice(6, 3, replace=False) for _ in range(40)])
  protos = r.normal(size=(40, 3, 4)) + classes[..., None] * 2.0
  out = fs.prototype_shift(protos, classes)
  means = {c: protos[classes == c].mean(0) for c in range(6)}
  var = [np.mean(np.sum((protos[classes == c] - means[c]) ** 2, 1)) for c in range(6)]
  m = np.stack([means[c] for c in range(6)])
  between = np.mean(np.sum((m - m.mean(0)) ** 2, 1))
  np.testing.assert_array_equal(out["classes"], np.arange(6))
  np.testing.assert_allclose(out["variance"], var, rtol=1e-10)
  np.testing.assert_allclose(out["ratio"], np.asarray(var) / between, rtol=1e-10)


def test_evaluate_episodes_matches_nearest_mean():
  r = np.random.default_rng(3)
  labels = np.repeat(np.arange(6), 8)
  emb = (r.normal(size=(48, 5)) + labels[:, None] * 0.7).astype(np.float32)
  g = fs.class_splits(labels, {"novel": range(6)})
  eps = fs.episode_arrays(fs.EpisodeSampler(g["novel"], num_ways=3, num_shots=2, num_queries=3), 30)
  out = fs.evaluate_episodes(emb, eps, num_ways=3)
  for e in range(30):
    p = np.stack([emb[eps["support"][e][eps["support_label"][e] == c]].mean(0) for c in range(3)])
    d = ((emb[eps["query"][e]][:, None] - p[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(out["correct"][e], d.argmin(1) == eps["query_label"][e])
  assert out["accuracy"] == pytest.approx(out["correct"].mean())
