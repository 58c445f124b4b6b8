"""DVG-Face Tasks on the shared trainer: the D/G multi-update step trains, frozen networks stay
frozen, stage I trains only fc2, paired sampling, and bad input."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vision_jax import hfr
from vision_jax.models import LightCNN9, LightCNN29v2
from vision_jax.train import read_metrics, train_and_evaluate

S = 16


def _cfg(num_steps, one_device=False, **sections):
  cfg = ml_collections.ConfigDict()
  cfg.seed = 0
  if one_device:  # a smaller program to compile; these tests check training, not sharding
    cfg.mesh = ml_collections.ConfigDict(dict(data=1))
  cfg.train = ml_collections.ConfigDict(
    dict(num_steps=num_steps, log_every=1, eval_every=0, checkpoint_every=0, keep_checkpoints=1)
  )
  for k, v in sections.items():
    cfg[k] = ml_collections.ConfigDict(v)
  return cfg


@pytest.fixture(scope="module")
def nets():
  # shallow nets (one MFM group, no decoder residual blocks, stock conv backward): the test is
  # about the D/G plumbing, and every layer adds compile time
  id_net = LightCNN9(num_classes=5, num_groups=1, conv_impl="xla")
  id_params = id_net.init(jax.random.PRNGKey(0), jnp.zeros((1, S, S, 1)), train=False)["params"]
  sampler = hfr.IdentitySampler(noise_dim=8, hidden=(16,))
  sp = sampler.init(jax.random.PRNGKey(1), jnp.zeros((1, 256)), jax.random.PRNGKey(2))["params"]
  gen = hfr.DualGenerator(image_size=S, channels=1, width=4, style_hidden=(8,), variational=True,
                          mid_res_blocks=0, last_res_blocks=0, conv_impl="xla")  # fmt: skip
  return id_net, id_params, sampler, sp, gen


class _Rep:
  """``data[t]``: the same batch every step."""

  def __init__(self, batch):
    self.batch = batch

  def __getitem__(self, t):
    return self.batch


class _Fixed:
  """The same batch of 8 same-identity-looking pairs every step."""

  def __init__(self, shape_b=(8, S, S, 1)):
    r = np.random.default_rng(0)
    self.b = {
      "a": r.integers(0, 255, (8, S, S, 1), dtype=np.uint8),
      "b": r.integers(0, 255, shape_b, dtype=np.uint8),
    }

  def __getitem__(self, t):
    return self.b


def test_generator_multi_update_trains(nets, tmp_path):
  id_net, id_params, sampler, sp, gen = nets
  task = hfr.generator_task(
    gen, id_net, sampler, id_params=id_params, sampler_params=sp,
    weights=hfr.GeneratorWeights(kl=0.01, adv=0.1),
    disc=hfr.PairDiscriminator(width=4, conv_impl="xla"),
  )  # fmt: skip
  assert [u.name for u in task.updates] == ["d", "g"]
  task = hfr.host_param_init(task, 0)  # no threefry kernel per parameter to compile
  adam = dict(name="adam", lr=2e-3, b1=0.5, b2=0.999)
  summary, state = train_and_evaluate(
    _cfg(6, one_device=True, optim_g=adam, optim_d=adam), str(tmp_path), task, _Fixed(),
    progress=False, return_state=True,
  )  # fmt: skip
  m = read_metrics(str(tmp_path / "metrics.jsonl"))
  train = [r for r in m if "g/pix_rec" in r]
  assert {"d/loss", "g/ort", "g/ip", "g/pair", "g/kl", "g/adv"} <= set(train[-1])
  assert train[-1]["g/pix_rec"] < train[0]["g/pix_rec"]  # G fits the fixed batch
  # the frozen identity network and sampler are untouched, bit for bit
  for a, b in zip(jax.tree.leaves(state.extra["id_net"]), jax.tree.leaves(id_params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  for a, b in zip(jax.tree.leaves(state.extra["sampler"]), jax.tree.leaves(sp)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert set(state.params) == {"gen", "disc"} and set(state.opt_state) == {"d", "g"}
  # paired sampling from the trained generator: batched, jitted, deterministic per seed
  fn = hfr.make_pair_sampler(gen, sampler)
  b = _Fixed().b
  p1 = hfr.generate_pairs(fn, state.params["gen"], sp, b["a"], b["b"], num_pairs=11, batch_size=4)
  p2 = hfr.generate_pairs(fn, state.params["gen"], sp, b["a"], b["b"], num_pairs=11, batch_size=4)
  assert p1["a"].shape == (11, S, S, 1) and p1["a"].dtype == np.uint8
  np.testing.assert_array_equal(p1["b"], p2["b"])
  np.testing.assert_allclose(np.linalg.norm(p1["identity"], axis=-1), 1.0, rtol=1e-5)
  fn_noise = hfr.make_pair_sampler(gen, sampler, attributes="noise")
  assert fn_noise(state.params["gen"], sp, b["a"], b["b"], jax.random.PRNGKey(0))[0].shape == (
    8, S, S, 1,
  )  # fmt: skip


def test_generator_task_bad_input(nets):
  id_net, id_params, sampler, sp, gen = nets
  det = hfr.DualGenerator(image_size=S, channels=1, width=4, style_hidden=(8,))
  with pytest.raises(ValueError, match="variational=True"):
    hfr.generator_task(det, id_net, sampler, id_params=id_params, sampler_params=sp,
                       weights=hfr.GeneratorWeights(kl=0.1))  # fmt: skip
  with pytest.raises(ValueError, match="adversarial term needs a discriminator"):
    hfr.generator_task(det, id_net, sampler, id_params=id_params, sampler_params=sp,
                       weights=hfr.GeneratorWeights(adv=0.1))  # fmt: skip
  task = hfr.generator_task(det, id_net, sampler, id_params=id_params, sampler_params=sp)
  assert [u.name for u in task.updates] == ["g"]  # adversarial off: the generator update only
  bad = _Fixed(shape_b=(8, 2 * S, 2 * S, 1)).b
  with pytest.raises(ValueError, match="modality images must be .* of one size"):
    task.init(jax.random.PRNGKey(0), bad)
  with pytest.raises(ValueError, match="must be equal"):
    hfr.generate_pairs(None, None, None, bad["a"], bad["b"], num_pairs=2)


def test_recognition_stage1_trains_only_fc2_and_contrastive_stage(tmp_path):
  model = LightCNN9(num_classes=4, dropout_rate=0.5)
  r = np.random.default_rng(0)
  real = {"image": r.integers(0, 255, (8, S, S, 1), dtype=np.uint8), "label": np.arange(8) % 4}
  fake = {"a": real["image"], "b": real["image"][::-1].copy()}
  pre = LightCNN9(num_classes=9).init(jax.random.PRNGKey(5), jnp.zeros((1, S, S, 1)), train=False)
  pre = pre["params"]  # another class count: fc2 is re-initialised
  task = hfr.recognition_task(model, init_params=pre, reset_head=True, head_only=True)
  sgd = dict(name="sgd", lr=0.1, momentum=0.9)
  _, s1 = train_and_evaluate(
    _cfg(3, optim_head=sgd), str(tmp_path / "s1"), task, _Rep({"real": real}),
    progress=False, return_state=True,
  )  # fmt: skip
  for key in pre:
    if key != "fc2":
      for a, b in zip(jax.tree.leaves(s1.params[key]), jax.tree.leaves(pre[key])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  task2 = hfr.recognition_task(model, init_params=s1.params, reset_head=False,
                               contrastive_weight=0.5)  # fmt: skip
  _, s2 = train_and_evaluate(
    _cfg(2, optim=sgd), str(tmp_path / "s2"), task2, _Rep({"real": real, "fake": fake}),
    progress=False, return_state=True,
  )  # fmt: skip
  m = read_metrics(str(tmp_path / "s2" / "metrics.jsonl"))
  assert "contrastive" in m[-1] and "pos_cos" in m[-1]
  changed = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(s2.params["conv1"]),
                                                   jax.tree.leaves(s1.params["conv1"]))]  # fmt: skip
  assert any(changed)


def test_wrong_architecture_checkpoint(tmp_path):
  x = jnp.zeros((1, S, S, 1))
  p29 = LightCNN29v2(num_classes=None).init(jax.random.PRNGKey(0), x, train=False)["params"]
  path = str(tmp_path / "id.msgpack")
  hfr.save_params(path, p29)
  with pytest.raises(ValueError, match="does not match the identity network lightcnn9"):
    hfr.load_params(path, LightCNN9(), x, what="identity network lightcnn9 at 16 px")
  back = hfr.load_params(path, LightCNN29v2(), x, what="identity network")
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(p29)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # wrong input size -> the fc layer's shape differs, named in the message
  with pytest.raises(ValueError, match="shape mismatch .*fc/kernel"):
    hfr.load_params(path, LightCNN29v2(), jnp.zeros((1, 2 * S, 2 * S, 1)), what="identity network")
  with pytest.raises(FileNotFoundError, match="does not exist"):
    hfr.load_params(str(tmp_path / "nope"), LightCNN9(), x, what="identity network")
  with pytest.raises(ValueError, match="recognition network"):
    hfr.recognition_task(LightCNN9(num_classes=3), init_params=p29).init(
      jax.random.PRNGKey(0), {"real": {"image": np.zeros((1, S, S, 1), np.uint8)}}
    )


def test_host_param_init_replaces_only_the_random_leaves():
  import flax.linen as nn

  from vision_jax.train.step import Task

  class Two(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(3, name="out")(nn.Dense(512, name="hid")(x))

  frozen = {"w": jnp.arange(6.0).reshape(2, 3)}
  x = jnp.zeros((1, 64))

  def init(rng, batch):
    return Two().init(rng, batch)["params"], {}, {"frozen": frozen}

  def host(seed):
    return jax.jit(hfr.host_param_init(Task(init=init, loss_fn=lambda *a: 0.0), seed).init)

  fn = host(3)
  params, _, extra = fn(jax.random.PRNGKey(0), x)
  ref, _, _ = jax.jit(init)(jax.random.PRNGKey(0), x)
  assert jax.tree.structure(params) == jax.tree.structure(ref)
  np.testing.assert_array_equal(np.asarray(extra["frozen"]["w"]), np.asarray(frozen["w"]))
  for layer in ("hid", "out"):  # biases are zeros in flax, not drawn from the rng: kept
    np.testing.assert_array_equal(np.asarray(params[layer]["bias"]), 0.0)
  k = np.asarray(params["out"]["kernel"])  # [512, 3]: N(0, 1 / 512)
  assert k.shape == (512, 3) and abs(k.std() * np.sqrt(512) - 1.0) < 0.05 and abs(k.mean()) < 0.01
  assert abs(np.asarray(params["hid"]["kernel"]).std() * np.sqrt(64) - 1.0) < 0.02
  assert not np.allclose(k, np.asarray(ref["out"]["kernel"]))
  # seeded: the same values for another rng, others for another seed
  np.testing.assert_array_equal(np.asarray(fn(jax.random.PRNGKey(1), x)[0]["out"]["kernel"]), k)
  assert not np.allclose(np.asarray(host(4)(jax.random.PRNGKey(0), x)[0]["out"]["kernel"]), k)
  # the compiled init holds no random-bit generation (threefry is built from xor)
  assert " xor(" not in fn.lower(jax.random.PRNGKey(0), x).compile().as_text()
  assert " xor(" in jax.jit(init).lower(jax.random.PRNGKey(0), x).compile().as_text()
  task = Task(init=init, loss_fn=lambda *a: 0.0)
  with pytest.raises(ValueError, match="param_init='numpy'"):
    hfr.param_init(task, "numpy", 0)
  assert hfr.param_init(task, "flax", 0) is task


def test_shallow_decoder_options():
  kw = dict(image_size=S, channels=1, width=4, style_hidden=(8,))
  i, x = jnp.zeros((2, 256)), jnp.zeros((2, S, S, 1))
  full = jax.eval_shape(hfr.DualGenerator(**kw).init, jax.random.PRNGKey(0), i, x, x)["params"]
  assert {"res0", "res_last0", "res_last1"} <= set(full["dec"])
  assert full["style_a"]["fc1"]["kernel"].shape == (8, 7 * 2 * 4)  # 7 AdaIN layers
  g = hfr.DualGenerator(**kw, mid_res_blocks=0, last_res_blocks=0)
  p = jax.eval_shape(g.init, jax.random.PRNGKey(0), i, x, x)["params"]
  assert not any(k.startswith("res") for k in p["dec"])
  assert p["style_a"]["fc1"]["kernel"].shape == (8, 3 * 2 * 4)  # up-conv + two convs
  g2 = hfr.DualGenerator(**kw, mid_res_blocks=2, last_res_blocks=1)
  p2 = jax.eval_shape(g2.init, jax.random.PRNGKey(0), i, x, x)["params"]
  assert {"res0", "res0_1", "res_last0"} <= set(p2["dec"]) and "res_last1" not in p2["dec"]
  assert p2["style_a"]["fc1"]["kernel"].shape == (8, 5 * 2 * 4)
  with pytest.raises(ValueError, match="last_res_blocks=-1"):
    jax.eval_shape(hfr.DualGenerator(**kw, last_res_blocks=-1).init, jax.random.PRNGKey(0), i, x, x)


def test_lightcnn9_num_groups():
  x = jnp.zeros((1, S, S, 1))

  def shapes(m):
    return jax.eval_shape(lambda: m.init(jax.random.PRNGKey(0), x, train=False))["params"]

  def names(m):
    return set(shapes(m))

  assert names(LightCNN9(num_classes=3)) == {"conv1", "group1", "group2", "group3", "group4",
                                             "fc1", "fc2"}  # fmt: skip
  p = shapes(LightCNN9(num_groups=1))
  assert set(p) == {"conv1", "group1", "fc1"}
  # 16 -> pool 8 -> group1 (96 ch) -> pool 4: the MFM-fc sees 4 * 4 * 96 values
  assert p["fc1"]["kernel"].shape == (4 * 4 * 96, 512)
  assert names(LightCNN9(num_groups=3)) == {"conv1", "group1", "group2", "group3", "fc1"}
  with pytest.raises(ValueError, match="num_groups=0"):
    LightCNN9(num_groups=0).init(jax.random.PRNGKey(0), x, train=False)
