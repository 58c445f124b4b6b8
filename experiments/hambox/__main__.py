"""``python -m experiments.hambox --preset=default --workdir=DIR [--config.k=v ...]``."""

from experiments.hambox import train
from vision_jax.utils import launch


def main(argv=None):
  return launch("hambox", train.run, lambda cfg, r: train.format_table(r), argv)


if __name__ == "__main__":
  main()
