"""The frontalization Task: D then G in one jitted step (checked against hand-applied SGD), the
baseline's update set, bad batches and generator checkpoints."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vision_jax import frontalization as fr
from vision_jax.hfr import host_param_init
from vision_jax.train import mesh as mesh_lib
from vision_jax.train.step import create_train_state, make_task_optimizers, make_train_step

S = 16


class TinyId(nn.Module):
  """A stand-in recognition net with LightCNN's contract (``intermediates["embedding"]``)."""

  @nn.compact
  def __call__(self, x, *, train):
    e = nn.Dense(8)(x.reshape(x.shape[0], -1))
    return e, {"embedding": e}


def _batch(b=8, seed=0):
  rng = np.random.default_rng(seed)
  return {
    "image": rng.integers(0, 256, (b, S, S, 1), dtype=np.uint8),
    "frontal": rng.integers(0, 256, (b, S, S, 1), dtype=np.uint8),
    "frontal_parsing": rng.integers(0, 6, (b, S, S)).astype(np.uint8),
  }


def _parts(parsing=True, shallow=False):
  """``shallow``: no encoder residual blocks, one-conv region towers, the stock conv backward
  (fewer layers to compile; the same D-then-G structure)."""
  kw = dict(conv_impl="xla") if shallow else {}
  gen = fr.FrontalGenerator(image_size=S, width=4, code_dim=8, **kw, **(
    dict(res_blocks=0) if shallow else {}))  # fmt: skip
  idm = TinyId()
  idp = idm.init(jax.random.PRNGKey(5), jnp.zeros((1, S, S, 1)), train=False)["params"]
  gd = fr.GlobalDiscriminator(width=4, **kw)
  pd = fr.ParsingDiscriminator(width=4, n_down=1 if shallow else 2, **kw) if parsing else None
  return gen, idm, idp, gd, pd


def _cfg(lr):
  sgd = dict(name="sgd", lr=lr, momentum=0.0, schedule="constant")
  return ml_collections.ConfigDict(dict(optim=sgd, optim_d=dict(sgd)))


def test_d_then_g_in_one_step_matches_hand_applied_sgd():
  gen, idm, idp, gd, pd = _parts(shallow=True)
  w = fr.FrontalizationWeights(adv=0.5, parsing_adv=0.5)
  task = fr.frontalization_task(gen, idm, id_params=idp, global_disc=gd, parsing_disc=pd, weights=w)
  assert [(u.name, u.params, u.optim) for u in task.updates] == [
    ("d", "disc", "optim_d"),
    ("g", "gen", "optim"),
  ]
  task = host_param_init(task, 0)  # initial params from the host: no threefry to compile
  lr, batch = 0.05, _batch()
  tx, sched = make_task_optimizers(task, _cfg(lr), 10)
  mesh = mesh_lib.make_mesh(devices=jax.devices()[:1])
  gbatch = mesh_lib.to_global_batch(batch, mesh)
  state, sh = create_train_state(task, tx, jax.random.PRNGKey(0), gbatch, mesh)
  p0 = jax.device_get(state.params)
  new, metrics = make_train_step(task, tx, sched, mesh, sh)(state, gbatch)
  p1 = jax.device_get(new.params)

  # Independent recomputation: D's SGD step at p0, then G's SGD step against the *updated* D.
  masks = fr.region_masks(batch["frontal_parsing"])
  y = jnp.asarray(batch["frontal"], jnp.float32) / 255.0
  x = jnp.asarray(batch["image"], jnp.float32) / 255.0
  sp = jax.nn.softplus

  def d_loss(disc):
    fake = gen.apply({"params": p0["gen"]}, x)
    rg, fg = (gd.apply({"params": disc["global"]}, v) for v in (y, fake))
    (rp, pres, _), (fp, _, _) = (pd.apply({"params": disc["parsing"]}, v, masks) for v in (y, fake))
    per = sp(-rp) + sp(fp)
    parsing = sum(jnp.sum(per[r] * pres[r]) / jnp.maximum(jnp.sum(pres[r]), 1) for r in range(3))
    return jnp.mean(sp(-rg) + sp(fg)) + parsing

  # jitted (one program each) rather than op by op: same math, seconds instead of a minute
  d_val, d_grad = jax.jit(jax.value_and_grad(d_loss))(p0["disc"])
  disc1 = jax.tree.map(lambda a, g: a - lr * g, p0["disc"], d_grad)

  def g_loss(g_params):
    yh = gen.apply({"params": g_params}, x)
    f = lambda v: idm.apply({"params": idp}, v, train=False)[1]["embedding"]  # noqa: E731
    a, b = f(yh), f(y)
    cos = jnp.sum(a * b, -1) / jnp.linalg.norm(a, axis=-1) / jnp.linalg.norm(b, axis=-1)
    fp, pres, _ = pd.apply({"params": disc1["parsing"]}, yh, masks)
    parsing = sum(
      jnp.sum(sp(-fp[r]) * pres[r]) / jnp.maximum(jnp.sum(pres[r]), 1) for r in range(3)
    )
    tv = jnp.mean(jnp.abs(yh[:, 1:] - yh[:, :-1]), (1, 2, 3)) + jnp.mean(
      jnp.abs(yh[:, :, 1:] - yh[:, :, :-1]), (1, 2, 3)
    )
    return (
      w.pixel * jnp.mean(jnp.abs(yh - y)) + w.identity * jnp.mean(1 - cos)
      + w.adv * jnp.mean(sp(-gd.apply({"params": disc1["global"]}, yh))) + w.parsing_adv * parsing
      + w.tv * jnp.mean(tv) + w.sym * jnp.mean(jnp.abs(yh - yh[:, :, ::-1]))
    )  # fmt: skip

  g_val, g_grad = jax.jit(jax.value_and_grad(g_loss))(p0["gen"])
  gen1 = jax.tree.map(lambda a, g: a - lr * g, p0["gen"], g_grad)
  close = lambda a, b: np.testing.assert_allclose(
    np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-6
  )  # noqa: E731
  jax.tree.map(close, p1["disc"], disc1)
  jax.tree.map(close, p1["gen"], gen1)
  np.testing.assert_allclose(float(metrics["d/loss"]), float(d_val), rtol=1e-4)
  np.testing.assert_allclose(float(metrics["g/loss"]), float(g_val), rtol=1e-4)
  assert {
    "g/pixel",
    "g/identity",
    "g/adv",
    "g/parsing_adv",
    "g/tv",
    "g/sym",
    "d/parsing_loss",
  } <= set(metrics)


