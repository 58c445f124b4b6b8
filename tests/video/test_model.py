"""DCGN and baselines: frame-mask invariance, node conv / pooling / MoE vs NumPy, config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.video import model as vm

DIMS = {"rgb": 12, "audio": 4}


def _video(t, seed=0):
  rng = np.random.default_rng(seed)
  return {k: rng.normal(size=(t, d)).astype(np.float32) for k, d in DIMS.items()}


def _pad(video, length, seed):
  """Pads with random garbage (not zeros): a padded frame must change nothing."""
  rng = np.random.default_rng(seed)
  t = next(iter(video.values())).shape[0]
  return {
    k: np.concatenate([v, 50 * rng.normal(size=(length - t, v.shape[1])).astype(np.float32)])
    for k, v in video.items()
  }


CASES = {
  "dcgn_dense_attention": ("dcgn", dict(hidden=8, conv_kernels=(2, 1, 3), pool_windows=(3, 2, 1))),
  "dcgn_knn_avg_softmax_logistic": (
    "dcgn",
    dict(
      hidden=8,
      conv_kernels=(3, 1),
      pool_windows=(2, 2),
      adjacency="knn",
      knn_k=4,
      pooling="avg",
      adjacency_norm="softmax",
      temperature=0.5,
      head="logistic",
      readout="mean",
    ),
  ),
  "meanpool": ("meanpool", dict(hidden=(8,))),
  "lstm": ("lstm", dict(hidden=8, num_layers=2)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_padding_changes_nothing(case):
  name, kw = CASES[case]
  model = vm.video_model(name, 5, **kw)
  videos = [_video(29, 1), _video(40, 2)]
  outs = []
  for length in (48, 90):
    padded = [_pad(v, length, seed=length + i) for i, v in enumerate(videos)]
    feats = {k: jnp.asarray(np.stack([p[k] for p in padded])) for k in DIMS}
    mask = jnp.arange(length)[None, :] < jnp.asarray([[29], [40]])
    if not outs:
      variables = jax.jit(model.init)(jax.random.PRNGKey(0), feats, mask)
    outs.append(jax.jit(model.apply)(variables, feats, mask))  # one program, not op-by-op
  for a, b in zip(outs[0], outs[1]):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  log_p, log_1mp = outs[0]
  assert log_p.shape == (2, 5)
  np.testing.assert_allclose(np.exp(log_p) + np.exp(log_1mp), 1.0, rtol=1e-5)
  # ... and the invariance is not that of a constant model: the two videos score differently.
  assert np.max(np.abs(np.asarray(log_p[0] - log_p[1]))) > 1e-3


def test_node_conv_is_reshape_matmul():
  rng = np.random.default_rng(0)
  h = rng.normal(size=(2, 7, 3)).astype(np.float32)
  mask = np.arange(7)[None] < np.array([[7], [5]])
  conv = vm.NodeConv(4, kernel=3)
  v = conv.init(jax.random.PRNGKey(0), jnp.asarray(h), jnp.asarray(mask))
  out, new_mask = conv.apply(v, jnp.asarray(h), jnp.asarray(mask))
  w, bias = np.asarray(v["params"]["proj"]["kernel"]), np.asarray(v["params"]["proj"]["bias"])
  hp = np.concatenate([h * mask[..., None], np.zeros((2, 2, 3), np.float32)], 1)
  ref = hp.reshape(2, 3, 9) @ w + bias
  np.testing.assert_array_equal(np.asarray(new_mask), [[1, 1, 1], [1, 1, 0]])
  np.testing.assert_allclose(out, ref * np.asarray(new_mask)[..., None], rtol=1e-5, atol=1e-6)


def test_attention_pool_with_equal_logits_is_average_pool():
  rng = np.random.default_rng(1)
  h = jnp.asarray(rng.normal(size=(2, 10, 3)).astype(np.float32))
  mask = jnp.arange(10)[None] < jnp.asarray([[10], [7]])
  att = vm.GraphPool(4, "attention")
  v = att.init(jax.random.PRNGKey(0), h, mask)
  v = jax.tree.map(jnp.zeros_like, v)  # W_att = 0, b = 0: equal logits
  out_att, m_att = att.apply(v, h, mask)
  out_avg, m_avg = vm.GraphPool(4, "avg").apply({}, h, mask)
  np.testing.assert_allclose(out_att, out_avg, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(m_att, m_avg)
  # Second video, window 1 holds frames 4..6 valid and 7 padding: mean of three frames.
  np.testing.assert_allclose(out_avg[1, 1], np.asarray(h)[1, 4:7].mean(0), rtol=1e-5)


def test_moe_head_matches_numpy():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 6)).astype(np.float32))
  head = vm.MultiLabelHead(4, "moe", num_mixtures=2)
  v = head.init(jax.random.PRNGKey(1), x)
  log_p, log_1mp = head.apply(v, x)
  p = v["params"]
  g = np.asarray(x) @ np.asarray(p["gates"]["kernel"]) + np.asarray(p["gates"]["bias"])
  e = np.asarray(x) @ np.asarray(p["experts"]["kernel"]) + np.asarray(p["experts"]["bias"])
  g = np.exp(g.reshape(3, 4, 3))
  g /= g.sum(-1, keepdims=True)
  ref = np.sum(g[..., :2] / (1 + np.exp(-e.reshape(3, 4, 2))), -1)
  np.testing.assert_allclose(np.exp(log_p), ref, rtol=1e-5)
  np.testing.assert_allclose(np.exp(log_1mp), 1 - ref, rtol=1e-5)


def test_bad_config_and_input():
  feats = {k: jnp.zeros((1, 6, d)) for k, d in DIMS.items()}
  mask = jnp.ones((1, 6), bool)
  with pytest.raises(ValueError, match="equal length"):
    vm.DCGN(3, conv_kernels=(2, 2), pool_windows=(2,)).init(jax.random.PRNGKey(0), feats, mask)
  with pytest.raises(ValueError, match="adjacency="):
    vm.DCGN(3, adjacency="sparse").init(jax.random.PRNGKey(0), feats, mask)
  with pytest.raises(KeyError, match="audio"):
    vm.MeanPoolModel(3).init(jax.random.PRNGKey(0), {"rgb": feats["rgb"]}, mask)
  with pytest.raises(ValueError, match="mask"):
    vm.LstmModel(3, hidden=4).init(jax.random.PRNGKey(0), feats, mask[:, :4])
  with pytest.raises(ValueError, match="unknown video model"):
    vm.video_model("gru", 3)


def test_task_bad_arguments():
  from vision_jax.video import video_classification_task

  m = vm.MeanPoolModel(3)
  with pytest.raises(ValueError, match="num_classes=0"):
    video_classification_task(m, num_classes=0)
  with pytest.raises(ValueError, match="top_k=0"):
    video_classification_task(m, num_classes=3, top_k=0)
  with pytest.raises(ValueError, match="feature_keys is empty"):
    video_classification_task(m, num_classes=3, feature_keys=())
