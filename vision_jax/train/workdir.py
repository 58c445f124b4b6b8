"""One run per workdir: an exclusive lock, and a config check before a run resumes.

:func:`guard_run` wraps :func:`vision_jax.train.train_and_evaluate`. Before the run does any work
it

1. validates the ``train`` / ``optim*`` / ``data`` / ``mesh`` config sections
   (:func:`vision_jax.train.validate.validate_config`);
2. takes an exclusive ``fcntl.flock`` on ``workdir/.lock`` (process 0 on multi-host) for the
   whole run and writes ``{"pid", "host", "started"}`` into it. The kernel drops the lock when
   the process exits in any way, ``kill -9`` included, so a stale lock never blocks a resume;
   a second run on the same workdir is refused at once with :class:`WorkdirLockedError`
   naming the holder's pid and host;
3. if the workdir already holds checkpoints, compares the stored ``config.json`` with the new
   config (both as JSON, so tuples and lists compare equal). Keys in :data:`SAFE_TO_CHANGE`
   may differ; any other difference is refused with a :class:`ConfigError` naming each key
   and its old -> new value, unless ``allow_config_change=True`` (launcher flag
   ``--allow_config_change``). ``config.json`` is only rewritten once the check has passed;
   an accepted change is appended to ``config_history.jsonl``;
4. if, even so, the checkpoints hold a state of another structure than the task builds
   (a changed model or optimiser), the old ``config.json`` is put back and the
   :class:`~vision_jax.train.checkpoint.CheckpointMismatchError` names the changed keys.

Choice: a workdir without checkpoints has nothing to resume, so its old ``config.json`` (from a
run that stopped before its first checkpoint) is replaced without a check; the replacement is
recorded in ``config_history.jsonl``.

Choice: ``flock`` locks are advisory and per host on some network file systems (NFS before v4,
some FUSE mounts); there the lock protects only against a second run on the same host.
"""

from __future__ import annotations

import datetime
import fcntl
import functools
import inspect
import json
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import jax

from vision_jax.train.checkpoint import CheckpointMismatchError
from vision_jax.train.validate import validate_config
from vision_jax.utils.config import ConfigError
from vision_jax.utils.runinfo import _default, package_versions, save_json

LOCK_FILE = ".lock"
CONFIG_FILE = "config.json"
HISTORY_FILE = "config_history.jsonl"

#: Config keys that may differ between a run and its resume. They only decide how long the
#: run goes and how often it logs, evaluates and checkpoints; none changes the train state's
#: structure or the batches of the steps already taken. Note: ``train.num_steps`` /
#: ``train.epochs`` also set the length of a ``cosine`` or ``linear`` schedule, which is
#: stretched from the resumed step on (the existing steps keep the lr they were trained with).
SAFE_TO_CHANGE = (
  "train.num_steps",
  "train.epochs",
  "train.log_every",
  "train.eval_every",
  "train.checkpoint_every",
  "train.keep_checkpoints",
  "train.prefetch",
  "data.eval_batch_size",
)

_allow_config_change_default = False


class WorkdirLockedError(RuntimeError):
  """Another live process holds the workdir's lock."""


def set_allow_config_change_default(allow: bool) -> None:
  """Sets what ``train_and_evaluate(allow_config_change=None)`` means in this process (the
  launcher's ``--allow_config_change`` flag)."""
  global _allow_config_change_default
  _allow_config_change_default = bool(allow)


