"""The process-wide stop request and the launcher's handling of it."""

import os
import signal
import threading
import time

import pytest

from vision_jax.train import Preempted, preemption
from vision_jax.utils import launch


@pytest.fixture(autouse=True)
def _handlers():
  preemption.restore_handlers()  # from a train loop run earlier in this process
  preemption.clear()
  before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
  yield
  preemption.restore_handlers()
  preemption.clear()
  assert {s: signal.getsignal(s) for s in before} == before


def _deliver(sig):
  os.kill(os.getpid(), sig)
  time.sleep(0.05)  # Python runs the handler in the main thread at the next bytecode boundary


def test_sigterm_and_sigint_set_the_flag_instead_of_exiting():
  assert preemption.install_handlers() and preemption.install_handlers()  # idempotent
  assert not preemption.requested()
  _deliver(signal.SIGTERM)
  assert preemption.requested() and preemption.received() == ["SIGTERM"]
  assert preemption.requested_everywhere()  # one process: the local flag
  preemption.clear()
  assert not preemption.requested() and preemption.received() == []
  _deliver(signal.SIGINT)
  assert preemption.requested() and preemption.received() == ["SIGINT"]


def test_second_signal_stops_the_ordinary_way():
  preemption.install_handlers()
  _deliver(signal.SIGINT)
  with pytest.raises(KeyboardInterrupt):
    _deliver(signal.SIGINT)
  # The handlers are back to what they were, so a third Ctrl-C behaves as without us.
  assert signal.getsignal(signal.SIGINT) is not preemption._handler


def test_install_off_the_main_thread_does_nothing():
  out = []
  t = threading.Thread(target=lambda: out.append(preemption.install_handlers()))
  t.start()
  t.join()
  assert out == [False] and signal.getsignal(signal.SIGTERM) is not preemption._handler


def test_preempted_message_says_where_and_how_to_resume():
  e = Preempted(12, "/runs/x/closed/softmax")
  assert e.step == 12 and e.workdir == "/runs/x/closed/softmax"
  assert str(e) == (
    "Preempted at step 12 in /runs/x/closed/softmax; the checkpoint of that step is saved; "
    "re-run the same command to resume."
  )
  assert "before the run started" in str(Preempted(None, "/w"))


_ARGV = ["--preset=smoke", "--host_allocator=default"]


@pytest.mark.parametrize(
  "outcome", ["raise", "return"], ids=["Preempted raised", "loop summary returned"]
)
def test_launch_prints_resume_command_and_returns(tmp_path, capsys, outcome):
  wd = str(tmp_path / "w")

  def run(cfg, workdir):
    assert workdir == wd and cfg.preset == "smoke"
    assert signal.getsignal(signal.SIGTERM) is preemption._handler  # installed first thing
    if outcome == "raise":
      raise Preempted(5, os.path.join(workdir, "s", "m"))
    return {"preempted": True, "step": 5}

  report = lambda cfg, r: pytest.fail("no report for a preempted run")
  out = launch("classification", run, report, [*_ARGV, f"--workdir={wd}"])
  where = os.path.join(wd, "s", "m") if outcome == "raise" else wd
  assert out == {"preempted": True, "step": 5, "workdir": where}
  printed = capsys.readouterr().out
  cmd = f"-m experiments.classification --preset=smoke --host_allocator=default --workdir={wd}"
  assert f"Preempted at step 5 in {where}; resume with: cd {os.getcwd()} && " in printed
  assert printed.rstrip().endswith(cmd)


def test_launch_with_a_request_from_setup_does_not_start(tmp_path, capsys):
  preemption._event.set()  # as if SIGTERM had arrived while parsing flags / initialising JAX
  out = launch(
    "classification",
    lambda cfg, wd: pytest.fail("run must not start"),
    argv=[*_ARGV, f"--workdir={tmp_path}"],
  )
  assert out["preempted"] and out["step"] is None
  assert "Preempted before training started in" in capsys.readouterr().out
  assert not preemption.requested()
