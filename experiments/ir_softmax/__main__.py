"""``python -m experiments.ir_softmax --preset=default --workdir=DIR [--config.k=v ...]``."""

import os
import sys
import time

from experiments.ir_softmax import train
from vision_jax.train import setup_runtime
from vision_jax.utils import ConfigError, parse_launch_args


def main(argv=None):
  try:
    cfg, args = parse_launch_args("ir_softmax", argv)
  except ConfigError as e:
    sys.exit(f"error: {e}")
  setup_runtime(distributed=args.distributed, compilation_cache=args.compilation_cache)
  t0 = time.time()
  results = train.run(cfg, args.workdir)
  print()
  print(train.format_table(results))
  print(
    f"Total wall time: {(time.time() - t0) / 60:.1f} min. Outputs in {args.workdir}: "
    f"results.json, weight_center_angle.png, <setting>/<method>/(summary.json, curves.png)"
  )
  print(f"Diagnostic plot: {os.path.join(args.workdir, 'weight_center_angle.png')}")


if __name__ == "__main__":
  main()