class WorkdirLock:
  """An exclusive, non-blocking ``flock`` on ``<workdir>/.lock`` holding the owner's pid/host.

  Usable as a context manager. ``enabled=False`` (processes other than 0) makes it a no-op.

  Raises:
    WorkdirLockedError: from :meth:`acquire`, if another open file description holds the lock
      (another process, or another run in this process).
  """

  def __init__(self, workdir: str, *, enabled: bool = True):
    self.workdir = os.path.abspath(workdir)
    self.path = os.path.join(self.workdir, LOCK_FILE)
    self.enabled = enabled
    self._fd: int | None = None

  def acquire(self) -> WorkdirLock:
    if not self.enabled or self._fd is not None:
      return self
    os.makedirs(self.workdir, exist_ok=True)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _read_holder(fd)
      os.close(fd)
      raise WorkdirLockedError(
        f"workdir {self.workdir} is in use by another run: pid {holder.get('pid', '?')} on host "
        f"{holder.get('host', '?')} (started {holder.get('started', '?')}) holds {self.path}. "
        f"Wait for it to finish, stop it (the lock is released when it exits, even by kill -9), "
        f"or use another --workdir."
      ) from None
    info = {
      "pid": os.getpid(),
      "host": socket.gethostname(),
      "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    os.fsync(fd)
    self._fd = fd
    return self

  def release(self) -> None:
    if self._fd is None:
      return
    fd, self._fd = self._fd, None
    try:
      os.ftruncate(fd, 0)
      fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
      os.close(fd)

  def __enter__(self) -> WorkdirLock:
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


def _read_holder(fd: int) -> dict[str, Any]:
  # The holder writes its pid right after locking; retry briefly to not read that gap.
  for _ in range(20):
    raw = os.pread(fd, 4096, 0)
    try:
      return json.loads(raw.decode())
    except (json.JSONDecodeError, UnicodeDecodeError):
      time.sleep(0.05)
  return {}


def _as_json(obj) -> Any:
  """The value as it reads back from ``config.json`` (tuples -> lists, numpy -> Python)."""
  return json.loads(json.dumps(obj, default=_default, sort_keys=True))


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(d, dict) and d:
    out = {}
    for k, v in d.items():
      out.update(_flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: d}


_ABSENT = "<absent>"


def config_diff(old: dict, new: dict) -> dict[str, tuple[Any, Any]]:
  """``{"optim.lr": (0.1, 0.5)}`` for every dotted key whose JSON value differs; a key only on
  one side has the value ``"<absent>"`` on the other."""
  a, b = _flatten(_as_json(old)), _flatten(_as_json(new))
  return {
    k: (a.get(k, _ABSENT), b.get(k, _ABSENT))
    for k in sorted(set(a) | set(b))
    if a.get(k, _ABSENT) != b.get(k, _ABSENT)
  }


def _fmt_changes(changes: dict[str, tuple[Any, Any]]) -> str:
  return "\n  ".join(f"{k}: {json.dumps(o)} -> {json.dumps(n)}" for k, (o, n) in changes.items())


def _has_checkpoints(workdir: str) -> bool:
  d = os.path.join(workdir, "checkpoints")
  return os.path.isdir(d) and any(
    name.isdigit() and os.path.isdir(os.path.join(d, name)) for name in os.listdir(d)
  )


class ConfigCheck:
  """Result of comparing a workdir's stored config with the config of a new run."""

  def __init__(self, workdir: str, new: dict, old_text: str | None, changes, resuming: bool):
    self.workdir, self.new, self.old_text = workdir, new, old_text
    self.changes, self.resuming = changes, resuming
    self._history_size: int | None = None

  def commit(self) -> None:
    """Writes the new ``config.json`` (+ ``versions.json``) and records an accepted change."""
    hist = os.path.join(self.workdir, HISTORY_FILE)
    if self.changes:
      self._history_size = os.path.getsize(hist) if os.path.exists(hist) else 0
      record = {
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "resuming": self.resuming,
        "changes": {k: {"old": o, "new": n} for k, (o, n) in self.changes.items()},
      }
      with open(hist, "a") as f:
        f.write(json.dumps(record, default=_default) + "\n")
    save_json(os.path.join(self.workdir, CONFIG_FILE), self.new)
    save_json(os.path.join(self.workdir, "versions.json"), package_versions())

  def rollback(self) -> None:
    """Puts the old ``config.json`` back (or removes the new one if there was none) and drops
    the history record :meth:`commit` added."""
    path = os.path.join(self.workdir, CONFIG_FILE)
    if self.old_text is None:
      if os.path.exists(path):
        os.remove(path)
    else:
      with open(path + ".tmp", "w") as f:
        f.write(self.old_text)
      os.replace(path + ".tmp", path)
    hist = os.path.join(self.workdir, HISTORY_FILE)
    if self._history_size == 0:
      os.remove(hist)
    elif self._history_size is not None:
      with open(hist, "r+") as f:
        f.truncate(self._history_size)

  def describe(self) -> str:
    relevant = {k: v for k, v in self.changes.items() if k not in SAFE_TO_CHANGE}
    if relevant:
      return "Config keys changed since the checkpoints were written:\n  " + _fmt_changes(relevant)
    return (
      "The stored config.json matches this config (up to keys that may change on resume), so "
      "the code that builds the state (model, optimiser or task) changed."
    )


def check_config(cfg, workdir: str, *, allow_config_change: bool = False) -> ConfigCheck:
  """Compares ``cfg`` with ``workdir/config.json`` when the workdir holds checkpoints.

  Raises:
    ConfigError: when keys outside :data:`SAFE_TO_CHANGE` differ and
      ``allow_config_change`` is false; the message names each key and its old -> new value.
  """
  new = _as_json(cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg))
  path = os.path.join(workdir, CONFIG_FILE)
  old_text = None
  if os.path.exists(path):
    with open(path) as f:
      old_text = f.read()
  if old_text is None:
    return ConfigCheck(workdir, new, None, {}, resuming=False)
  try:
    old = json.loads(old_text)
  except json.JSONDecodeError as e:
    raise ConfigError(
      f"{path} is not valid JSON ({e}); it should hold the config the workdir's checkpoints "
      f"were written with. Restore it, or move the workdir aside to start over."
    ) from None
  changes = config_diff(old, new)
  resuming = _has_checkpoints(workdir)
  if resuming and not allow_config_change:
    refused = {k: v for k, v in changes.items() if k not in SAFE_TO_CHANGE}
    if refused:
      raise ConfigError(
        f"workdir {os.path.abspath(workdir)} holds checkpoints of a run with another config "
        f"({path}); changed keys:\n  {_fmt_changes(refused)}\n"
        f"Only {', '.join(SAFE_TO_CHANGE)} may change on resume. To resume with these changes "
        f"anyway, pass --allow_config_change (or train_and_evaluate(..., "
        f"allow_config_change=True)); a change that alters the train state (model, optimiser) "
        f"cannot resume at all: use a new --workdir."
      )
  return ConfigCheck(workdir, new, old_text, changes, resuming=resuming)