def test_baseline_has_no_parsing_terms_and_no_d_without_discriminators():
  gen, idm, idp, gd, _ = _parts(parsing=False)
  batch = {k: v for k, v in _batch().items() if k != "frontal_parsing"}  # no parsing maps needed
  task = fr.frontalization_task(gen, idm, id_params=idp, global_disc=gd)
  params, _, extra = task.init(jax.random.PRNGKey(0), batch)
  assert set(params["disc"]) == {"global"} and "id_net" in extra
  loss, aux = task.updates[1].loss_fn(params, {}, extra, batch, None, 0)
  assert "parsing_adv" not in aux["metrics"] and "adv" in aux["metrics"]
  plain = fr.frontalization_task(gen, idm, id_params=idp)
  assert [u.name for u in plain.updates] == ["g"]
  assert "disc" not in plain.init(jax.random.PRNGKey(0), batch)[0]


def test_bad_batches_raise_naming_the_key():
  gen, idm, idp, gd, pd = _parts()
  task = fr.frontalization_task(gen, idm, id_params=idp, global_disc=gd, parsing_disc=pd)
  batch = _batch()
  no_parsing = {k: v for k, v in batch.items() if k != "frontal_parsing"}
  with pytest.raises(ValueError, match="no 'frontal_parsing'"):
    task.init(jax.random.PRNGKey(0), no_parsing)
  wrong = dict(batch, frontal=np.zeros((8, 32, 32, 1), np.uint8))
  with pytest.raises(
    ValueError, match=r"batch\['frontal'\] has shape \(8, 32, 32, 1\); the generator is 16 px"
  ):
    task.init(jax.random.PRNGKey(0), wrong)
  with pytest.raises(ValueError, match="adversarial='least_squares'"):
    fr.frontalization_task(gen, idm, id_params=idp, adversarial="least_squares")


def test_generator_checkpoint_round_trip_and_other_resolution(tmp_path):
  gen = fr.FrontalGenerator(image_size=S, width=4, code_dim=8)
  params = gen.init(jax.random.PRNGKey(0), jnp.zeros((1, S, S, 1)))["params"]
  path = str(tmp_path / "g16.msgpack")
  fr.save_generator(path, gen, params)
  back = fr.load_generator(path, gen)
  jax.tree.map(
    lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), back, params
  )
  with pytest.raises(
    ValueError,
    match=r"g16.msgpack.*image_size=16, but this generator has image_size=32.*resolution",
  ):
    fr.load_generator(path, fr.FrontalGenerator(image_size=32, width=4, code_dim=8))
  with pytest.raises(ValueError, match="width=4, but this generator has width=8"):
    fr.load_generator(path, fr.FrontalGenerator(image_size=S, width=8, code_dim=8))
  with pytest.raises(FileNotFoundError, match=r"gen.checkpoint='.*missing.msgpack'"):
    fr.load_generator(str(tmp_path / "missing.msgpack"), gen)
  (tmp_path / "junk").write_bytes(b"not msgpack")
  with pytest.raises(ValueError, match="junk.*not a flax msgpack"):
    fr.load_generator(str(tmp_path / "junk"), gen)
