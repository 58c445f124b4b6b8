"""``python -m experiments.dvg_face --preset=default --workdir=DIR [--config.k=v ...]``."""

from experiments.dvg_face import train
from vision_jax.utils import launch


def main(argv=None):
  return launch("dvg_face", train.run, lambda cfg, r: train.format_table(r), argv)


if __name__ == "__main__":
  main()