def guard_run(fn: Callable) -> Callable:
  """Decorates ``train_and_evaluate(cfg, workdir, task, ..., mesh=None, allow_config_change=None)``
  with the validation, lock and config check of this module (see the module docstring)."""
  sig = inspect.signature(fn)

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    bound = sig.bind(*args, **kwargs)
    bound.apply_defaults()
    a = bound.arguments
    cfg, workdir, mesh, task = a["cfg"], a["workdir"], a.get("mesh"), a.get("task")
    allow = a.get("allow_config_change")
    allow = _allow_config_change_default if allow is None else bool(allow)
    validate_config(
      cfg,
      device_count=None if mesh is not None else jax.device_count(),
      data_axis_size=None if mesh is None else int(mesh.shape["data"]),
      check_batch_split=getattr(task, "batch_partition", None) is None,
    )
    is_main = jax.process_index() == 0
    lock = WorkdirLock(workdir, enabled=is_main)
    try:
      _acquire_everywhere(lock)
      check = check_config(cfg, workdir, allow_config_change=allow)
      if is_main:
        check.commit()
      try:
        return fn(*bound.args, **bound.kwargs)
      except CheckpointMismatchError as e:
        if is_main:
          check.rollback()
        raise CheckpointMismatchError(f"{e}\n{check.describe()}") from e
    finally:
      lock.release()

  return wrapper


def _acquire_everywhere(lock: WorkdirLock) -> None:
  """Process 0 takes the lock; on multi-host every process learns whether it got it."""
  if jax.process_count() == 1:
    lock.acquire()
    return
  from jax.experimental import multihost_utils

  err = None
  try:
    lock.acquire()
  except WorkdirLockedError as e:
    err = e
  ok = multihost_utils.broadcast_one_to_all(err is None)
  if err is not None:
    raise err
  if not bool(ok):
    raise WorkdirLockedError(
      f"workdir {lock.workdir} is in use by another run (process 0 could not lock {lock.path})"
    )
