"""Resume safety: corrupt checkpoints are set aside, one run per workdir, config checks on resume,
and validation of the trainer's config sections before any work."""

import json
import os
import signal
import socket
import warnings

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from tests.train.test_loop import _final_params, _run_toy, _wait_for_checkpoint
from tests.train.toy import ToyData, ToyNet, toy_config
from vision_jax.train import Checkpointer, abstract_with_shardings, read_metrics, train_and_evaluate
from vision_jax.train.checkpoint import CheckpointMismatchError
from vision_jax.train.classification import classification_task
from vision_jax.train.validate import validate_config
from vision_jax.train.workdir import SAFE_TO_CHANGE, WorkdirLock, WorkdirLockedError, config_diff
from vision_jax.utils.config import ConfigError, parse_launch_args


def _cfg(num_steps=4, **train):
  cfg = toy_config(num_steps, **train)
  cfg.model = ml_collections.ConfigDict(dict(num_classes=4, widths=(8,)))
  return cfg


def _task(cfg):
  n = int(cfg.model.num_classes)
  return classification_task(ToyNet(num_classes=n), num_classes=n)


def _train(cfg, wd, **kw):
  return train_and_evaluate(cfg, str(wd), _task(cfg), ToyData(), progress=False, **kw)


def _corrupt_arrays(step_dir):
  """Deletes the array data of a step's ``state`` item, keeping its tree metadata."""
  for root, _, files in os.walk(os.path.join(step_dir, "state")):
    for f in files:
      if not f.startswith("_"):
        os.remove(os.path.join(root, f))


def _single_device_target(tree):
  sh = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(jax.devices()[0]), tree)
  return abstract_with_shardings(jax.eval_shape(lambda t: t, tree), sh)


# --- corrupt checkpoints ---------------------------------------------------------------------


def test_corrupt_latest_is_set_aside_rewritten_and_resumed_from(tmp_path):
  ref, wd = tmp_path / "ref", tmp_path / "run"
  _train(_cfg(4), ref)
  _train(_cfg(4), wd)
  ck_dir = wd / "checkpoints"
  _corrupt_arrays(str(ck_dir / "4"))
  with pytest.warns(RuntimeWarning, match=r"moved the unreadable newer step\(s\) aside"):
    out = _train(_cfg(4), wd)  # falls back to step 2, retrains 3..4, saves a good step 4
  assert out["step"] == 4
  aside = [d for d in os.listdir(ck_dir) if d.startswith("corrupt-4-")]
  assert len(aside) == 1
  assert Checkpointer(str(ck_dir)).all_steps() == [2, 4]
  # The rewritten step 4 is the uninterrupted run's step 4 (same code, same machine: bitwise).
  for a, b in zip(
    jax.tree.leaves(_final_params(str(ref), 4)), jax.tree.leaves(_final_params(str(wd), 4))
  ):
    np.testing.assert_array_equal(a, b)
  # The next run resumes from the good step 4 without any fallback.
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    _train(_cfg(6), wd)
  assert not [w for w in caught if "could not be restored" in str(w.message)]
  train_steps = [
    r["step"] for r in read_metrics(str(wd / "metrics.jsonl")) if r["split"] == "train"
  ]
  assert train_steps == [1, 2, 3, 4, 5, 6]


def test_unreadable_metadata_counts_as_corrupt(tmp_path):
  ck = Checkpointer(str(tmp_path / "ck"), keep=5)
  ck.save(1, {"w": jnp.arange(6.0)}, wait=True)
  ck.save(2, {"w": jnp.arange(6.0) + 1}, wait=True)
  os.remove(tmp_path / "ck" / "2" / "state" / "_METADATA")
  with pytest.warns(RuntimeWarning, match="step 2"):
    restored, _, step = ck.restore_latest(_single_device_target({"w": jnp.zeros(6)}))
  assert step == 1 and ck.all_steps() == [1]
  np.testing.assert_array_equal(restored["w"], np.arange(6.0))
  ck.close()


