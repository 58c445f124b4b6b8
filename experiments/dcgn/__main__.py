"""``python -m experiments.dcgn --preset=default --workdir=DIR [--config.k=v ...]``."""

from experiments.dcgn import train
from vision_jax.utils import launch


def main(argv=None):
  return launch("dcgn", train.run, lambda cfg, r: train.format_table(r), argv)


if __name__ == "__main__":
  main()
