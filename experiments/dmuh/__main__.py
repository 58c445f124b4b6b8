"""``python -m experiments.dmuh --preset=default --workdir=DIR [--config.k=v ...]``."""

from experiments.dmuh import train
from vision_jax.utils import launch


def main(argv=None):
  return launch(
    "dmuh", train.run, lambda cfg, r: train.format_table(r, radius=cfg.eval.radius), argv
  )


if __name__ == "__main__":
  main()