def test_every_step_unreadable_is_an_error_and_moves_nothing(tmp_path):
  ck = Checkpointer(str(tmp_path / "ck"), keep=5)
  ck.save(1, {"w": jnp.arange(6.0)}, wait=True)
  _corrupt_arrays(str(tmp_path / "ck" / "1"))
  with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match="no checkpoint in .* could"):
    ck.restore_latest(_single_device_target({"w": jnp.zeros(6)}))
  assert ck.all_steps() == [1]
  ck.close()


def test_structure_mismatch_names_leaves_and_moves_nothing(tmp_path):
  ck = Checkpointer(str(tmp_path / "ck"), keep=5)
  ck.save(1, {"w": jnp.arange(6.0), "b": jnp.zeros(2)}, wait=True)
  target = _single_device_target({"w": jnp.zeros(7), "c": jnp.zeros(2)})
  with pytest.raises(CheckpointMismatchError) as e:
    ck.restore_latest(target)
  msg = str(e.value)
  assert str(tmp_path / "ck") in msg and "config changed" in msg
  assert "w: checkpoint float32[6], this task float32[7]" in msg
  assert "b: in the checkpoint" in msg and "c: in this task's state" in msg
  assert ck.all_steps() == [1] and not [d for d in os.listdir(tmp_path / "ck") if "corrupt" in d]
  ck.close()


def test_keep_zero_checkpoints_is_refused(tmp_path):
  with pytest.raises(ValueError, match="keep=0"):
    Checkpointer(str(tmp_path / "ck"), keep=0)


# --- config on resume ------------------------------------------------------------------------


def test_config_diff_normalises_tuples_and_names_keys():
  old = {"model": {"widths": [8, 16]}, "optim": {"lr": 0.1}, "seed": 0}
  new = {"model": {"widths": (8, 16)}, "optim": {"lr": 0.5}, "seed": 0, "extra": 1}
  assert config_diff(old, new) == {"extra": ("<absent>", 1), "optim.lr": (0.1, 0.5)}


def test_changed_lr_is_refused_unless_allowed(tmp_path):
  wd = tmp_path / "run"
  _train(_cfg(2), wd)
  before = (wd / "config.json").read_bytes()
  cfg = _cfg(4)
  cfg.optim.lr, cfg.seed = 0.5, 3
  with pytest.raises(ConfigError) as e:
    _train(cfg, wd)
  msg = str(e.value)
  assert "optim.lr: 0.1 -> 0.5" in msg and "seed: 0 -> 3" in msg and "--allow_config_change" in msg
  assert "train.num_steps" not in msg.split("Only")[0]  # a safe key is not reported as refused
  assert (wd / "config.json").read_bytes() == before  # never overwritten before the check
  assert Checkpointer(str(wd / "checkpoints")).all_steps() == [2]
  out = _train(cfg, wd, allow_config_change=True)
  assert out["step"] == 4
  assert json.loads((wd / "config.json").read_text())["optim"]["lr"] == 0.5
  (record,) = [json.loads(line) for line in open(wd / "config_history.jsonl")]
  assert record["resuming"] and record["changes"]["optim.lr"] == {"old": 0.1, "new": 0.5}
  assert record["changes"]["train.num_steps"] == {"old": 2, "new": 4}


def test_safe_keys_may_change_and_are_recorded(tmp_path):
  wd = tmp_path / "run"
  _train(_cfg(2), wd)
  cfg = _cfg(4, log_every=2, checkpoint_every=1, keep_checkpoints=3, prefetch=1)
  assert {f"train.{k}" for k in ("num_steps", "log_every", "keep_checkpoints")} <= set(
    SAFE_TO_CHANGE
  )
  assert _train(cfg, wd)["step"] == 4
  (record,) = [json.loads(line) for line in open(wd / "config_history.jsonl")]
  assert set(record["changes"]) == {
    "train.num_steps",
    "train.log_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.prefetch",
  }


