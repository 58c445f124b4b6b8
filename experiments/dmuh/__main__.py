"""``python -m experiments.dmuh --preset=default --workdir=DIR [--config.k=v ...]``."""

import sys
import time

from experiments.dmuh import train
from vision_jax.train import setup_runtime
from vision_jax.utils import ConfigError, parse_launch_args


def main(argv=None):
  try:
    cfg, args = parse_launch_args("dmuh", argv)
  except ConfigError as e:
    sys.exit(f"error: {e}")
  setup_runtime(distributed=args.distributed, compilation_cache=args.compilation_cache)
  t0 = time.time()
  results = train.run(cfg, args.workdir)
  print()
  print(train.format_table(results, radius=cfg.eval.radius))
  print(
    f"Total wall time: {(time.time() - t0) / 60:.1f} min. Outputs in {args.workdir}: "
    "results.json, bit_uncertainty.png, <bits>bits/<method>/(summary.json, curves.png)"
  )


if __name__ == "__main__":
  main()
