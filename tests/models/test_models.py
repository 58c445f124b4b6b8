"""Backbones: output contract, parameter counts vs reference architectures, BatchNorm behaviour."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from vision_jax.models import MODEL_NAMES, get_model, resolve_conv_impl


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _abstract_params(model, shape):
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))
  return v["params"], v.get("batch_stats", {})


# torchvision.models.resnet{18,34,50}(num_classes=1000): sum(p.numel() for p in m.parameters())
# (running stats are buffers, not parameters); the numbers in torchvision's weight docs.
@pytest.mark.parametrize(
  "name,expected", [("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032)]
)
def test_resnet_param_counts_match_torchvision(name, expected):
  params, stats = _abstract_params(get_model(name, num_classes=1000), (1, 224, 224, 3))
  assert _count(params) == expected
  # One (mean, var) pair per BN channel; every BN has (scale, bias) in params.
  bn_channels = sum(
    x.shape[0] for p, x in jax.tree.leaves_with_path(stats) if "mean" in jax.tree_util.keystr(p)
  )
  assert _count(stats) == 2 * bn_channels


def _mfm_conv(cin, cout, k):
  return k * k * cin * 2 * cout + 2 * cout  # conv to 2*cout channels, with bias


def _group(cin, cout):
  return _mfm_conv(cin, cin, 1) + _mfm_conv(cin, cout, 3)


def _res(c):
  return 2 * _mfm_conv(c, c, 3)


@pytest.mark.parametrize("num_classes", [None, 79_077])
def test_lightcnn9_param_count_hand_formula(num_classes):
  expected = (
    _mfm_conv(1, 48, 5)
    + _group(48, 96)
    + _group(96, 192)
    + _group(192, 128)
    + _group(128, 128)
    + (8 * 8 * 128 * 512 + 512)
  )  # MFM fc1: 8192 -> 2*256
  if num_classes:
    expected += 256 * num_classes + num_classes
  params, stats = _abstract_params(
    get_model("lightcnn9", num_classes=num_classes), (1, 128, 128, 1)
  )
  assert _count(params) == expected
  assert _count(stats) == 0
  if num_classes is None:
    assert expected == 5_480_864  # ~5.5M, the size quoted for LightCNN-9 without the classifier


@pytest.mark.parametrize("num_classes", [None, 80_013])
def test_lightcnn29v2_param_count_hand_formula(num_classes):
  expected = (
    _mfm_conv(1, 48, 5)
    + _res(48)
    + _group(48, 96)
    + 2 * _res(96)
    + _group(96, 192)
    + 3 * _res(192)
    + _group(192, 128)
    + 4 * _res(128)
    + _group(128, 128)
    + (8 * 8 * 128 * 256 + 256)
  )  # plain fc 8192 -> 256
  if num_classes:
    expected += 256 * num_classes  # fc2 has no bias
  params, _ = _abstract_params(get_model("lightcnn29v2", num_classes=num_classes), (1, 128, 128, 1))
  assert _count(params) == expected


def test_convnet_param_count_hand_formula():
  w = (32, 32, 64, 64)
  convs = 9 * (1 * w[0] + w[0] * w[1] + w[1] * w[2] + w[2] * w[3])  # no bias (BN follows)
  bns = 2 * (sum(w) + 128)
  fc = 7 * 7 * 64 * 128 + 128 * 10 + 10
  params, _ = _abstract_params(get_model("convnet", num_classes=10), (1, 28, 28, 1))
  assert _count(params) == convs + bns + fc


def _fast_variables(model, x, seed=0):
  """Variables with ``model.init``'s tree, filled by NumPy (He-scaled kernels, BN identity).

  ``model.init`` compiles one threefry kernel per parameter shape, which costs ~10 s per tiny
  ResNet on the shared 2-core CPU; the contract tests only need well-scaled values.
  """
  rng = np.random.default_rng(seed)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if "kernel" in name:
      fan_in = int(np.prod(leaf.shape[:-1]))
      return jnp.asarray(rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in), leaf.dtype)
    if "scale" in name or "var" in name:
      return jnp.ones(leaf.shape, leaf.dtype)
    return jnp.zeros(leaf.shape, leaf.dtype)  # bias, mean

  return jax.tree.map_with_path(fill, abstract)


TINY = [
  ("convnet", dict(widths=(4, 4, 8, 8), hidden=16), (2, 28, 28, 1), 16),
  ("resnet18", dict(stem="cifar", width=0.125), (2, 16, 16, 3), 64),
  ("resnet34", dict(stem="imagenet", width=0.0625), (2, 32, 32, 3), 32),
  ("resnet50", dict(stem="cifar", width=0.0625), (2, 8, 8, 3), 128),
  ("lightcnn9", {}, (2, 32, 32, 1), 256),
  ("lightcnn29v2", dict(layers=(1, 1, 1, 1)), (2, 32, 32, 1), 256),
  ("conv4", dict(width=4), (2, 16, 16, 1), 4),
  ("resnet12", dict(widths=(2, 3, 4, 5)), (2, 16, 16, 3), 5),
]


@pytest.mark.parametrize("name,kwargs,shape,emb_dim", TINY)
def test_output_contract(name, kwargs, shape, emb_dim):
  x = jnp.asarray(np.random.default_rng(0).random(shape), jnp.float32)
  model = get_model(name, num_classes=7, **kwargs)
  v = _fast_variables(model, x)
  (logits, inter), upd = model.apply(v, x, train=True, mutable=["batch_stats"])
  assert logits.shape == (shape[0], 7) and logits.dtype == jnp.float32
  assert inter["embedding"].shape == (shape[0], emb_dim)
  assert np.all(np.isfinite(logits))
  assert set(upd) == ({"batch_stats"} if "batch_stats" in v else set())
  # num_classes=None: same trunk (same param tree minus the classifier), embedding as output.
  emb_model = get_model(name, num_classes=None, **kwargs)
  trunk = {k: p for k, p in v["params"].items() if k not in ("head", "fc2")}
  assert set(trunk) != set(v["params"])
  abstract = jax.eval_shape(lambda: emb_model.init(jax.random.key(0), x, train=False))
  assert jax.tree.map(jnp.shape, abstract["params"]) == jax.tree.map(jnp.shape, trunk)
  emb, inter_e = emb_model.apply({**v, "params": trunk}, x, train=False)
  _, inter_eval = model.apply(v, x, train=False)
  assert emb.shape == (shape[0], emb_dim)
  np.testing.assert_array_equal(emb, inter_e["embedding"])
  np.testing.assert_allclose(emb, inter_eval["embedding"], rtol=1e-6, atol=1e-6)


def test_batchnorm_train_updates_stats_with_momentum_0p9():
  model = get_model("convnet", num_classes=3, widths=(4, 4, 8, 8), hidden=8)
  x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 28, 28, 1)), jnp.float32)
  v = _fast_variables(model, x)
  _, upd = model.apply(v, x, train=True, mutable=["batch_stats"])
  # Independent: conv1 has no bias, so bn1 sees lax.conv(x, kernel) directly.
  k = v["params"]["conv1"]["kernel"]
  y = np.asarray(
    lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")),
    np.float64,
  )
  mean, var = y.mean(axis=(0, 1, 2)), y.var(axis=(0, 1, 2))
  np.testing.assert_allclose(upd["batch_stats"]["bn1"]["mean"], 0.1 * mean, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(upd["batch_stats"]["bn1"]["var"], 0.9 + 0.1 * var, rtol=1e-4)


@pytest.mark.parametrize(
  "name,kwargs",
  [("convnet", dict(widths=(4, 4, 8, 8), hidden=8)), ("resnet18", dict(stem="cifar", width=0.125))],
)
def test_batchnorm_eval_uses_running_stats(name, kwargs):
  model = get_model(name, num_classes=3, **kwargs)
  shape = (4, 28, 28, 1) if name == "convnet" else (4, 8, 8, 3)
  x = jnp.asarray(np.random.default_rng(2).standard_normal(shape), jnp.float32)
  v = _fast_variables(model, x)
  # Train a few BN updates so the running stats differ from init.
  stats = v["batch_stats"]
  for _ in range(3):
    _, upd = model.apply({**v, "batch_stats": stats}, x, train=True, mutable=["batch_stats"])
    assert any(
      jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), upd["batch_stats"], stats))
    )
    stats = upd["batch_stats"]
  v = {**v, "batch_stats": stats}
  # Eval: stats untouched even when mutable, and per-example outputs independent of the batch.
  (out, _), upd = model.apply(v, x, train=False, mutable=["batch_stats"])
  jax.tree.map(np.testing.assert_array_equal, upd["batch_stats"], stats)
  out_single, _ = model.apply(v, x[:1], train=False)
  np.testing.assert_allclose(out[:1], out_single, rtol=1e-5, atol=1e-5)
  # Train mode normalises with batch statistics, so the same example depends on its batch.
  (t_full, _), _ = model.apply(v, x, train=True, mutable=["batch_stats"])
  (t_pair, _), _ = model.apply(v, x[:2], train=True, mutable=["batch_stats"])
  assert not np.allclose(t_full[:1], t_pair[:1], atol=1e-4)
  # Eval really reads the running stats: shifting them changes the output.
  shifted = jax.tree.map(lambda a: a + 1.0, stats)
  out_shift, _ = model.apply({**v, "batch_stats": shifted}, x, train=False)
  assert not np.allclose(out, out_shift, atol=1e-4)


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_zero_init_residual_makes_blocks_identity_at_init(block):
  from vision_jax.models import BasicBlock, Bottleneck

  cls, c = (BasicBlock, 8) if block == "basic" else (Bottleneck, 2)
  x = jnp.abs(jnp.asarray(np.random.default_rng(3).standard_normal((2, 4, 4, 8)), jnp.float32))
  blk = cls(c, zero_init_residual=True)
  v = blk.init(jax.random.key(0), x, train=False)
  last = v["params"][f"BatchNorm_{1 if block == 'basic' else 2}"]["scale"]
  np.testing.assert_array_equal(last, np.zeros_like(last))
  # relu(x + 0) = x for x >= 0: the block starts as the identity.
  np.testing.assert_array_equal(blk.apply(v, x, train=False), x)
  v0 = cls(c).init(jax.random.key(0), x, train=False)
  assert not np.allclose(cls(c).apply(v0, x, train=False), x)


def test_bfloat16_compute_float32_params():
  x = jnp.ones((2, 28, 28, 1), jnp.float32)
  m = get_model("convnet", num_classes=10, widths=(4, 4, 8, 8), hidden=8, dtype=jnp.bfloat16)
  v = _fast_variables(m, x)  # same dtypes as m.init (eval_shape of it)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v["params"]))
  (logits, inter), _ = m.apply(v, x, train=True, mutable=["batch_stats"])
  assert logits.dtype == jnp.float32 and inter["block1"].dtype == jnp.bfloat16


def test_lightcnn_dropout_needs_rng_and_is_off_in_eval():
  x = jnp.asarray(np.random.default_rng(4).random((2, 32, 32, 1)), jnp.float32)
  m = get_model("lightcnn9", num_classes=5, dropout_rate=0.5)
  v = _fast_variables(m, x)
  a, _ = m.apply(v, x, train=False)
  b, _ = m.apply(v, x, train=False)
  np.testing.assert_array_equal(a, b)
  with pytest.raises(Exception, match="dropout"):
    m.apply(v, x, train=True)
  c, _ = m.apply(v, x, train=True, rngs={"dropout": jax.random.key(1)})
  assert not np.allclose(a, c)


def test_lightcnn29v2_pooling_is_max_plus_avg():
  # conv1 output after pooling equals maxpool + avgpool of the MFM conv output.
  from vision_jax.models import max_plus_avg_pool

  y = jnp.arange(2 * 4 * 4 * 1, dtype=jnp.float32).reshape(2, 4, 4, 1)
  got = max_plus_avg_pool(y)
  yn = np.asarray(y).reshape(2, 2, 2, 2, 2, 1)  # [B, H/2, 2, W/2, 2, C]
  ref = yn.max(axis=(2, 4)) + yn.mean(axis=(2, 4))
  np.testing.assert_allclose(got, ref)


def test_get_model_errors():
  with pytest.raises(ValueError, match="valid names: convnet, resnet18"):
    get_model("vgg16")
  with pytest.raises(TypeError, match="valid fields"):
    get_model("resnet18", depth=18)
  assert get_model("ResNet-18", num_classes=3).stage_sizes == (2, 2, 2, 2)
  assert set(MODEL_NAMES) == {
    "convnet",
    "resnet18",
    "resnet34",
    "resnet50",
    "lightcnn9",
    "lightcnn29v2",
    "conv4",
    "resnet12",
  }


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 7, 9, 3)])
def test_reshape_pooling_matches_reduce_window(shape):
  import flax.linen as nn

  from vision_jax.models.layers import avg_pool, max_pool

  x = jnp.asarray(np.random.default_rng(5).standard_normal(shape), jnp.float32)  # no ties
  for ours, ref in [
    (max_pool, lambda a: nn.max_pool(a, (2, 2), (2, 2), padding="VALID")),
    (avg_pool, lambda a: nn.avg_pool(a, (2, 2), (2, 2), padding="VALID")),
  ]:
    np.testing.assert_allclose(ours(x), ref(x), rtol=1e-6)
    g_ours = jax.grad(lambda a, f=ours: jnp.sum(f(a) ** 2))(x)
    g_ref = jax.grad(lambda a, f=ref: jnp.sum(f(a) ** 2))(x)
    np.testing.assert_allclose(g_ours, g_ref, rtol=1e-6, atol=1e-6)


def test_resnet_gradients_equal_across_conv_impls():
  x = jnp.asarray(np.random.default_rng(7).standard_normal((2, 8, 8, 3)), jnp.float32)
  y = jnp.array([0, 2])
  grads = {}
  for impl in ("xla", "auto"):  # auto = einsum backward on the strided convs (CPU)
    m = get_model(
      "resnet18", num_classes=3, stem="cifar", width=0.125, stage_sizes=(1, 1, 1, 1), conv_impl=impl
    )
    v = _fast_variables(m, x)

    def loss(p, m=m, v=v):
      (logits, _), _ = m.apply({**v, "params": p}, x, train=True, mutable=["batch_stats"])
      return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

    grads[impl] = jax.jit(jax.grad(loss))(v["params"])
  assert resolve_conv_impl("auto", strides=(2, 2)) == "einsum"  # the test runs on CPU
  for a, b in zip(jax.tree.leaves(grads["auto"]), jax.tree.leaves(grads["xla"])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_backbone_from_config():
  import ml_collections

  from vision_jax.models import ConvNet, ResNet, backbone_from_config

  m = backbone_from_config(
    ml_collections.ConfigDict(dict(name="convnet", widths=(4, 4, 8, 8), hidden=16, conv_impl="xla"))
  )
  assert isinstance(m, ConvNet) and m.num_classes is None and tuple(m.widths) == (4, 4, 8, 8)
  r = backbone_from_config(ml_collections.ConfigDict(dict(name="ResNet-18", stem="imagenet")))
  assert isinstance(r, ResNet) and r.stem == "imagenet" and r.num_classes is None
  assert backbone_from_config(ml_collections.ConfigDict(dict(name="resnet18"))).stem == "cifar"
