"""Task.program_key: runs of Tasks that differ only in state share one jitted step."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vision_jax.train import Task, train_and_evaluate


class _Data:
  def __getitem__(self, t):
    rng = np.random.default_rng(t)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    return {"x": x, "y": x @ np.array([1.0, -2.0, 0.5], np.float32)}


def _cfg(lr=0.1, steps=5):
  cfg = ml_collections.ConfigDict()
  cfg.seed = 0
  cfg.train = ml_collections.ConfigDict(
    dict(num_steps=steps, log_every=1, eval_every=0, checkpoint_every=0, keep_checkpoints=1)
  )
  cfg.optim = ml_collections.ConfigDict(dict(name="sgd", lr=lr, momentum=0.0, schedule="constant"))
  cfg.mesh = ml_collections.ConfigDict(dict(model=1, data=1))
  return cfg


def _task(scale, traces, key):
  """Regression of ``scale * y``; ``scale`` lives in ``extra`` (like a NAS search's target)."""

  def init(rng, batch):
    return {"w": jnp.zeros(3)}, {}, {"scale": jnp.asarray(scale, jnp.float32)}

  def loss_fn(params, model_state, extra, batch, rng, step):
    traces.append(scale)  # runs only while tracing
    err = batch["x"] @ params["w"] - extra["scale"] * batch["y"]
    return jnp.mean(err**2), {"model_state": model_state, "extra": extra, "metrics": {}}

  return Task(init=init, loss_fn=loss_fn, program_key=key)


def _sgd_by_hand(scale, lr=0.1, steps=5):
  w = np.zeros(3)
  data = _Data()
  for t in range(steps):
    b = data[t]
    err = b["x"] @ w - scale * b["y"]
    w = w - lr * 2 * b["x"].T @ err / len(err)
  return w


def _run(tmp_path, name, task, cfg):
  _, state = train_and_evaluate(
    cfg, str(tmp_path / name), task, _Data(), progress=False, return_state=True
  )
  return np.asarray(jax.device_get(state.params["w"]))


def test_same_key_traces_once_and_each_run_reads_its_own_state(tmp_path):
  traces = []
  key = ("test_step_cache", "shared")
  w1 = _run(tmp_path, "a", _task(1.0, traces, key), _cfg())
  w3 = _run(tmp_path, "b", _task(3.0, traces, key), _cfg())
  assert traces == [1.0], f"the second run retraced its step: {traces}"
  np.testing.assert_allclose(w1, _sgd_by_hand(1.0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(w3, _sgd_by_hand(3.0), rtol=1e-5, atol=1e-6)


def test_other_optimiser_settings_or_no_key_build_a_new_step(tmp_path):
  traces = []
  key = ("test_step_cache", "lr")
  _run(tmp_path, "a", _task(1.0, traces, key), _cfg(lr=0.1))
  w = _run(tmp_path, "b", _task(2.0, traces, key), _cfg(lr=0.05))
  assert traces == [1.0, 2.0]
  np.testing.assert_allclose(w, _sgd_by_hand(2.0, lr=0.05), rtol=1e-5, atol=1e-6)
  _run(tmp_path, "c", _task(1.0, traces, None), _cfg())
  _run(tmp_path, "d", _task(1.0, traces, None), _cfg())
  assert traces == [1.0, 2.0, 1.0, 1.0]


def test_unhashable_program_key_is_refused():
  with pytest.raises(TypeError, match=r"program_key=\[1\].*hashable"):
    Task(init=lambda r, b: None, loss_fn=lambda *a: None, program_key=[1])
