"""``python -m experiments.ir_softmax --preset=default --workdir=DIR [--config.k=v ...]``."""

from experiments.ir_softmax import train
from vision_jax.utils import launch


def main(argv=None):
  return launch("ir_softmax", train.run, lambda cfg, r: train.format_table(r), argv)


if __name__ == "__main__":
  main()
