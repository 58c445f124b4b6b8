"""The sweep harness: skip finished runs, stop on preemption, resume to the same results."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.train.toy import ToyData, ToyNet, toy_config
from vision_jax.train import (
  Checkpointer,
  Preempted,
  SweepRun,
  preemption,
  read_summary,
  run_sweep,
  train_and_evaluate,
)
from vision_jax.train.classification import classification_task

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _no_pending_request():
  preemption.clear()
  yield
  preemption.clear()


class _Counter:
  def __init__(self, out):
    self.out, self.calls = out, []

  def __call__(self, wd):
    self.calls.append(wd)
    return dict(self.out) if isinstance(self.out, dict) else self.out


def test_results_nest_by_key_and_finished_runs_are_skipped(tmp_path, capsys):
  fns = {
    ("s1", "m1"): _Counter({"eval": {"acc": 0.5}, "arr": np.arange(3)}),
    ("s1", "m2"): _Counter({"eval": {"acc": 0.75}}),
    ("s2", "m1"): _Counter({"eval": {"acc": 1.0}, "t": (1, 2)}),
  }
  runs = [SweepRun(key=k, fn=f) for k, f in fns.items()]
  done = []
  res = run_sweep(str(tmp_path), runs, on_done=lambda k, s: done.append(k))
  expected = {
    "s1": {"m1": {"eval": {"acc": 0.5}, "arr": [0, 1, 2]}, "m2": {"eval": {"acc": 0.75}}},
    "s2": {"m1": {"eval": {"acc": 1.0}, "t": [1, 2]}},
  }
  assert res == expected
  assert done == list(fns)
  with open(tmp_path / "results.json") as f:
    assert json.load(f) == expected
  # fn does not go through the train loop, so the harness wrote each run's summary.json.
  assert read_summary(str(tmp_path / "s1" / "m2")) == {"eval": {"acc": 0.75}}
  assert [len(f.calls) for f in fns.values()] == [1, 1, 1]
  assert fns[("s2", "m1")].calls == [str(tmp_path / "s2" / "m1")]
  out = capsys.readouterr().out
  assert "[2/3] s1/m2: running" in out
  # Second sweep: nothing re-runs, same results.
  res2 = run_sweep(str(tmp_path), runs)
  assert res2 == expected and [len(f.calls) for f in fns.values()] == [1, 1, 1]
  assert "[3/3] s2/m1: done earlier, skipped" in capsys.readouterr().out
  assert not (tmp_path / "comparison.png").exists()  # no run has a metrics.jsonl


def test_preempted_run_raises_stops_the_sweep_and_reruns_next_time(tmp_path):
  first = _Counter({"eval": {"acc": 0.5}})
  second = _Counter({"preempted": True, "step": 7})
  third = _Counter({"eval": {"acc": 1.0}})
  runs = [SweepRun(("a",), first), SweepRun(("b",), second), SweepRun(("c",), third)]
  with pytest.raises(Preempted, match=r"step 7 in .*b; .*re-run the same command") as e:
    run_sweep(str(tmp_path), runs)
  assert e.value.step == 7 and e.value.workdir == str(tmp_path / "b")
  assert third.calls == [] and not os.path.exists(tmp_path / "b" / "summary.json")
  with open(tmp_path / "results.json") as f:
    assert json.load(f) == {"a": {"eval": {"acc": 0.5}}}  # the finished part
  second.out = {"eval": {"acc": 0.25}}  # the resumed run finishes this time
  res = run_sweep(str(tmp_path), runs)
  assert res == {
    "a": {"eval": {"acc": 0.5}},
    "b": {"eval": {"acc": 0.25}},
    "c": {"eval": {"acc": 1.0}},
  }
  assert (len(first.calls), len(second.calls), len(third.calls)) == (1, 2, 1)


def test_signal_between_runs_stops_before_the_next_run(tmp_path):
  def signalled(wd):
    os.kill(os.getpid(), signal.SIGTERM)  # the harness installed its handler: a flag, no exit
    time.sleep(0.05)  # the handler runs in the main thread at the next bytecode
    return {"eval": {"acc": 0.5}}

  later = _Counter({"eval": {"acc": 1.0}})
  runs = [SweepRun(("a",), signalled), SweepRun(("b",), later)]
  try:
    with pytest.raises(Preempted, match="before the run started") as e:
      run_sweep(str(tmp_path), runs)
  finally:
    preemption.restore_handlers()
  assert e.value.step is None and later.calls == []
  assert read_summary(str(tmp_path / "a")) == {"eval": {"acc": 0.5}}  # finished: recorded
  assert not preemption.requested()  # reported once


@pytest.mark.parametrize(
  "content", ['{"preempted": true, "step": 3}', '{"eval": {"acc"', "[1, 2]"], ids=str
)
def test_preempted_or_torn_summary_is_not_finished(tmp_path, content):
  os.makedirs(tmp_path / "a")
  (tmp_path / "a" / "summary.json").write_text(content)
  assert read_summary(str(tmp_path / "a")) is None
  fn = _Counter({"eval": {"acc": 0.5}})
  assert run_sweep(str(tmp_path), [SweepRun(("a",), fn)]) == {"a": {"eval": {"acc": 0.5}}}
  assert len(fn.calls) == 1 and read_summary(str(tmp_path / "a")) == {"eval": {"acc": 0.5}}


def test_bad_runs_are_clear_errors(tmp_path):
  f = _Counter({})
  with pytest.raises(ValueError, match=r"runs\[1\].key=\('a',\) repeats runs\[0\]"):
    run_sweep(str(tmp_path), [SweepRun(("a",), f), SweepRun(("a",), f)])
  with pytest.raises(ValueError, match="one is a prefix of the other"):
    run_sweep(str(tmp_path), [SweepRun(("a",), f), SweepRun(("a", "b"), f)])
  with pytest.raises(ValueError, match="non-empty tuple of non-empty strings"):
    run_sweep(str(tmp_path), [SweepRun(["a"], f)])
  with pytest.raises(ValueError, match="share the directory"):
    run_sweep(str(tmp_path), [SweepRun(("a",), f), SweepRun(("b",), f, subdir="a")])
  with pytest.raises(TypeError, match="fn returned a list"):
    run_sweep(str(tmp_path), [SweepRun(("x",), _Counter([1]))])


def test_subdir_sets_the_run_directory(tmp_path):
  fn = _Counter({"v": 1})
  res = run_sweep(str(tmp_path), [SweepRun(("16", "dmuh"), fn, subdir="16bits/dmuh")])
  assert res == {"16": {"dmuh": {"v": 1}}} and fn.calls == [str(tmp_path / "16bits" / "dmuh")]


def test_finished_run_with_another_config_is_refused(tmp_path):
  fn = _Counter({"v": 1})
  cfg = {"k": 16, "data": {"n": (1, 2)}}
  run_sweep(str(tmp_path), [SweepRun(("a",), fn, config=cfg)])
  # Same settings (a tuple stored as a JSON list is the same): skipped.
  run_sweep(str(tmp_path), [SweepRun(("a",), fn, config={"k": 16, "data": {"n": [1, 2]}})])
  assert len(fn.calls) == 1
  with pytest.raises(
    ValueError, match=r"sweep run a in .* different config \(changed keys: data.n, k\)"
  ):
    run_sweep(str(tmp_path), [SweepRun(("a",), fn, config={"k": 32, "data": {"n": (1, 3)}})])
  assert len(fn.calls) == 1


# --- The train loop inside the sweep -----------------------------------------------------------


def _toy_run(wd, num_steps=4, finalize=None, **kw):
  import dataclasses

  task = dataclasses.replace(classification_task(ToyNet(), num_classes=4), finalize=finalize)
  data = ToyData()
  cfg = toy_config(num_steps=num_steps)
  return train_and_evaluate(cfg, wd, task, data, lambda: data.eval_batches(), progress=False, **kw)


def _logged_run(wd):
  """A run that logs train rows the way the loop does (metrics.jsonl), without training."""
  os.makedirs(wd, exist_ok=True)
  with open(os.path.join(wd, "metrics.jsonl"), "w") as f:
    f.writelines(
      json.dumps({"split": "train", "step": t, "loss": 1.0 / t}) + "\n" for t in (1, 2, 3)
    )
  return {"eval": {"accuracy": 0.75}}


def test_sweep_draws_the_comparison_of_the_runs_with_metrics(tmp_path, monkeypatch):
  from vision_jax.train import writers

  drawn = []
  real = writers.plot_comparison
  monkeypatch.setattr(
    writers, "plot_comparison", lambda runs, out: drawn.append(runs) or real(runs, out)
  )
  runs = [
    SweepRun(key=("toy", "logged"), fn=_logged_run),
    SweepRun(key=("toy", "closed_form"), fn=_Counter({"eval": {"accuracy": 0.5}})),
  ]
  run_sweep(str(tmp_path), runs)
  assert drawn == [{"toy/logged": str(tmp_path / "toy" / "logged")}]  # only the run with metrics
  with open(tmp_path / "comparison.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  (tmp_path / "comparison.png").unlink()
  run_sweep(str(tmp_path), runs)  # all skipped: the figure is drawn again from the run dirs
  assert (tmp_path / "comparison.png").stat().st_size > 0 and len(drawn) == 2
  run_sweep(str(tmp_path / "off"), runs, comparison=None)
  assert len(drawn) == 2 and not (tmp_path / "off" / "comparison.png").exists()


def test_request_before_first_step_returns_without_training(tmp_path):
  wd = str(tmp_path / "run")
  preemption._event.set()  # as if SIGTERM had arrived during setup
  out = _toy_run(wd)
  assert out == {"preempted": True, "step": 0}
  assert not preemption.requested()  # the loop reported it
  assert Checkpointer(os.path.join(wd, "checkpoints")).all_steps() == []
  assert not os.path.exists(os.path.join(wd, "summary.json"))


def _finalize(state):
  import jax
  import jax.numpy as jnp

  w = jax.tree.leaves(state.params)[0]
  return {"w_sum": jnp.sum(w), "w_shape": np.asarray(w.shape), "nested": {"k": (1.5, "x")}}


def test_request_after_last_step_saves_then_resume_gives_the_same_summary(tmp_path, monkeypatch):
  import jax

  ref_dir = str(tmp_path / "ref")
  ref, state = _toy_run(ref_dir, finalize=_finalize, return_state=True)
  # finalize(state) went into summary.json as JSON: arrays as lists, tuples as lists.
  with open(os.path.join(ref_dir, "summary.json")) as f:
    disk = json.load(f)
  assert disk["nested"] == {"k": [1.5, "x"]} and disk["eval"] == ref["eval"]
  w = np.asarray(jax.device_get(jax.tree.leaves(state.params)[0]))
  assert disk["w_shape"] == list(w.shape)
  np.testing.assert_allclose(disk["w_sum"], np.sum(w, dtype=np.float64), rtol=1e-5)

  # The loop asks once before the first step, once per step, and once after the last step.
  calls = []
  real = preemption.requested_everywhere
  monkeypatch.setattr(
    preemption, "requested_everywhere", lambda: calls.append(1) or len(calls) == 1 + 4 + 1
  )
  wd = str(tmp_path / "run")
  out = _toy_run(wd, finalize=_finalize)
  assert out["preempted"] and out["step"] == 4 and "eval" not in out and "w_sum" not in out
  assert Checkpointer(os.path.join(wd, "checkpoints")).all_steps()[-1] == 4
  assert not os.path.exists(os.path.join(wd, "summary.json"))
  monkeypatch.setattr(preemption, "requested_everywhere", real)
  out = _toy_run(wd, finalize=_finalize)  # resumes at step 4: no step runs, save + eval only
  drop = lambda s: {k: v for k, v in s.items() if k != "seconds"}
  # Same process, same executables: the resumed summary is bitwise the uninterrupted one.
  assert drop(out) == drop(ref)


# --- A real signal sent to a real sweep subprocess --------------------------------------------


def _env(**extra):
  return dict(
    os.environ,
    XLA_FLAGS="--xla_force_host_platform_device_count=2",
    PYTHONPATH=REPO,
    JAX_PLATFORMS="cpu",
    **{k: str(v) for k, v in extra.items()},
  )


def _start(workdir, cache, log, **env_extra):
  env = _env(**env_extra)
  cmd = [
    sys.executable,
    "-m",
    "tests.train.toy_sweep",
    "--preset=smoke",
    f"--workdir={workdir}",
    f"--compilation_cache={cache}",
    "--host_allocator=default",
  ]
  f = open(log, "w")
  return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, text=True)


def _finish(p, log, timeout=300):
  p.wait(timeout=timeout)
  out = open(log).read()
  assert p.returncode == 0, out
  return out


def _wait_for(pred, p, log, timeout=240):
  t0 = time.time()
  while time.time() - t0 < timeout:
    if pred():
      return
    if p.poll() is not None:
      raise AssertionError("sweep exited early:\n" + open(log).read())
    time.sleep(0.05)
  raise AssertionError("timed out:\n" + open(log).read())


def _resume(out, log, **env_extra):
  """Runs the exact command the preempted sweep printed."""
  cmd = re.search(r"resume with: (.*)$", out, re.M).group(1)
  env = _env(**env_extra)
  assert cmd.startswith("cd ") and " && " in cmd, cmd
  f = open(log, "w")
  # exec: the signal must reach python, not the shell.
  cmd = cmd.replace(" && ", " && exec ", 1)
  return subprocess.Popen(["bash", "-c", cmd], env=env, stdout=f, stderr=subprocess.STDOUT)


def _steps(run_dir):
  d = os.path.join(run_dir, "checkpoints")
  return sorted(int(s) for s in os.listdir(d) if s.isdigit()) if os.path.isdir(d) else []


def _table(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    res = json.load(f)
  for s in res["toy"].values():
    s.pop("seconds")  # wall time
  return res


def test_sigterm_in_setup_then_mid_loop_resumes_to_the_uninterrupted_results(tmp_path):
  cache = str(tmp_path / "xla_cache")
  ref = str(tmp_path / "ref")
  out_ref = _finish(_start(ref, cache, tmp_path / "ref.log"), tmp_path / "ref.log")
  assert "| c |" in out_ref

  # (a) SIGTERM while run 2 is still in its setup (before train_and_evaluate's first step).
  wd = str(tmp_path / "sweep")
  log = tmp_path / "1.log"
  p = _start(wd, cache, log, TOY_SETUP_SLEEP=4)
  _wait_for(lambda: "setup of " + os.path.join(wd, "toy", "b") in open(log).read(), p, log)
  p.send_signal(signal.SIGTERM)
  out = _finish(p, log)
  assert f"Preempted at step 0 in {os.path.join(wd, 'toy', 'b')}; resume with: cd " in out, out
  assert "Traceback" not in out and "| a |" not in out  # no table for a partial sweep
  assert read_summary(os.path.join(wd, "toy", "a")) is not None
  assert _steps(os.path.join(wd, "toy", "b")) == []
  assert not os.path.exists(os.path.join(wd, "toy", "c"))
  assert not os.path.exists(os.path.join(wd, "comparison.png"))  # drawn only by a full sweep
  assert os.path.exists(os.path.join(ref, "comparison.png"))

  # (b) The printed command resumes; SIGTERM mid-step-loop of run 2.
  log = tmp_path / "2.log"
  p = _resume(out, log, TOY_STEP_SLEEP=0.25)
  run_b = os.path.join(wd, "toy", "b")
  _wait_for(lambda: any(s >= 2 for s in _steps(run_b)), p, log)
  p.send_signal(signal.SIGTERM)
  out = _finish(p, log)
  assert "[1/3] toy/a: done earlier, skipped" in out
  at = int(re.search(r"Preempted at step (\d+) in .*toy/b; resume with: ", out).group(1))
  assert 2 <= at < 12 and max(Checkpointer(os.path.join(run_b, "checkpoints")).all_steps()) == at
  assert f"checkpoint saved at step {at}" in out
  assert read_summary(os.path.join(wd, "toy", "b")) is None
  assert not os.path.exists(os.path.join(wd, "toy", "c"))

  # (c) Resume again: run 2 continues from its checkpoint, run 3 runs, the sweep finishes.
  log = tmp_path / "3.log"
  out = _finish(_resume(out, log), log)
  assert f"at step {at}" in out and "[3/3] toy/c: running" in out and "Total wall time" in out
  # Bitwise: same machine, same executables (the loop's resume is bitwise, eval is a function
  # of the final state).
  assert _table(wd) == _table(ref)
  table = lambda o: o[o.index("| run |") : o.index("Total wall time")]
  assert table(out) == table(out_ref)
