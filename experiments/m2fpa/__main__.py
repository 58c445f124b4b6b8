"""``python -m experiments.m2fpa --preset=default --workdir=DIR [--config.k=v ...]``."""

from experiments.m2fpa import train
from vision_jax.utils import launch


def main(argv=None):
  return launch("m2fpa", train.run, lambda cfg, r: train.format_table(r), argv)


if __name__ == "__main__":
  main()
