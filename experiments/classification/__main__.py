"""``python -m experiments.classification --preset=default --workdir=DIR [--config.k=v ...]``."""

import sys

from experiments.classification import train
from vision_jax.train import setup_runtime
from vision_jax.utils import ConfigError, parse_launch_args


def main(argv=None):
  try:
    cfg, args = parse_launch_args("classification", argv)
  except ConfigError as e:
    sys.exit(f"error: {e}")
  setup_runtime(distributed=args.distributed, compilation_cache=args.compilation_cache)
  summary = train.run(cfg, args.workdir)
  if summary.get("preempted"):
    print(f"Preempted at step {summary['step']}; re-run the same command to resume.")
    return
  print(train.format_table(summary))
  print(f"Outputs in {args.workdir}: summary.json, metrics.jsonl, curves.png, tb/, checkpoints/")


if __name__ == "__main__":
  main()
