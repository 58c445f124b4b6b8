"""``python -m experiments.crn --preset=default --workdir=DIR [--config.k=v ...]``."""

from experiments.crn import train
from vision_jax.utils import launch


def main(argv=None):
  return launch("crn", train.run, lambda cfg, r: train.format_table(r), argv)


if __name__ == "__main__":
  main()
