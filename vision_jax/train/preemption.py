"""A process-wide stop request: SIGTERM/SIGINT ask the trainer to stop at the next safe point.

Cluster schedulers (Slurm, Kubernetes, TPU maintenance events) send SIGTERM and kill the process a
grace period later; Ctrl-C sends SIGINT. :func:`install_handlers` turns both into a flag instead
of killing the process, and the code that can stop safely polls :func:`requested`:

- the train loop (:func:`vision_jax.train.train_and_evaluate`) checks before its first step, after
  every step and after the last step; it saves a checkpoint (and waits for it), does not write
  ``summary.json`` and returns ``{"preempted": True, "step": s}``;
- the sweep harness (:func:`vision_jax.train.run_sweep`) checks between runs and turns a
  preempted run into :class:`Preempted`;
- the launcher (:func:`vision_jax.utils.launch`) catches :class:`Preempted`, prints the command
  that resumes, and exits with status 0.

A request is reported once: whoever turns it into a preempted result (the loop's return, the
sweep's or the launcher's :class:`Preempted`) clears it, so a later call in the same process (a
notebook cell re-run after an interrupt) trains again. A second signal while a request is
pending stops the process the ordinary way (SIGINT raises ``KeyboardInterrupt``, SIGTERM
terminates), for when the safe point is too far away.

Choice: with several processes (multi-host), :func:`requested_everywhere` combines the flags of
all processes so that every host stops at the same step; a host that did not get the signal
stops too.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_lock = threading.Lock()
_event = threading.Event()
_received: list[int] = []  # signal numbers of the pending request, in arrival order
_previous: dict[int, object] = {}  # handlers replaced by install_handlers


class Preempted(Exception):  # noqa: N818 - the name says what happened, like KeyboardInterrupt
  """A run or sweep stopped on a stop request; its state is saved and re-running resumes it.

  Attributes:
    step: the step at which the run stopped and was checkpointed (``None`` when it stopped
      before a run started, e.g. between two runs of a sweep).
    workdir: the run's (or sweep's) output directory.
  """

  def __init__(self, step: int | None, workdir: str | None):
    self.step = None if step is None else int(step)
    self.workdir = workdir
    where = f" in {workdir}" if workdir else ""
    if self.step is None:
      msg = f"Preempted before the run started{where}"
    else:
      msg = f"Preempted at step {self.step}{where}; the checkpoint of that step is saved"
    super().__init__(msg + "; re-run the same command to resume.")


def _handler(signum, frame):
  del frame
  if _event.is_set():
    # Second signal: the user (or the scheduler) does not want to wait for the safe point.
    restore_handlers()
    if signum == signal.SIGINT:
      raise KeyboardInterrupt
    os.kill(os.getpid(), signum)
    return
  _received.append(signum)
  _event.set()
  name = signal.Signals(signum).name
  msg = (
    f"\n{name} received: stopping at the next safe point (the train loop saves a checkpoint at "
    f"the current step). Send {name} again to stop immediately.\n"
  )
  # os.write, not print: the handler may interrupt a buffered write to stderr (the progress bar),
  # and re-entering a buffered stream raises.
  try:
    os.write(sys.stderr.fileno(), msg.encode())
  except (OSError, ValueError, AttributeError):
    pass


def install_handlers() -> bool:
  """Makes SIGTERM and SIGINT set the stop request instead of killing the process.

  Idempotent. Python delivers signals to the main thread only, so a call from another thread
  does nothing.

  Returns:
    True if the handlers are installed (now or earlier), False if called off the main thread.
  """
  if threading.current_thread() is not threading.main_thread():
    return False
  with _lock:
    for sig in _SIGNALS:
      current = signal.getsignal(sig)
      if current is not _handler:
        _previous[sig] = current
        signal.signal(sig, _handler)
  return True


def restore_handlers() -> None:
  """Puts back the handlers that :func:`install_handlers` replaced (main thread only)."""
  if threading.current_thread() is not threading.main_thread():
    return
  with _lock:
    for sig, old in list(_previous.items()):
      if signal.getsignal(sig) is _handler:
        signal.signal(sig, old if old is not None else signal.SIG_DFL)
      del _previous[sig]


def requested() -> bool:
  """True if this process got SIGTERM/SIGINT since the last :func:`clear`."""
  return _event.is_set()


def requested_everywhere() -> bool:
  """:func:`requested` of any process (all processes must call it at the same point)."""
  if _process_count() == 1:
    return requested()
  import numpy as np
  from jax.experimental import multihost_utils

  flags = multihost_utils.process_allgather(np.int32(requested()))
  return bool(np.any(flags))


def received() -> list[str]:
  """Names of the signals of the pending request, e.g. ``["SIGTERM"]``."""
  return [signal.Signals(s).name for s in _received]


def clear() -> None:
  """Forgets the pending request (the code that reported it calls this; tests too)."""
  _received.clear()
  _event.clear()


def _process_count() -> int:
  if "jax" not in sys.modules:
    return 1
  import jax

  return jax.process_count()
