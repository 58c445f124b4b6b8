"""Orbax checkpointing: async, keep-N, restore onto the *current* mesh, corrupt-latest fallback."""

from __future__ import annotations

import logging
import os
import time
import warnings
from typing import Any

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)

CORRUPT_PREFIX = "corrupt-"


class CheckpointMismatchError(ValueError):
  """The checkpoints hold a train state of another structure (tree, shapes, dtypes) than the
  one the current task builds: the model, optimiser or task changed since they were written."""


def abstract_with_shardings(abstract_state, shardings):
  """``ShapeDtypeStruct`` leaves carrying the shardings of the current mesh (restore target)."""
  return jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, shardings
  )


# Replica-parallel saving (orbax's default off GPU) splits every replicated array into one slice
# per replica; each distinct slice shape is an eagerly dispatched ``jit_slice``, i.e. one XLA
# compilation per parameter shape at the first save (16 arrays of a small model: 16 compiles,
# 0.9 s vs 0.1 s). Splitting only pays for large arrays, so arrays whose per-replica slice is
# below this many bytes are written whole by one replica. Same on-disk format either way.
REPLICA_PARALLEL_MIN_SLICE_BYTES = 1 << 20


def _register_array_handler() -> None:
  """Choice: orbax's ``jax.Array`` handler with replica-parallel saving only for slices of at
  least :data:`REPLICA_PARALLEL_MIN_SLICE_BYTES` (registered once, through orbax's public type
  handler registry)."""
  global _ARRAY_HANDLER_REGISTERED
  if _ARRAY_HANDLER_REGISTERED:
    return
  absl_logger = logging.getLogger("absl")  # orbax warns about every override; this one is ours
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  try:
    ocp.type_handlers.register_type_handler(
      jax.Array,
      ocp.type_handlers.ArrayHandler(
        min_slice_bytes_for_replica_parallel=REPLICA_PARALLEL_MIN_SLICE_BYTES
      ),
      override=True,
    )
  finally:
    absl_logger.setLevel(level)
  _ARRAY_HANDLER_REGISTERED = True


_ARRAY_HANDLER_REGISTERED = False


