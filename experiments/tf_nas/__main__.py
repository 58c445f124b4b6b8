"""``python -m experiments.tf_nas --preset=default --workdir=DIR [--config.k=v ...]``."""

from experiments.tf_nas import train
from vision_jax.utils import launch


def main(argv=None):
  return launch("tf_nas", train.run, train.format_table, argv)


if __name__ == "__main__":
  main()
