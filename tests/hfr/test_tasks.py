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


def _cfg(num_steps, **sections):
  cfg = ml_collections.ConfigDict()
  cfg.seed = 0
  cfg.train = ml_collections.ConfigDict(
    dict(num_steps=num_steps, log_every=1, eval_every=0, checkpoint_every=0, keep_checkpoints=1)
  )
  for k, v in sections.items():
    cfg[k] = ml_collections.ConfigDict(v)
  return cfg


@pytest.fixture(scope="module")
def nets():
  id_net = LightCNN9(num_classes=5)
  id_params = id_net.init(jax.random.PRNGKey(0), jnp.zeros((1, S, S, 1)), train=False)["params"]
  sampler = hfr.IdentitySampler(noise_dim=8, hidden=(16, 16, 16))
  sp = sampler.init(jax.random.PRNGKey(1), jnp.zeros((1, 256)), jax.random.PRNGKey(2))["params"]
  gen = hfr.DualGenerator(image_size=S, channels=1, width=4, style_hidden=(8,), variational=True)
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
    weights=hfr.GeneratorWeights(kl=0.01, adv=0.1), disc=hfr.PairDiscriminator(width=4),
  )  # fmt: skip
  assert [u.name for u in task.updates] == ["d", "g"]
  adam = dict(name="adam", lr=2e-3, b1=0.5, b2=0.999)
  summary, state = train_and_evaluate(
    _cfg(6, optim_g=adam, optim_d=adam), str(tmp_path), task, _Fixed(), progress=False,
    return_state=True,
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