def test_changed_model_fails_plainly_and_keeps_the_old_config(tmp_path):
  wd = tmp_path / "run"
  _train(_cfg(2), wd)
  before = (wd / "config.json").read_bytes()
  cfg = _cfg(4)
  cfg.model.num_classes = 5
  with pytest.raises(ConfigError, match=r"model.num_classes: 4 -> 5"):
    _train(cfg, wd)
  # Even with the override, a changed state structure cannot resume: a plain error naming the
  # checkpoint directory and the changed key, and config.json is put back.
  with pytest.raises(CheckpointMismatchError) as e:
    _train(cfg, wd, allow_config_change=True)
  msg = str(e.value)
  assert str(wd / "checkpoints") in msg and "model.num_classes: 4 -> 5" in msg
  assert "params.Dense_0.kernel: checkpoint float32[8, 4], this task float32[8, 5]" in msg
  assert "strict" not in msg
  assert (wd / "config.json").read_bytes() == before
  assert not os.path.exists(wd / "config_history.jsonl")
  assert Checkpointer(str(wd / "checkpoints")).all_steps() == [2]
  assert _train(_cfg(4), wd)["step"] == 4  # the old config still resumes


def test_same_config_changed_code_says_the_code_changed(tmp_path):
  wd = tmp_path / "run"
  _train(_cfg(2), wd)
  cfg = _cfg(4)
  task = classification_task(ToyNet(num_classes=6), num_classes=6)
  with pytest.raises(CheckpointMismatchError, match="the code that builds the state"):
    train_and_evaluate(cfg, str(wd), task, ToyData(), progress=False)


# --- validation ------------------------------------------------------------------------------


class _NoData:
  def __getitem__(self, t):
    raise AssertionError("data was read before the config was validated")


def _bad(path, value):
  cfg = _cfg(4)
  cfg.data = ml_collections.ConfigDict(dict(global_batch_size=16, eval_batch_size=16))
  cfg.mesh = ml_collections.ConfigDict(dict(model=1))
  cfg.optim_d = ml_collections.ConfigDict(dict(name="adam", lr=1e-3, b1=0.5, b2=0.999))
  *parents, leaf = path.split(".")
  node = cfg
  for p in parents:
    node = node[p]
  with cfg.unlocked():
    node[leaf] = value
  return cfg


BAD = [
  ("train.keep_checkpoints", 0),
  ("train.num_steps", -5),
  ("train.num_steps", 0),
  ("train.log_every", 0),
  ("train.eval_every", -1),
  ("train.checkpoint_every", -2),
  ("optim.lr", -0.5),
  ("optim.lr", float("nan")),
  ("optim.name", "sgdd"),
  ("optim.schedule", "cosin"),
  ("optim.warmup_steps", 5),
  ("optim.momentum", 1.0),
  ("optim_d.b1", 1.0),
  ("optim_d.b2", -0.1),
  ("optim_d.lr", -1.0),
  ("data.global_batch_size", 0),
  ("data.eval_batch_size", 0),
  ("data.eval_batch_size", 12),
  ("mesh.model", 3),
]


@pytest.mark.parametrize("key,value", BAD, ids=[f"{k}={v}" for k, v in BAD])
def test_bad_config_fails_before_any_work_naming_key_and_value(tmp_path, key, value, num_devices):
  wd = tmp_path / "run"
  cfg = _bad(key, value)
  with pytest.raises(ConfigError) as e:
    train_and_evaluate(cfg, str(wd), _task(cfg), _NoData(), progress=False)
  assert f"{key}={value!r}" in str(e.value)
  assert not os.path.exists(wd)  # nothing written, no checkpoint named -5


def test_validation_reports_every_problem_and_accepts_good_configs(num_devices):
  cfg = _bad("optim.lr", -1.0)
  cfg.train.keep_checkpoints = 0
  with pytest.raises(ConfigError) as e:
    validate_config(cfg, device_count=8)
  assert "optim.lr=-1.0" in str(e.value) and "train.keep_checkpoints=0" in str(e.value)
  validate_config(_bad("optim.lr", 0.0), device_count=8)  # lr 0 (frozen) is allowed
  # At the launcher, num_steps 0 means "derived by the experiment" (e.g. from train.epochs).
  validate_config(_bad("train.num_steps", 0), require_num_steps=False)
  from experiments.classification.config import get_config

  for preset in ("smoke", "default", "paper"):
    validate_config(get_config(preset), require_num_steps=False, device_count=8)


