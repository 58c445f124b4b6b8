"""TF-NAS latency table: how reproducible a measured table is, and how well it predicts nets.

    python benchmarks/bench_nas_latency.py [--rounds=5] [--inner=2]
    python benchmarks/bench_nas_latency.py --workdir=runs/tf_nas/default [--rounds=15]

The second form re-times a finished ``experiments.tf_nas`` run: its calibration nets, its
table-check nets and every target's derived net (``target_*/arch.json``), all in ONE interleaved
run with the table's protocol (so a quiet moment, or the same background load, applies to
all of them), and prints per net the table's raw and calibrated prediction against the measured
latency, the calibration factor this run would fit, and per target the error against it.

Measures the one-stage table twice with the same protocol, then prints, per architecture, the two
predictions, their ratio, and the ratio of the timed derived net to the first prediction. Timings
depend on the machine and its load, so no threshold is asserted in the test suite; a quiet machine
gives ratios within a few percent of 1, a shared CPU under load can be off by a factor of several.
"""

from __future__ import annotations

import argparse

import numpy as np


def retime(workdir: str, preset: str, rounds: int, inner: int) -> dict:
  """Re-times the nets of a finished TF-NAS run in one interleaved run (see the docstring)."""
  import glob
  import json
  import os

  from experiments.tf_nas import train
  from experiments.tf_nas.config import get_config
  from vision_jax.nas import LatencyTable, measure_nets, random_archs

  cfg = get_config(preset)
  space = train._space(cfg)
  table = LatencyTable.load(os.path.join(workdir, "lut.json"))
  nets = []  # (kind, name, arch, target_ms)
  for i, a in enumerate(random_archs(space, int(cfg.lut.calibrate_archs), int(cfg.seed) + 7)):
    nets.append(("calibration", f"cal{i}", a, None))
  for i, a in enumerate(random_archs(space, int(cfg.lut.num_random_archs), int(cfg.seed) + 11)):
    nets.append(("check", f"check{i}", a, None))
  for path in sorted(glob.glob(os.path.join(workdir, "target_*", "arch.json"))):
    name = os.path.basename(os.path.dirname(path))
    with open(path) as f:
      arch = json.load(f)
    with open(os.path.join(os.path.dirname(path), "config.json")) as f:
      target = float(json.load(f)["target_ms"])
    nets.append(("target", name, arch, target))
  if not nets:
    raise SystemExit(f"{workdir}: no calibration, check or target nets to time")
  proto = train._protocol(cfg)
  proto["rounds"], proto["inner"] = rounds, inner
  meas = measure_nets([a for _, _, a, _ in nets], **proto)
  raw = table.with_scale(1.0)
  print(f"device: {table.device}; table scale {table.scale:.3f}; protocol {proto}")
  print(
    "| net | raw LUT ms | calibrated ms | measured ms (spread) | measured / raw | error vs target |"
  )
  print("|---|---|---|---|---|---|")
  rows, ratios = [], {"calibration": [], "check": []}
  for (kind, name, arch, target), (m, sp) in zip(nets, meas):
    pr, pc = raw.predict(arch), table.predict(arch)
    if kind in ratios:
      ratios[kind].append(m / pr)
    err = f"{100 * (m / target - 1):+.1f} % (target {target:.3f})" if target else ""
    print(f"| {name} | {pr:.3f} | {pc:.3f} | {m:.3f} (±{100 * sp:.0f} %) | {m / pr:.2f} | {err} |")
    rows.append(dict(kind=kind, name=name, raw_ms=pr, calibrated_ms=pc, measured_ms=m,
                     spread=sp, target_ms=target))  # fmt: skip
  if ratios["calibration"]:
    s_now = float(np.median(ratios["calibration"]))
    print(f"calibration factor fitted in this run: {s_now:.3f} (table: {table.scale:.3f})")
  if ratios["check"]:
    chk = [r for r in rows if r["kind"] == "check"]
    e = [r["calibrated_ms"] / r["measured_ms"] - 1 for r in chk]
    print(
      f"check nets, calibrated table vs measured: mean |error| {100 * np.mean(np.abs(e)):.1f} %, "
      f"max {100 * np.max(np.abs(e)):.1f} %"
    )
  return dict(rows=rows, protocol=proto, table_scale=table.scale)


def main(argv=None):
  p = argparse.ArgumentParser()
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--inner", type=int, default=2)
  p.add_argument("--workdir", default="", help="re-time a finished experiments.tf_nas run")
  p.add_argument("--preset", default="default", help="its preset (for the space and seeds)")
  a = p.parse_args(argv)
  if a.workdir:
    return retime(a.workdir, a.preset, a.rounds, a.inner)
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
