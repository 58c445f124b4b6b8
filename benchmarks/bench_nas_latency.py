"""TF-NAS latency table: how reproducible a measured table is, and how well it predicts nets.

    python benchmarks/bench_nas_latency.py [--rounds=5] [--inner=2]

Measures the one-stage table twice with the same protocol, then prints, per architecture, the two
predictions, their ratio, and the ratio of the timed derived net to the first prediction. Timings
depend on the machine and its load, so no threshold is asserted in the test suite; a quiet machine
gives ratios within a few percent of 1, a shared CPU under load can be off by a factor of several.
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv=None):
  p = argparse.ArgumentParser()
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--inner", type=int, default=2)
  a = p.parse_args(argv)
  from vision_jax.nas import SearchSpace, Stage, arch_from_choices, measure_nets, measure_table
  from vision_jax.nas.supernet import width_bounds

  space = SearchSpace(
    image_size=8, in_channels=1, num_classes=4, stem=4, stem_stride=1, stem_block=4,
    stem_block_se=2, stages=(Stage(8, 2, 1, "relu"),), head=8,
  )  # fmt: skip
  kw = dict(num_widths=2, warmup=2, rounds=a.rounds, inner=a.inner, isolated=False)
  t1, t2 = measure_table(space, **kw), measure_table(space, **kw)
  lo, hi = width_bounds(space)
  archs = [
    (o, w, arch_from_choices(space, [o], [1], wv))
    for o in (0, 7)
    for w, wv in (("min", lo), ("max", hi))
  ]
  meas = measure_nets(
    [x for *_, x in archs], warmup=2, rounds=a.rounds, inner=a.inner, isolated=False
  )
  print(f"device: {t1.device}")
  print("| op | width | table 1 ms | table 2 ms | ratio 2/1 | net ms | net / table 1 |")
  print("|---|---|---|---|---|---|---|")
  ratios = []
  for (o, w, arch), (m, _) in zip(archs, meas):
    p1, p2 = t1.predict(arch), t2.predict(arch)
    ratios.append(p2 / p1)
    print(f"| {o} | {w} | {p1:.4f} | {p2:.4f} | {p2 / p1:.2f} | {m:.4f} | {m / p1:.2f} |")
  print(f"max |log ratio| between the two tables: {np.max(np.abs(np.log(ratios))):.3f}")


if __name__ == "__main__":
  main()
