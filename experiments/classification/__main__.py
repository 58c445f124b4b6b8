"""``python -m experiments.classification --preset=default --workdir=DIR [--config.k=v ...]``."""

from experiments.classification import train
from vision_jax.utils import launch


def main(argv=None):
  return launch("classification", train.run, lambda cfg, s: train.format_table(s), argv)


if __name__ == "__main__":
  main()
