"""``python -m experiments.lrpea --preset=default --workdir=DIR [--config.k=v ...]``."""

import sys

from experiments.lrpea import study
from vision_jax.utils import ConfigError, parse_launch_args


def main(argv=None):
  try:
    cfg, args = parse_launch_args("lrpea", argv)
  except ConfigError as e:
    sys.exit(f"error: {e}")
  study.run(cfg, args.workdir)
  print(f"Outputs in {args.workdir}: config.json, summary.json, error_vs_n.png")


if __name__ == "__main__":
  main()
