"""The shared ``python -m experiments.<slug>`` entry point."""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from vision_jax.utils.config import ConfigError, parse_launch_args


def resume_command(slug: str, argv: Sequence[str] | None = None) -> str:
  """The shell command that re-runs this launch (from the same directory, hence the ``cd``).

  ``argv=None`` means the process's own command line (``sys.orig_argv``); an explicit ``argv``
  (a launch from Python) becomes ``python -m experiments.<slug> ARGV``.
  """
  if argv is None:
    cmd = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
  else:
    cmd = [sys.executable, "-m", f"experiments.{slug}", *argv]
  return f"cd {shlex.quote(os.getcwd())} && {shlex.join(cmd)}"


def launch(
  slug: str,
  run: Callable[[Any, str], Any],
  report: Callable[[Any, Any], str] | None = None,
  argv: Sequence[str] | None = None,
):
  """Parses the launch flags, sets up the JAX runtime, runs ``run(cfg, workdir)`` and prints
  ``report(cfg, result)`` plus the wall time and the output directory.

  SIGTERM/SIGINT from the first line on are stop requests (:mod:`vision_jax.train.preemption`):
  a request during setup, a train loop that returns ``{"preempted": True}``, or a
  :class:`~vision_jax.train.preemption.Preempted` raised anywhere in ``run`` (a sweep) prints
  ``Preempted at step N in DIR; resume with: COMMAND`` and returns normally (exit status 0)
  without the report; running COMMAND resumes.

  A bad preset/override or an invalid ``train``/``optim``/``data``/``mesh`` value exits with
  status 1 and a message naming the key. ``--allow_config_change`` becomes the default of
  ``train_and_evaluate(allow_config_change=None)`` for this process.

  Returns:
    ``run``'s result, or ``{"preempted": True, "step": N, "workdir": DIR}``.
  """
  from vision_jax.train import preemption

  preemption.install_handlers()
  try:
    cfg, args = parse_launch_args(slug, argv)
    from vision_jax.train.validate import validate_config

    validate_config(cfg, require_num_steps=False)  # before any data is built
  except ConfigError as e:
    sys.exit(f"error: {e}")
  from vision_jax.train.loop import setup_runtime
  from vision_jax.train.workdir import set_allow_config_change_default

  set_allow_config_change_default(args.allow_config_change)

  setup_runtime(
    distributed=args.distributed,
    compilation_cache=args.compilation_cache,
    host_allocator=args.host_allocator,
  )
  t0 = time.time()
  try:
    if preemption.requested_everywhere():
      raise preemption.Preempted(None, args.workdir)
    result = run(cfg, args.workdir)
    if isinstance(result, dict) and result.get("preempted"):
      raise preemption.Preempted(result.get("step"), args.workdir)
  except preemption.Preempted as e:
    preemption.clear()
    where = f"at step {e.step}" if e.step is not None else "before training started"
    print(
      f"Preempted {where} in {os.path.abspath(e.workdir or args.workdir)}; "
      f"resume with: {resume_command(slug, argv)}",
      flush=True,
    )
    return {"preempted": True, "step": e.step, "workdir": e.workdir or args.workdir}
  if report is not None:
    print()
    print(report(cfg, result))
  print(f"Total wall time: {(time.time() - t0) / 60:.1f} min. Outputs in {args.workdir}")
  return result
