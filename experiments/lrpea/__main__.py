"""``python -m experiments.lrpea --preset=default --workdir=DIR [--config.k=v ...]``."""

from experiments.lrpea import study
from vision_jax.utils import launch


def main(argv=None):
  return launch("lrpea", study.run, None, argv)


if __name__ == "__main__":
  main()
