"""Multi-update Tasks on the one trainer: a toy GAN and a bi-level toy (train-loop v2)."""

import os
import signal

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from tests.train import toy_gan as tg
from tests.train.test_loop import _final_params, _run_toy, _wait_for_checkpoint
from vision_jax.train import (
  Checkpointer,
  NonFiniteError,
  Task,
  Update,
  create_train_state,
  make_mesh,
  make_task_optimizers,
  make_train_step,
  to_global_batch,
  train_and_evaluate,
)


def _gan_steps(mesh, n=3, g_every=1, batch_size=16):
  cfg = tg.gan_config()
  task = tg.gan_task(g_every=g_every)
  tx, sched = make_task_optimizers(task, cfg, 100)
  data = tg.RingData(batch_size=batch_size)
  state, sh = create_train_state(
    task, tx, jax.random.PRNGKey(0), to_global_batch(data[0], mesh), mesh
  )
  step = make_train_step(task, tx, sched, mesh, sh)
  history = [jax.device_get(state)]
  metrics = []
  for t in range(n):
    state, m = step(state, to_global_batch(data[t], mesh))
    history.append(jax.device_get(state))
    metrics.append(jax.device_get(m))
  return history, metrics, step


def test_gan_step_equals_hand_written_alternating_reference():
  mesh = make_mesh(devices=jax.devices()[:1])
  history, metrics, _ = _gan_steps(mesh, n=3)
  s0 = history[0]
  # The reference: two plain optax Adam(b1=0.5) optimisers, D step then G step with the new D.
  opt_d = optax.adam(2e-3, b1=0.5, b2=0.999)
  opt_g = optax.adam(2e-3, b1=0.5, b2=0.999)
  gen, disc = s0.params["gen"], s0.params["disc"]
  sd, sg = opt_d.init(disc), opt_g.init(gen)
  data = tg.RingData(batch_size=16)
  for t in range(3):
    x = jnp.asarray(data[t]["x"])
    base = jax.random.fold_in(s0.rng, t)
    z_d = tg.noise(jax.random.fold_in(base, 0), 16)
    z_g = tg.noise(jax.random.fold_in(base, 1), 16)
    ld, gd = jax.value_and_grad(lambda d: tg.d_loss({"gen": gen, "disc": d}, x, z_d))(disc)
    up, sd = opt_d.update(gd, sd, disc)
    disc = optax.apply_updates(disc, up)
    lg, gg = jax.value_and_grad(lambda g: tg.g_loss({"gen": g, "disc": disc}, z_g))(gen)
    up, sg = opt_g.update(gg, sg, gen)
    gen = optax.apply_updates(gen, up)
    np.testing.assert_allclose(metrics[t]["d/loss"], ld, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(metrics[t]["g/loss"], lg, rtol=1e-6, atol=1e-6)
    got = history[t + 1].params
    for a, b in zip(jax.tree.leaves(got["disc"]), jax.tree.leaves(disc)):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    for a, b in zip(jax.tree.leaves(got["gen"]), jax.tree.leaves(gen)):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  # One optax state per update, each over its own parameter group only.
  assert set(history[-1].opt_state) == {"d", "g"}
  for name, group in (("d", {"disc": disc}), ("g", {"gen": gen})):
    adam = [
      s
      for s in jax.tree.leaves(history[-1].opt_state[name], is_leaf=lambda x: hasattr(x, "mu"))
      if hasattr(s, "mu")
    ]
    assert len(adam) == 1 and jax.tree.structure(adam[0].mu) == jax.tree.structure(group)
  assert {"d/loss", "g/loss", "d/lr", "g/lr", "d/grad_norm", "g/update_norm"} <= set(metrics[0])


def test_gan_trains_to_cover_the_modes(tmp_path):
  mesh = make_mesh(devices=jax.devices()[:1])
  # 1,500 steps already cover 8 modes with this seed; 2,500 leave margin (>= 7 asserted).
  summary, state = train_and_evaluate(
    tg.gan_config(2500),
    str(tmp_path / "gan"),
    tg.gan_task(),
    tg.RingData(),
    mesh=mesh,
    progress=False,
    return_state=True,
  )
  covered, quality = tg.modes_covered(jax.device_get(state.params["gen"]))
  assert covered >= 7, (covered, quality)
  assert quality > 0.3
  rows = summary["final_train"]
  assert "d/loss" in rows and "g/loss" in rows and "loss" not in rows


def test_gan_one_device_equals_eight_devices(num_devices):
  h1, m1, _ = _gan_steps(make_mesh(devices=jax.devices()[:1]), n=2)
  h8, m8, step8 = _gan_steps(make_mesh(), n=2)
  assert step8._cache_size() == 1, "train step retraced"
  for a, b in zip(jax.tree.leaves(h1[-1].params), jax.tree.leaves(h8[-1].params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  for k in ("d/loss", "g/loss", "d/grad_norm"):
    np.testing.assert_allclose(m1[-1][k], m8[-1][k], rtol=1e-5)


# ----------------------------------------------------------------------------- bi-level toy


def _bilevel_task(arch_every=2, arch_start=0):
  """Weights ``w`` fit ``batch["train"]``; the architecture mixes two ops and fits
  ``batch["val"]``: ``f(x) = softmax(a)_0 * (x @ w) + softmax(a)_1 * (x @ w)**2``."""

  def f(params, x):
    p = jax.nn.softmax(params["arch"]["alpha"])
    y = x @ params["net"]["w"]
    return p[0] * y + p[1] * y**2

  def mse(params, b):
    return jnp.mean((f(params, b["x"]) - b["y"]) ** 2)

  def w_fn(params, ms, extra, batch, rng, step):
    return mse(params, batch), {"metrics": {"batch_mean": jnp.mean(batch["x"])}}

  def a_fn(params, ms, extra, batch, rng, step):
    return mse(params, batch), {"metrics": {"batch_mean": jnp.mean(batch["x"])}}

  def init(rng, batch):
    return {"net": {"w": jnp.full((3,), 0.3)}, "arch": {"alpha": jnp.array([0.2, -0.1])}}, {}, {}

  task = Task(
    init=init,
    updates=(
      Update("weights", w_fn, params="net", optim="optim", batch_key="train"),
      Update(
        "arch",
        a_fn,
        params="arch",
        optim="optim_arch",
        batch_key="val",
        every=arch_every,
        start=arch_start,
      ),
    ),
  )
  return task, mse


def _bilevel_cfg():
  cfg = ml_collections.ConfigDict()
  cfg.optim = ml_collections.ConfigDict(
    dict(name="sgd", lr=0.1, momentum=0.0, weight_decay=0.01, schedule="constant")
  )
  cfg.optim_arch = ml_collections.ConfigDict(
    dict(name="sgd", lr=0.02, momentum=0.0, schedule="linear")
  )
  return cfg


def _bilevel_batch(t):
  rng = np.random.default_rng(t)
  tr = rng.normal(size=(8, 3)).astype(np.float32)
  va = rng.normal(size=(8, 3)).astype(np.float32) + 0.5  # different data: its mean tells them apart
  return {
    "train": {"x": tr, "y": tr.sum(1) + 0.5 * tr.sum(1) ** 2},
    "val": {"x": va, "y": (va.sum(1) * 0.5) ** 2},
  }


def test_bilevel_groups_batches_and_cadence():
  mesh = make_mesh(devices=jax.devices()[:1])
  task, mse = _bilevel_task(arch_every=2, arch_start=1)
  num_steps = 5  # the architecture update runs at steps 1 and 3
  tx, sched = make_task_optimizers(task, _bilevel_cfg(), num_steps)
  state, sh = create_train_state(
    task, tx, jax.random.PRNGKey(0), to_global_batch(_bilevel_batch(0), mesh), mesh
  )
  step = make_train_step(task, tx, sched, mesh, sh)
  p = jax.device_get(state.params)
  arch_count = 0
  for t in range(num_steps):
    b = jax.tree.map(jnp.asarray, _bilevel_batch(t))
    # The weight update's loss depends on the architecture, so a leak would move it.
    assert np.abs(jax.grad(lambda q: mse(q, b["train"]))(p)["arch"]["alpha"]).max() > 1e-3
    state, m = step(state, to_global_batch(_bilevel_batch(t), mesh))
    m = jax.device_get(m)
    new = jax.device_get(state.params)
    # Weight update: plain SGD + L2 decay on the train batch, only over params["net"].
    g = jax.grad(lambda q: mse(q, b["train"]))(p)["net"]["w"]
    w_ref = p["net"]["w"] - 0.1 * (g + 0.01 * p["net"]["w"])
    np.testing.assert_allclose(new["net"]["w"], w_ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(m["weights/batch_mean"], b["train"]["x"].mean(), rtol=1e-6)
    if t in (1, 3):  # the architecture step runs, on the val batch, after the weight step
      q = {"net": {"w": new["net"]["w"]}, "arch": p["arch"]}
      ga = jax.grad(lambda a: mse({"net": q["net"], "arch": a}, b["val"]))(p["arch"])["alpha"]
      lr = 0.02 * (1 - arch_count / 2)  # linear to 0 over ceil((5 - 1) / 2) = 2 applications
      np.testing.assert_allclose(m["arch/lr"], lr, rtol=1e-6)
      np.testing.assert_allclose(new["arch"]["alpha"], p["arch"]["alpha"] - lr * ga, rtol=1e-6)
      np.testing.assert_allclose(m["arch/batch_mean"], b["val"]["x"].mean(), rtol=1e-6)
      assert m["arch/applied"] == 1.0
      arch_count += 1
    else:  # skipped: architecture bitwise untouched by the weight update
      np.testing.assert_array_equal(new["arch"]["alpha"], p["arch"]["alpha"])
      assert m["arch/applied"] == 0.0
    p = new
  # The weight optimiser's state covers only the weights and vice versa.
  assert set(state.opt_state) == {"weights", "arch"}
  leaves = jax.tree_util.tree_leaves_with_path(state.opt_state["weights"])
  assert not any("arch" in jax.tree_util.keystr(k) for k, _ in leaves)


def test_nonfinite_update_reverts_whole_step_and_names_it(tmp_path):
  base = tg.gan_task()
  d, g = base.updates

  def bad_g(params, ms, extra, batch, rng, step):
    loss, aux = g.loss_fn(params, ms, extra, batch, rng, step)
    return jnp.where(step == 3, jnp.nan, loss), aux

  task = Task(init=base.init, updates=(d, Update("g", bad_g, params="gen", optim="optim_g")))
  mesh = make_mesh(devices=jax.devices()[:1])
  tx, sched = make_task_optimizers(task, tg.gan_config(), 10)
  data = tg.RingData(batch_size=16)
  state, sh = create_train_state(
    task, tx, jax.random.PRNGKey(0), to_global_batch(data[0], mesh), mesh
  )
  step = make_train_step(task, tx, sched, mesh, sh)
  for t in range(3):
    state, _ = step(state, to_global_batch(data[t], mesh))
  before = jax.device_get(state)
  state, m = step(state, to_global_batch(data[3], mesh))
  m, after = jax.device_get(m), jax.device_get(state)
  assert m["nonfinite"] == 1.0 and m["g/nonfinite"] == 1.0 and m["d/nonfinite"] == 0.0
  assert int(after.step) == 3
  # D's update of that step was fine, yet it is reverted too.
  for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before)):
    np.testing.assert_array_equal(a, b)
  cfg = tg.gan_config(8, checkpoint_every=2, log_every=1)
  with pytest.raises(
    NonFiniteError, match=r"g/loss in update 'g' \(optimiser cfg.optim_g\) at step 3"
  ):
    train_and_evaluate(cfg, str(tmp_path / "nan"), task, data, mesh=mesh, progress=False)
  assert Checkpointer(str(tmp_path / "nan" / "checkpoints")).all_steps() == [2]


def test_missing_optimiser_section_and_param_group_are_named():
  task = tg.gan_task()
  cfg = tg.gan_config()
  del cfg.optim_g
  with pytest.raises(KeyError, match=r"update 'g' uses optimiser section cfg.optim_g.*optim_d"):
    make_task_optimizers(task, cfg, 10)
  bad = Task(
    init=task.init,
    updates=(Update("d", task.updates[0].loss_fn, params="critic", optim="optim_d"),),
  )
  mesh = make_mesh(devices=jax.devices()[:1])
  tx, _ = make_task_optimizers(bad, tg.gan_config(), 10)
  with pytest.raises(KeyError, match=r"update 'd'.*\['critic'\].*\['disc', 'gen'\]"):
    create_train_state(bad, {"d": tx["d"]}, jax.random.PRNGKey(0), {"x": np.zeros((4, 2))}, mesh)
  with pytest.raises(ValueError, match="exactly one of loss_fn"):
    Task(init=task.init)
  with pytest.raises(ValueError, match="duplicate names"):
    Task(init=task.init, updates=(task.updates[0], task.updates[0]))
  with pytest.raises(ValueError, match="every=0"):
    Update("d", task.updates[0].loss_fn, every=0)
  with pytest.raises(ValueError, match="start=-1"):
    Update("d", task.updates[0].loss_fn, start=-1)


def test_multi_update_checkpoint_written_on_8_resumes_on_1(tmp_path, num_devices):
  """Train 4 steps on 8 devices, resume to 6 on 1 device: equals 6 steps on 1 device."""
  task = tg.gan_task(g_every=2)
  data = tg.RingData(batch_size=16)
  wd = str(tmp_path / "resume")
  mesh1 = make_mesh(devices=jax.devices()[:1])
  cfg = tg.gan_config(4, checkpoint_every=2, log_every=1)
  train_and_evaluate(cfg, wd, task, data, mesh=make_mesh(), progress=False)
  cfg.train.num_steps = 6
  _, resumed = train_and_evaluate(
    cfg, wd, task, data, mesh=mesh1, progress=False, return_state=True
  )
  _, ref = train_and_evaluate(
    cfg, str(tmp_path / "ref"), task, data, mesh=mesh1, progress=False, return_state=True
  )
  for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(ref)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  import json

  rows = [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl"))]
  train = [r for r in rows if r["split"] == "train"]
  assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
  # g runs at steps 0, 2, 4: its metrics are logged after those steps only.
  assert [r["step"] for r in train if "g/loss" in r] == [1, 3, 5]
  assert all("d/loss" in r and "g/applied" not in r for r in train)


def test_multi_update_kill9_then_resume_is_bitwise_identical(tmp_path):
  def run(workdir, steps, sleep=0.0, wait=True):
    return _run_toy(workdir, steps, sleep, wait, module="tests.train.toy_gan")

  steps = 12
  ref = str(tmp_path / "ref")
  run(ref, steps)
  wd = str(tmp_path / "killed")
  p = run(wd, steps, sleep=0.4, wait=False)
  _wait_for_checkpoint(wd, 4, p)
  p.send_signal(signal.SIGKILL)
  p.wait()
  saved = Checkpointer(os.path.join(wd, "checkpoints")).all_steps()
  assert saved and max(saved) < steps
  run(wd, steps)
  a, b = _final_params(ref, steps), _final_params(wd, steps)
  assert set(a["opt_state"]) == {"d", "g"}
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