class Checkpointer:
  """A thin wrapper over ``ocp.CheckpointManager`` with two items: ``state`` and ``meta`` (JSON).

  Saves are asynchronous (the train loop keeps running while arrays are written); a step
  directory only becomes visible once finalised, so a process killed mid-save leaves the
  previous checkpoint as the latest. Restores always go into an abstract target built for the
  current mesh, so a checkpoint written on 8 devices restores on 1 and vice versa.

  A step that cannot be read (files missing or damaged) is skipped on restore and, once an
  older step restored, moved aside to ``<directory>/corrupt-<step>-<UTC time>/`` (a name orbax
  does not list as a step), so the resumed run writes that step again and the run after it
  resumes from the good copy. A step whose stored tree or shapes differ from the restore
  target is never moved: that is a changed model/optimiser, reported by
  :class:`CheckpointMismatchError`.
  """

  def __init__(self, directory: str, *, keep: int = 3, async_save: bool = True):
    if keep is not None and int(keep) < 1:
      raise ValueError(f"keep={keep!r}: keep at least one checkpoint (0 would delete every one)")
    self.directory = os.path.abspath(directory)
    _register_array_handler()
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True, enable_async_checkpointing=async_save
    )
    # Explicit handlers (not just item names) so ``item_metadata`` can read a step's stored tree.
    self._mgr = ocp.CheckpointManager(
      self.directory,
      options=options,
      item_handlers={"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()},
    )

  def all_steps(self) -> list[int]:
    self._mgr.reload()
    return sorted(self._mgr.all_steps())

  def latest_step(self) -> int | None:
    steps = self.all_steps()
    return steps[-1] if steps else None

  def save(self, step: int, state, meta: dict[str, Any] | None = None, *, wait: bool = False):
    """Starts an async save of ``state`` at ``step`` (no-op if that step already exists)."""
    if step in self._mgr.all_steps():
      return
    self._mgr.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta or {}, step=step))
      ),
      force=True,
    )
    if wait:
      self.wait()

  def wait(self):
    self._mgr.wait_until_finished()

  def restore_latest(self, abstract_target) -> tuple[Any, dict[str, Any], int] | None:
    """Restores the newest readable checkpoint into ``abstract_target``.

    Steps are tried newest first. One that cannot be read is skipped with a ``RuntimeWarning``;
    when an older step then restores, every skipped newer step is moved aside to
    ``corrupt-<step>-<time>/`` (named in the warning) so that it no longer counts as the
    latest. Before reading arrays, the stored tree (leaf names, shapes, dtypes) is compared
    with ``abstract_target``.

    Returns:
      ``(state, meta, step)`` or ``None`` when there is no checkpoint.

    Raises:
      CheckpointMismatchError: if the newest readable step holds a state of another structure
        than ``abstract_target`` (the model or optimiser changed); nothing is moved.
      RuntimeError: if checkpoints exist but none can be read (nothing is moved either).
    """
    steps = self.all_steps()
    target = _flat_leaves(abstract_target)
    unreadable: list[int] = []
    errors = []
    for step in reversed(steps):
      try:
        stored = self._stored_leaves(step)
      except Exception as e:  # noqa: BLE001 - unreadable metadata: treat the step as corrupt
        stored, err = None, e
      else:
        if stored is None:
          err = FileNotFoundError("the state item has no tree metadata")
      if stored is not None:
        diff = _describe_diff(stored, target)
        if diff:
          raise CheckpointMismatchError(
            f"the checkpoint at step {step} in {self.directory} holds a train state of another "
            f"structure than this task builds, so the model, optimiser or task config changed "
            f"since it was written:\n  " + "\n  ".join(diff) + "\nResume with the config the "
            "checkpoints were written with (config.json in the workdir, and each step's meta "
            "item), or start the changed run in a new workdir."
          )
        try:
          out = self._mgr.restore(
            step,
            args=ocp.args.Composite(
              state=ocp.args.StandardRestore(abstract_target), meta=ocp.args.JsonRestore()
            ),
          )
        except Exception as e:  # noqa: BLE001 - any failure means "this step is unusable"
          err = e
        else:
          self._set_aside(unreadable, good=step)
          return out["state"], dict(out["meta"] or {}), step
      msg = (
        f"checkpoint step {step} in {self.directory} could not be restored "
        f"({type(err).__name__}: {err})"
      )
      errors.append(msg)
      unreadable.append(step)
      log.warning("%s; trying the previous checkpoint", msg)
      warnings.warn(msg + "; trying the previous checkpoint", RuntimeWarning, stacklevel=2)
    if steps:
      raise RuntimeError(
        f"no checkpoint in {self.directory} could be restored (nothing was moved or deleted; "
        f"move the directory aside to start the run over):\n  " + "\n  ".join(errors)
      )
    return None

  def _stored_leaves(self, step: int) -> dict[str, tuple[tuple[int, ...], str]] | None:
    md = self._mgr.item_metadata(step)["state"]
    tree = getattr(md, "tree", md)
    if tree is None:
      return None
    return _flat_leaves(tree)

  def _set_aside(self, steps: list[int], *, good: int) -> None:
    """Moves unreadable step directories out of orbax's step naming (process 0 renames)."""
    if not steps:
      return
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    moved = []
    for step in steps:
      dst = os.path.join(self.directory, f"{CORRUPT_PREFIX}{step}-{stamp}")
      moved.append(dst)
      if jax.process_index() == 0:
        os.rename(os.path.join(self.directory, str(step)), dst)
    if jax.process_count() > 1:
      ocp.multihost.sync_global_processes("vision_jax_checkpoint_set_aside")
    self._mgr.reload()
    msg = (
      f"resumed from checkpoint step {good}; moved the unreadable newer step(s) aside so they "
      f"are written again: " + ", ".join(moved)
    )
    log.warning(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=3)

  def close(self):
    self._mgr.wait_until_finished()
    self._mgr.close()


def _flat_leaves(tree) -> dict[str, tuple[tuple[int, ...], str]]:
  """``{"params.Dense_0.kernel": (shape, dtype)}`` in orbax's storage naming (tuples as lists,
  named tuples and dataclasses by field name), for abstract targets and stored metadata alike."""
  flat = ocp.tree.to_flat_dict(tree, sep=".")
  return {
    k: (tuple(getattr(v, "shape", ())), str(getattr(v, "dtype", type(v).__name__)))
    for k, v in flat.items()
  }


def _describe_diff(stored: dict, target: dict, limit: int = 12) -> list[str]:
  """Lines naming the leaves that differ between a stored tree and the restore target."""
  lines = []
  for k in sorted(set(stored) | set(target)):
    if k not in target:
      lines.append(f"{k}: in the checkpoint {_fmt(stored[k])}, not in this task's state")
    elif k not in stored:
      lines.append(f"{k}: in this task's state {_fmt(target[k])}, not in the checkpoint")
    elif stored[k] != target[k]:
      lines.append(f"{k}: checkpoint {_fmt(stored[k])}, this task {_fmt(target[k])}")
  if len(lines) > limit:
    lines = lines[:limit] + [f"... and {len(lines) - limit} more"]
  return lines


def _fmt(leaf) -> str:
  shape, dtype = leaf
  return f"{dtype}{list(shape)}"
