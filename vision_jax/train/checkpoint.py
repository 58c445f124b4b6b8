"""Orbax checkpointing: async, keep-N, restore onto the *current* mesh, corrupt-latest fallback."""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


def abstract_with_shardings(abstract_state, shardings):
  """``ShapeDtypeStruct`` leaves carrying the shardings of the current mesh (restore target)."""
  return jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, shardings
  )


class Checkpointer:
  """A thin wrapper over ``ocp.CheckpointManager`` with two items: ``state`` and ``meta`` (JSON).

  Saves are asynchronous (the train loop keeps running while arrays are written); a step
  directory only becomes visible once finalised, so a process killed mid-save leaves the
  previous checkpoint as the latest. Restores always go into an abstract target built for the
  current mesh, so a checkpoint written on 8 devices restores on 1 and vice versa.
  """

  def __init__(self, directory: str, *, keep: int = 3, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True, enable_async_checkpointing=async_save
    )
    self._mgr = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

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

    If the newest one is corrupt or incomplete, warns and falls back to the previous one.

    Returns:
      ``(state, meta, step)`` or ``None`` when there is no checkpoint.

    Raises:
      RuntimeError: if checkpoints exist but none can be restored.
    """
    steps = self.all_steps()
    errors = []
    for step in reversed(steps):
      try:
        out = self._mgr.restore(
          step,
          args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_target), meta=ocp.args.JsonRestore()
          ),
        )
      except Exception as e:  # noqa: BLE001 - any failure means "this step is unusable"
        msg = f"checkpoint step {step} in {self.directory} could not be restored ({type(e).__name__}: {e})"
        errors.append(msg)
        log.warning("%s; falling back to the previous checkpoint", msg)
        import warnings

        warnings.warn(
          msg + "; falling back to the previous checkpoint", RuntimeWarning, stacklevel=2
        )
        continue
      return out["state"], dict(out["meta"] or {}), step
    if steps:
      raise RuntimeError("no checkpoint could be restored:\n  " + "\n  ".join(errors))
    return None

  def close(self):
    self._mgr.wait_until_finished()
    self._mgr.close()
