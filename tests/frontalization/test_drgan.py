"""The DR-GAN-style variant: shapes and conditioning of G and D, the identity/pose losses against
hand-computed values, its terms inside the frontalization Task, one jitted train step, its
generator checkpoints and bad input."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vision_jax import frontalization as fr
from vision_jax.train import mesh as mesh_lib
from vision_jax.train.step import create_train_state, make_task_optimizers, make_train_step

S, ND, NP, FRONT = 8, 3, 4, 2  # 8 px: one encoder level, seconds to compile


class TinyId(nn.Module):
  @nn.compact
  def __call__(self, x, *, train):
    e = nn.Dense(8)(x.reshape(x.shape[0], -1))
    return e, {"embedding": e}


def _batch(b=4, seed=0):
  rng = np.random.default_rng(seed)
  return {
    "image": rng.integers(0, 256, (b, S, S, 1), dtype=np.uint8),
    "frontal": rng.integers(0, 256, (b, S, S, 1), dtype=np.uint8),
    "label": rng.integers(0, ND, b).astype(np.int32),
    "pose_index": rng.integers(0, NP, b).astype(np.int32),
  }


def _log_softmax(z):
  z = np.asarray(z, np.float64)
  return (
    z - z.max(-1, keepdims=True) - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1))[:, None]
  )


def test_generator_and_discriminator_shapes_and_conditioning():
  gen = fr.DrGanGenerator(image_size=S, width=4, code_dim=6, num_poses=NP, target_pose=FRONT,
                          noise_dim=3)  # fmt: skip
  x = jnp.asarray(_batch()["image"], jnp.float32) / 255
  v = jax.jit(gen.init)(jax.random.PRNGKey(0), x)
  y = jax.jit(gen.apply)(v, x)  # jitted: one program instead of op-by-op dispatch
  assert y.shape == (4, S, S, 1) and float(y.min()) >= 0 and float(y.max()) <= 1
  assert v["params"]["fc_up"]["kernel"].shape[0] == 6 + NP + 3  # [f(x), c, z]
  # the default pose code is the target pose and the default noise 0; others change the output
  fwd = jax.jit(jax.vmap(lambda p, z: gen.apply(v, x, pose=p, noise=z), (0, 0)))
  poses = jnp.asarray([[FRONT] * 4, [0] * 4, [FRONT] * 4])
  noise = jnp.zeros((3, 4, 3)).at[2].set(1.0)
  out = fwd(poses, noise)
  np.testing.assert_allclose(out[0], y, atol=1e-6)
  assert float(jnp.abs(out[1] - y).max()) > 1e-4 and float(jnp.abs(out[2] - y).max()) > 1e-4
  d = fr.DrGanDiscriminator(num_identities=ND, num_poses=NP, width=4)
  ident, pose = jax.jit(lambda y: d.apply(d.init(jax.random.PRNGKey(1), y), y))(y)
  assert ident.shape == (4, ND + 1) and pose.shape == (4, NP)
  with pytest.raises(ValueError, match="target_pose=4 is outside 0..3"):
    fr.DrGanGenerator(image_size=S, width=4, num_poses=NP, target_pose=4).init(
      jax.random.PRNGKey(0), x
    )
  with pytest.raises(ValueError, match=r"expected \[B, 8, 8, 1\]"):
    gen.apply(v, jnp.zeros((2, 16, 16, 1)))


def test_identity_pose_and_fake_losses_match_hand_computed_values():
  # softmax([0, log 2, 0]) = [1/4, 1/2, 1/4]; softmax([0, 0]) = [1/2, 1/2]
  id_logits = jnp.asarray([[0.0, math.log(2.0), 0.0], [math.log(3.0), 0.0, 0.0]])
  pose_logits = jnp.asarray([[0.0, 0.0], [0.0, math.log(3.0)]])
  ce = fr.identity_pose_ce(id_logits, pose_logits, jnp.asarray([1, 0]), jnp.asarray([0, 1]))
  # row 0: -log(1/2) - log(1/2); row 1: -log(3/5) - log(3/4)
  np.testing.assert_allclose(ce, [2 * math.log(2), -math.log(0.6) - math.log(0.75)], rtol=1e-6)
  np.testing.assert_allclose(fr.fake_class_ce(id_logits), [math.log(4), math.log(5)], rtol=1e-6)
  d = fr.drgan_d_loss((id_logits, pose_logits), id_logits[:1], jnp.asarray([1, 0]),
                      jnp.asarray([0, 1]))  # fmt: skip
  np.testing.assert_allclose(d, np.mean(np.asarray(ce)) + math.log(4), rtol=1e-6)


def _parts(noise_dim=0):
  gen = fr.DrGanGenerator(image_size=S, width=4, code_dim=6, num_poses=NP, target_pose=FRONT,
                          noise_dim=noise_dim)  # fmt: skip
  idm = TinyId()
  idp = idm.init(jax.random.PRNGKey(5), jnp.zeros((1, S, S, 1)), train=False)["params"]
  return gen, idm, idp, fr.DrGanDiscriminator(num_identities=ND, num_poses=NP, width=4)


def test_task_d_and_g_terms_are_the_identity_and_pose_cross_entropies():
  gen, idm, idp, dd = _parts()
  w = fr.FrontalizationWeights(adv=0.5)
  task = fr.frontalization_task(gen, idm, id_params=idp, drgan_disc=dd, weights=w)
  assert [u.name for u in task.updates] == ["d", "g"]
  batch = _batch()
  params, _, extra = task.init(jax.random.PRNGKey(0), batch)
  assert set(params["disc"]) == {"drgan"}
  d_val, d_aux = jax.jit(task.updates[0].loss_fn)(
    params, {}, extra, batch, jax.random.PRNGKey(1), 0
  )
  g_val, g_aux = jax.jit(task.updates[1].loss_fn)(
    params, {}, extra, batch, jax.random.PRNGKey(1), 0
  )

  x = np.asarray(batch["image"], np.float32) / 255
  y = np.asarray(batch["frontal"], np.float32) / 255
  fake = jax.jit(gen.apply)({"params": params["gen"]}, x)
  disc = jax.jit(lambda v: dd.apply({"params": params["disc"]["drgan"]}, v))
  lab, pose = batch["label"], batch["pose_index"]
  nll = lambda z, k: -_log_softmax(z)[np.arange(len(k)), k]  # noqa: E731
  (ix, px), (iy, py), (i_f, p_f) = disc(x), disc(y), disc(fake)
  front = np.full_like(lab, FRONT)
  real = np.concatenate([nll(ix, lab) + nll(px, pose), nll(iy, lab) + nll(py, front)])
  want_d = real.mean() + nll(i_f, np.full_like(lab, ND)).mean()
  np.testing.assert_allclose(float(d_val), want_d, rtol=1e-5)
  np.testing.assert_allclose(float(d_aux["metrics"]["drgan_loss"]), want_d, rtol=1e-5)
  want_adv = (nll(i_f, lab) + nll(p_f, front)).mean()
  np.testing.assert_allclose(float(g_aux["metrics"]["adv"]), want_adv, rtol=1e-5)
  t = {k: float(v) for k, v in g_aux["metrics"].items()}
  total = (
    t["pixel"] + w.identity * t["identity"] + w.adv * want_adv + w.tv * t["tv"] + w.sym * t["sym"]
  )
  np.testing.assert_allclose(float(g_val), total, rtol=1e-5)


def test_one_jitted_train_step_with_noise_runs_and_moves_both_networks():
  gen, idm, idp, dd = _parts(noise_dim=2)
  task = fr.frontalization_task(gen, idm, id_params=idp, drgan_disc=dd)
  sgd = dict(name="sgd", lr=0.05, momentum=0.0, schedule="constant")
  tx, sched = make_task_optimizers(task, ml_collections.ConfigDict(dict(optim=sgd, optim_d=sgd)), 5)
  mesh = mesh_lib.make_mesh(devices=jax.devices()[:1])
  gbatch = mesh_lib.to_global_batch(_batch(), mesh)
  state, sh = create_train_state(task, tx, jax.random.PRNGKey(0), gbatch, mesh)
  p0 = jax.device_get(state.params)  # the step donates the state
  new, metrics = make_train_step(task, tx, sched, mesh, sh)(state, gbatch)
  assert all(np.isfinite(float(metrics[k])) for k in ("d/loss", "g/loss", "d/drgan_loss", "g/adv"))
  for group in ("gen", "disc"):
    diff = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), new.params[group],
                        p0[group])  # fmt: skip
    assert max(jax.tree.leaves(diff)) > 0


def test_bad_input_and_checkpoints(tmp_path):
  gen, idm, idp, dd = _parts()
  task = fr.frontalization_task(gen, idm, id_params=idp, drgan_disc=dd)
  batch = _batch()
  with pytest.raises(ValueError, match=r"needs batch\['label'\]"):
    task.init(jax.random.PRNGKey(0), {k: v for k, v in batch.items() if k != "label"})
  with pytest.raises(ValueError, match=r"batch\['pose_index'\] holds 0..4, outside 0..3"):
    task.init(jax.random.PRNGKey(0), dict(batch, pose_index=np.asarray([0, 1, 2, 4], np.int32)))
  with pytest.raises(ValueError, match="not both"):
    fr.frontalization_task(
      gen, idm, id_params=idp, drgan_disc=dd, global_disc=fr.GlobalDiscriminator()
    )
  tp = fr.FrontalGenerator(image_size=S, width=4, code_dim=6)
  with pytest.raises(ValueError, match="frontal_pose=None must be a pose index in 0..3"):
    fr.frontalization_task(tp, idm, id_params=idp, drgan_disc=dd)
  params = gen.init(jax.random.PRNGKey(0), jnp.zeros((1, S, S, 1)))["params"]
  path = str(tmp_path / "drgan.msgpack")
  fr.save_generator(path, gen, params)
  back = fr.load_generator(path, gen)
  jax.tree.map(
    lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), back, params
  )
  with pytest.raises(ValueError, match="holds a 'drgan' generator, but this generator is 'tpgan'"):
    fr.load_generator(path, tp)
  other = fr.DrGanGenerator(image_size=S, width=4, code_dim=6, num_poses=NP + 1, target_pose=FRONT)
  with pytest.raises(ValueError, match="num_poses=4, but this generator has num_poses=5"):
    fr.load_generator(path, other)
