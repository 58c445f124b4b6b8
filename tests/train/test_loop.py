"""Train-loop behaviour: sharding equivalence, checkpoints, resume, fail-fast, signals."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.train.toy import ToyData, ToyNet, toy_config
from vision_jax.train import (
  Checkpointer,
  NonFiniteError,
  Task,
  abstract_with_shardings,
  create_train_state,
  make_mesh,
  make_optimizer,
  make_train_step,
  to_global_batch,
  train_and_evaluate,
)
from vision_jax.train.classification import classification_task

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _one_step(mesh):
  cfg = toy_config()
  task = classification_task(ToyNet(), num_classes=4)
  tx, sched = make_optimizer(cfg.optim, 10)
  data = ToyData(batch_size=16)
  batch = to_global_batch(data[0], mesh)
  state, sh = create_train_state(task, tx, jax.random.PRNGKey(0), batch, mesh)
  step = make_train_step(task, tx, sched, mesh, sh)
  for t in range(2):
    state, metrics = step(state, to_global_batch(data[t], mesh))
  return jax.device_get(state), jax.device_get(metrics), step


def test_one_device_equals_eight_devices(num_devices):
  s1, m1, _ = _one_step(make_mesh(devices=jax.devices()[:1]))
  s8, m8, step8 = _one_step(make_mesh())
  assert step8._cache_size() == 1, "train step retraced"
  for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s8.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  # BatchNorm over the sharded batch is sync-BN: running stats agree too.
  for a, b in zip(jax.tree.leaves(s1.model_state), jax.tree.leaves(s8.model_state)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(m1["loss"], m8["loss"], rtol=1e-5)
  assert int(s8.step) == 2 and m8["nonfinite"] == 0.0
  for k in ("lr", "grad_norm", "param_norm", "update_norm", "train_accuracy"):
    assert np.isfinite(m8[k]), k


def test_checkpoint_written_on_8_restores_on_1(tmp_path, num_devices):
  mesh8 = make_mesh(data=4, model=2)
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  tree = {"w": jnp.arange(32.0).reshape(8, 4), "b": jnp.ones(3)}
  sh8 = {"w": NamedSharding(mesh8, P("model")), "b": NamedSharding(mesh8, P())}
  tree8 = jax.device_put(tree, sh8)
  assert len(tree8["w"].addressable_shards) == 8 and tree8["w"].addressable_shards[
    0
  ].data.shape == (4, 4)
  ck = Checkpointer(str(tmp_path / "ck"))
  ck.save(5, tree8, {"note": "x"}, wait=True)
  mesh1 = make_mesh(devices=jax.devices()[:1])
  sh1 = jax.tree.map(lambda _: NamedSharding(mesh1, P()), tree)
  target = abstract_with_shardings(jax.eval_shape(lambda t: t, tree), sh1)
  restored, meta, step = ck.restore_latest(target)
  ck.close()
  assert step == 5 and meta["note"] == "x"
  assert restored["w"].sharding.mesh.devices.size == 1
  np.testing.assert_array_equal(restored["w"], tree["w"])
  np.testing.assert_array_equal(restored["b"], tree["b"])


def test_corrupt_latest_checkpoint_falls_back(tmp_path):
  tree = {"w": jnp.arange(6.0)}
  ck = Checkpointer(str(tmp_path / "ck"), keep=5)
  ck.save(1, tree, wait=True)
  ck.save(2, {"w": tree["w"] + 1}, wait=True)
  # Corrupt step 2: delete the array data files of its state item.
  state_dir = tmp_path / "ck" / "2" / "state"
  for root, _, files in os.walk(state_dir):
    for f in files:
      if not f.startswith("_"):
        os.remove(os.path.join(root, f))
  target = jax.eval_shape(lambda t: t, tree)
  target = abstract_with_shardings(
    target, jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(jax.devices()[0]), tree)
  )
  with pytest.warns(RuntimeWarning, match="step 2"):
    restored, _, step = ck.restore_latest(target)
  ck.close()
  assert step == 1
  np.testing.assert_array_equal(restored["w"], np.arange(6.0))


def test_train_outputs_and_resume_in_process(tmp_path):
  wd = str(tmp_path / "run")
  task = classification_task(ToyNet(), num_classes=4)
  data = ToyData()
  cfg = toy_config(num_steps=4, eval_every=2)
  out = train_and_evaluate(cfg, wd, task, data, lambda: data.eval_batches(), progress=False)
  assert out["step"] == 4 and not out["preempted"]
  assert out["eval"]["num_examples"] == 40.0  # padding dropped
  for f in ("config.json", "versions.json", "summary.json", "metrics.jsonl", "curves.png"):
    assert os.path.exists(os.path.join(wd, f)), f
  assert os.listdir(os.path.join(wd, "tb"))
  rows = [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl"))]
  assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2, 3, 4]
  # Extending num_steps resumes from step 4, not from scratch.
  cfg.train.num_steps = 6
  out = train_and_evaluate(cfg, wd, task, data, lambda: data.eval_batches(), progress=False)
  rows = [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl"))]
  assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]


def test_nonfinite_loss_stops_with_step_and_keeps_checkpoint(tmp_path):
  base = classification_task(ToyNet(), num_classes=4)

  def loss_fn(params, model_state, extra, batch, rng, step):
    loss, aux = base.loss_fn(params, model_state, extra, batch, rng, step)
    return jnp.where(step == 3, jnp.nan, loss), aux

  task = Task(init=base.init, loss_fn=loss_fn)
  wd = str(tmp_path / "nan")
  with pytest.raises(NonFiniteError, match=r"non-finite loss at step 3 "):
    train_and_evaluate(toy_config(num_steps=8), wd, task, ToyData(), progress=False)
  assert Checkpointer(os.path.join(wd, "checkpoints")).all_steps() == [2]


def _final_params(workdir, step):
  mgr = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"), item_names=("state", "meta"))
  out = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  mgr.close()
  return out["state"]


def _run_toy(workdir, steps, sleep=0.0, wait=True, module="tests.train.toy"):
  """Runs a toy trainer script (``module``'s ``main``) in a real subprocess on 2 fake devices."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", PYTHONPATH=REPO)
  cmd = [
    sys.executable,
    "-m",
    module,
    "--workdir",
    workdir,
    "--steps",
    str(steps),
    "--sleep",
    str(sleep),
  ]
  p = subprocess.Popen(
    cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
  )
  if wait:
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
  return p


def _wait_for_checkpoint(workdir, min_step, proc, timeout=240):
  d = os.path.join(workdir, "checkpoints")
  t0 = time.time()
  while time.time() - t0 < timeout:
    if proc.poll() is not None:
      raise AssertionError("trainer exited early: " + proc.stdout.read())
    if os.path.isdir(d) and any(s.isdigit() and int(s) >= min_step for s in os.listdir(d)):
      return
    time.sleep(0.2)
  raise AssertionError("no checkpoint appeared")


def test_kill9_then_resume_is_bitwise_identical(tmp_path):
  steps = 12
  ref = str(tmp_path / "ref")
  _run_toy(ref, steps)
  wd = str(tmp_path / "killed")
  p = _run_toy(wd, steps, sleep=0.4, wait=False)
  _wait_for_checkpoint(wd, 4, p)
  p.send_signal(signal.SIGKILL)
  p.wait()
  steps_before = Checkpointer(os.path.join(wd, "checkpoints")).all_steps()
  assert steps_before and max(steps_before) < steps
  _run_toy(wd, steps)  # same command again: resumes
  a, b = _final_params(ref, steps), _final_params(wd, steps)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_sigterm_saves_checkpoint_and_exits_cleanly(tmp_path):
  wd = str(tmp_path / "term")
  p = _run_toy(wd, 200, sleep=0.3, wait=False)
  _wait_for_checkpoint(wd, 2, p)
  p.send_signal(signal.SIGTERM)
  out, _ = p.communicate(timeout=120)
  assert p.returncode == 0, out
  assert "Signal received: checkpoint saved at step" in out
  import re

  at = int(re.search(r"checkpoint saved at step (\d+)", out).group(1))
  saved = Checkpointer(os.path.join(wd, "checkpoints")).all_steps()
  assert max(saved) == at and at < 200  # saved at the signal, then stopped
  assert "'preempted': True" in out
  # Re-running resumes from that step.
  p = _run_toy(wd, at + 1)


def test_batch_not_divisible_by_devices_is_a_clear_error(num_devices):
  mesh = make_mesh()
  with pytest.raises(ValueError, match=r"cannot be split over the 8 devices.*multiple of 8"):
    to_global_batch({"x": np.zeros((100, 3))}, mesh)


def test_state_partition_shards_a_head_over_model_axis(num_devices):
  """A task can place a class-parallel head on the ``model`` axis; the step keeps that sharding
  and matches the replicated step numerically."""
  from jax.sharding import PartitionSpec as P

  def make(partition):
    def init(rng, batch):
      return {"w": jax.random.normal(rng, (8, 3)) * 0.1}, {}, {}

    def loss_fn(params, model_state, extra, batch, rng, step):
      logits = batch["x"] @ params["w"].T
      y = jax.nn.one_hot(batch["y"], 8)
      return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(logits), -1)), {}

    def state_partition(abstract):
      specs = jax.tree.map(lambda _: P(), abstract)
      return specs.replace(params={"w": P("model")}) if partition else specs

    return Task(init=init, loss_fn=loss_fn, state_partition=state_partition)

  cfg = toy_config()
  mesh = make_mesh(data=4, model=2)
  rng = np.random.default_rng(0)
  batch = {"x": rng.normal(size=(8, 3)).astype(np.float32), "y": rng.integers(0, 8, 8)}
  out = {}
  for partition in (True, False):
    task = make(partition)
    tx, sched = make_optimizer(cfg.optim, 10)
    gb = to_global_batch(batch, mesh)
    state, sh = create_train_state(task, tx, jax.random.PRNGKey(0), gb, mesh)
    step = make_train_step(task, tx, sched, mesh, sh)
    state, _ = step(state, gb)
    out[partition] = state
  w = out[True].params["w"]
  assert w.sharding.spec == P("model") and w.addressable_shards[0].data.shape == (4, 3)
  np.testing.assert_allclose(w, out[False].params["w"], rtol=1e-6, atol=1e-7)


def test_mesh_data_uses_the_first_devices(tmp_path):
  import ml_collections

  assert jax.device_count() > 1
  task = classification_task(ToyNet(), num_classes=4)
  data = ToyData()
  cfg = toy_config(num_steps=2, checkpoint_every=0)
  cfg.mesh = ml_collections.ConfigDict(dict(model=1, data=1))
  _, state = train_and_evaluate(
    cfg, str(tmp_path), task, data, lambda: data.eval_batches(), progress=False, return_state=True
  )
  for leaf in jax.tree.leaves(state.params):
    assert leaf.sharding.device_set == {jax.devices()[0]}
  cfg.mesh.data = jax.device_count() + 1
  with pytest.raises(ValueError, match="needs"):
    train_and_evaluate(cfg, str(tmp_path / "b"), task, data, lambda: data.eval_batches())