def test_launcher_refuses_a_bad_value_before_running(tmp_path):
  from vision_jax.utils.launch import launch

  def run(cfg, workdir):
    raise AssertionError("run() called with an invalid config")

  argv = ["--preset=smoke", f"--workdir={tmp_path}", "--config.train.keep_checkpoints=0"]
  with pytest.raises(SystemExit) as e:
    launch("classification", run, argv=argv)
  assert "train.keep_checkpoints=0" in str(e.value.code)
  _, args = parse_launch_args("classification", ["--preset=smoke", "--allow_config_change"])
  assert args.allow_config_change


# --- one run per workdir ---------------------------------------------------------------------


def test_lock_in_process_names_holder(tmp_path):
  with WorkdirLock(str(tmp_path)):
    with pytest.raises(
      WorkdirLockedError, match=rf"pid {os.getpid()} on host {socket.gethostname()}"
    ):
      WorkdirLock(str(tmp_path)).acquire()
  with WorkdirLock(str(tmp_path)):  # released on exit
    pass


def test_second_process_is_refused_and_kill9_resume_has_no_duplicate_steps(tmp_path):
  wd = str(tmp_path / "run")
  steps = 30
  first = _run_toy(wd, steps, sleep=0.5, wait=False)
  _wait_for_checkpoint(wd, 2, first)
  second = _run_toy(wd, steps, wait=False)
  out, _ = second.communicate(timeout=300)
  assert second.returncode != 0 and "WorkdirLockedError" in out, out
  assert f"pid {first.pid} on host {socket.gethostname()}" in out
  assert first.poll() is None, "the first run should still be training"
  _wait_for_checkpoint(wd, 6, first)
  first.send_signal(signal.SIGKILL)  # the kernel drops the flock with the process
  first.wait()
  saved = Checkpointer(os.path.join(wd, "checkpoints")).all_steps()
  assert saved and max(saved) < steps
  _run_toy(wd, steps)  # resumes: the lock is free again
  rows = read_metrics(os.path.join(wd, "metrics.jsonl"))
  train_steps = [r["step"] for r in rows if r["split"] == "train"]
  assert train_steps == sorted(set(train_steps)), "duplicate or out-of-order steps"
  resumed_at = max(saved)
  assert [t for t in train_steps if t > resumed_at] == list(range(resumed_at + 1, steps + 1))
  assert open(os.path.join(wd, ".lock")).read() == ""  # released (and cleared) at exit


def test_run_stopped_right_after_a_checkpoint_keeps_every_metrics_row(tmp_path):
  class StopAt4(ToyData):
    def __getitem__(self, t):
      if t == 4:  # the checkpoint at step 4 is saved, row 4 not yet written
        raise KeyboardInterrupt("stopped")
      return super().__getitem__(t)

  wd = tmp_path / "run"
  cfg = _cfg(6, checkpoint_every=4)
  with pytest.raises(KeyboardInterrupt):
    train_and_evaluate(cfg, str(wd), _task(cfg), StopAt4(), progress=False)
  assert Checkpointer(str(wd / "checkpoints")).all_steps() == [4]
  _train(cfg, wd)
  rows = read_metrics(str(wd / "metrics.jsonl"))
  assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]


def test_saving_small_replicated_arrays_compiles_nothing_and_restores_on_one_device(tmp_path):
  """Replica-parallel saving would slice every replicated array per replica (one ``jit_slice``
  compilation per shape); below the size threshold arrays are written whole, so a first save
  compiles nothing, and the checkpoint restores onto another mesh with the same values."""
  from jax.sharding import NamedSharding, PartitionSpec

  mesh = jax.make_mesh((8,), ("data",))
  rep = NamedSharding(mesh, PartitionSpec())
  host = {f"w{i}": np.arange((i + 3) * 7, dtype=np.float32).reshape(i + 3, 7) for i in range(6)}
  state = jax.block_until_ready({k: jax.device_put(v, rep) for k, v in host.items()})
  compiles = []

  def listener(name, secs, **kw):
    if name == "/jax/core/compile/backend_compile_duration":
      compiles.append(secs)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    ck = Checkpointer(str(tmp_path / "ck"))
    ck.save(1, state, wait=True)
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert compiles == []
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=one) for k, v in host.items()}
  restored, _, step = Checkpointer(str(tmp_path / "ck")).restore_latest(target)
  assert step == 1
  for k, v in host.items():
    np.testing.assert_array_equal(np.asarray(restored[k]), v)
