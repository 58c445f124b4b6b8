"""The shared ``python -m experiments.<slug>`` entry point."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from vision_jax.utils.config import ConfigError, parse_launch_args


def launch(
  slug: str,
  run: Callable[[Any, str], Any],
  report: Callable[[Any, Any], str] | None = None,
  argv: Sequence[str] | None = None,
):
  """Parses the launch flags, sets up the JAX runtime, runs ``run(cfg, workdir)`` and prints
  ``report(cfg, result)`` plus the wall time and the output directory.

  A bad preset/override or an invalid ``train``/``optim``/``data``/``mesh`` value exits with
  status 1 and a message naming the key. ``--allow_config_change`` becomes the default of
  ``train_and_evaluate(allow_config_change=None)`` for this process.
  """
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
  result = run(cfg, args.workdir)
  if isinstance(result, dict) and result.get("preempted"):
    print(f"Preempted at step {result.get('step')}; re-run the same command to resume.")
    return result
  if report is not None:
    print()
    print(report(cfg, result))
  print(f"Total wall time: {(time.time() - t0) / 60:.1f} min. Outputs in {args.workdir}")
  return result
