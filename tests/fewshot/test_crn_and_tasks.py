"""CRN regulariser, the ProtoNet / CRN tasks on the shared train step, and the backbones."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vision_jax import fewshot as fs
from vision_jax.models import Conv4, ResNet12, get_model
from vision_jax.train import create_train_state, make_mesh, make_train_step, to_global_batch
from vision_jax.train.step import batch_shardings


def _batch(ways=4, shots=2, queries=2, size=16, seed=0, num_base=6):
  r = np.random.default_rng(seed)
  labels = np.repeat(np.arange(num_base), 6)
  images = r.integers(0, 256, (len(labels), size, size, 1), dtype=np.uint8)
  # Class-dependent brightness so a few steps can learn something.
  images = (images // 2 + labels[:, None, None, None] * 20).astype(np.uint8)
  g = fs.class_splits(labels, {"base": range(num_base)})
  s = fs.EpisodeSampler(g["base"], num_ways=ways, num_shots=shots, num_queries=queries, seed=seed)
  return fs.EpisodeBatches(images, s, class_order=list(range(num_base)))


def test_regularizer_shapes_and_attention():
  reg = fs.ClassRegularizer(num_basis=7, features=5, hidden=8, scale_init=3.0)
  r = np.random.default_rng(0)
  z = r.normal(size=(6, 5)).astype(np.float32)
  lab = np.array([0, 0, 1, 1, 2, 2], np.int32)
  v = reg.init(jax.random.PRNGKey(0), z, lab, 3)
  desc, alpha, logits = reg.apply(v, z, lab, 3)
  assert desc.shape == (3, 5) and alpha.shape == (3, 7) and logits.shape == (6, 7)
  np.testing.assert_allclose(alpha.sum(-1), 1.0, rtol=1e-5)
  b = np.asarray(v["params"]["basis"])
  cos = (z / np.linalg.norm(z, axis=1, keepdims=True)) @ (
    b / np.linalg.norm(b, axis=1, keepdims=True)
  ).T
  np.testing.assert_allclose(logits, 3.0 * cos, rtol=1e-4, atol=1e-5)
  a = np.exp(3.0 * cos) / np.exp(3.0 * cos).sum(1, keepdims=True)
  np.testing.assert_allclose(alpha, np.stack([a[lab == c].mean(0) for c in range(3)]), rtol=1e-4)
  mu = np.stack([z[lab == c].mean(0) for c in range(3)])
  p0 = fs.regularized_prototypes(reg, v["params"], z, lab, 3, mix=0.0)
  np.testing.assert_allclose(p0, mu, rtol=1e-5, atol=1e-6)
  p = fs.regularized_prototypes(reg, v["params"], z, lab, 3, mix=0.25)
  np.testing.assert_allclose(p, 0.75 * mu + 0.25 * np.asarray(desc), rtol=1e-5, atol=1e-6)


def test_crn_weights_validate():
  with pytest.raises(ValueError, match=r"crn.mix=1.5"):
    fs.CRNWeights(mix=1.5)
  with pytest.raises(ValueError, match=r"crn.recon_weight=-1"):
    fs.CRNWeights(recon_weight=-1.0)
  with pytest.raises(ValueError, match="metric='l1'"):
    fs.fewshot_task(Conv4(width=4), num_ways=4, metric="l1")
  with pytest.raises(ValueError, match="num_base_classes"):
    fs.fewshot_task(Conv4(width=4), num_ways=4, crn=fs.CRNWeights())


def test_protonet_loss_is_ce_of_negative_sqdist():
  data = _batch()
  b = data[0]
  model = Conv4(width=4)
  task = fs.fewshot_task(model, num_ways=4)
  params, ms, extra = task.init(jax.random.PRNGKey(0), b)
  loss, aux = task.loss_fn(params, ms, extra, b, None, 0)
  x = np.concatenate([b["support"], b["query"]])
  (emb, _), _ = model.apply(
    {"params": params["backbone"], **ms}, x, train=True, mutable=["batch_stats"]
  )
  emb = np.asarray(emb, np.float64)
  s, q = emb[:8], emb[8:]
  p = np.stack([s[b["support_label"] == c].mean(0) for c in range(4)])
  logits = -((q[:, None] - p[None]) ** 2).sum(-1)
  logp = (
    logits
    - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
    - logits.max(1, keepdims=True)
  )
  ref = -np.mean(logp[np.arange(8), b["query_label"]])
  assert float(loss) == pytest.approx(ref, rel=1e-4)


def test_crn_memory_and_loss_terms():
  data = _batch()
  b = data[0]
  model = Conv4(width=4)
  w = fs.CRNWeights(base_weight=0.5, recon_weight=2.0, mix=0.3, memory_momentum=0.8, hidden=8)
  task = fs.fewshot_task(model, num_ways=4, crn=w, num_base_classes=6)
  params, ms, extra = task.init(jax.random.PRNGKey(1), b)
  assert extra["memory"].shape == (6, params["crn"]["basis"].shape[1])
  loss, aux = task.loss_fn(params, ms, extra, b, None, 0)
  x = np.concatenate([b["support"], b["query"]])
  (emb, _), _ = model.apply(
    {"params": params["backbone"], **ms}, x, train=True, mutable=["batch_stats"]
  )
  emb = np.asarray(emb)
  cls = np.concatenate([b["support_class"], b["query_class"]])
  mem, seen = np.asarray(aux["extra"]["memory"]), np.asarray(aux["extra"]["seen"])
  for c in range(6):
    if c in cls:
      assert seen[c]
      np.testing.assert_allclose(mem[c], emb[cls == c].mean(0), rtol=1e-4, atol=1e-5)
    else:
      assert not seen[c] and np.all(mem[c] == 0)
  # Second step on the same episode: EMA with momentum 0.8 toward the same mean -> unchanged;
  # toward a shifted memory it moves 20 % of the way.
  shifted = dict(aux["extra"], memory=aux["extra"]["memory"] + 1.0)
  _, aux2 = task.loss_fn(params, ms, shifted, b, None, 1)
  c0 = int(b["support_class"][0])
  np.testing.assert_allclose(
    aux2["extra"]["memory"][c0], emb[cls == c0].mean(0) + 0.8, rtol=1e-4, atol=1e-5
  )
  m = aux["metrics"]
  assert float(loss) == pytest.approx(
    float(m["episode_ce"]) + 0.5 * float(m["base_ce"]) + 2.0 * float(m["recon"]), rel=1e-5
  )


def test_train_step_8_devices_matches_1_device(num_devices):
  # 3-way 2-shot 3-query: 6 support / 9 query images, not a multiple of 8: the episode is
  # replicated on every device (batch_partition).
  data = _batch(ways=3, shots=2, queries=3)
  crn = fs.CRNWeights(hidden=8)  # the CRN step contains the ProtoNet step
  task = fs.fewshot_task(Conv4(width=4), num_ways=3, crn=crn, num_base_classes=6)
  tx = optax.sgd(0.05)  # not Adam: g / sqrt(v) amplifies float noise in near-zero grads
  out = []
  for mesh in (make_mesh(devices=jax.devices()[:1]), make_mesh()):
    bsh = batch_shardings(task, data[0], mesh)
    b0 = to_global_batch(data[0], mesh, bsh)
    assert b0["support"].sharding.is_fully_replicated
    state, sh = create_train_state(task, tx, jax.random.PRNGKey(0), b0, mesh)
    step = make_train_step(task, tx, None, mesh, sh, bsh)
    losses = []
    for t in range(2):
      state, m = step(state, to_global_batch(data[t], mesh, bsh))
      losses.append(float(m["loss"]))
    out.append((losses, jax.device_get(state.params)))
  np.testing.assert_allclose(out[0][0], out[1][0], rtol=2e-4)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-5), out[0][1], out[1][1]
  )
  assert out[0][0][-1] < out[0][0][0]


def _numpy_init(model, x):
  """Variables of ``model``'s shapes filled from NumPy (a jitted flax init of ResNet-12 takes
  ~45 s to compile on the loaded 2-core CPU; the shape/BN checks do not need its init)."""
  r = np.random.default_rng(0)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))
  return jax.tree.map(lambda s: jnp.asarray(r.normal(0.0, 0.3, s.shape), s.dtype), shapes)


def test_conv4_and_resnet12_shapes_and_bn():
  x = jnp.ones((2, 84, 84, 3))
  m = get_model("conv4", width=8)
  v = _numpy_init(m, x)
  emb, inter = jax.eval_shape(lambda: m.apply(v, x, train=False))  # shapes only at 84 px
  assert emb.shape == (2, 5 * 5 * 8) and inter["block4"].shape == (2, 5, 5, 8)
  e28, _ = jax.jit(lambda v, y: m.apply(v, y, train=False))(v, jnp.ones((2, 28, 28, 3)))
  assert e28.shape == (2, 8)
  r = ResNet12(widths=(4, 6, 8, 10))
  xr = jnp.ones((2, 32, 32, 3))
  vr = _numpy_init(r, xr)
  er, ir = jax.jit(lambda v: r.apply(v, xr, train=False))(vr)
  assert er.shape == (2, 10) and ir["block4"].shape == (2, 2, 2, 10)
  (_, _), new = jax.jit(lambda v: r.apply(v, xr * 2.0, train=True, mutable=["batch_stats"]))(vr)
  before = jax.tree.leaves(vr["batch_stats"])
  after = jax.tree.leaves(new["batch_stats"])
  assert any(not np.allclose(a, b) for a, b in zip(before, after))
  with pytest.raises(ValueError, match="H, W >= 16"):
    m.apply(v, jnp.ones((1, 8, 8, 3)), train=False)
  full = ResNet12()
  shapes = jax.eval_shape(lambda: full.init(jax.random.PRNGKey(0), x, train=False))
  assert shapes["params"]["block4"]["conv3"]["kernel"].shape == (3, 3, 640, 640)
  n = sum(p.size for p in jax.tree.leaves(shapes["params"]))
  assert 12.0e6 < n < 12.6e6  # ResNet-12 (64-160-320-640) has ~12.4M parameters
