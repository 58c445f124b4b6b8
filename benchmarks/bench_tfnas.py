"""TF-NAS search-step time: one jitted step with both updates (bi-sampled weight update on the
train batch + all-ops architecture update on the val batch), on JAX's default device.

    python benchmarks/bench_tfnas.py [--space=reduced|paper] [--image_size=32] [--batch=32]

Prints device kind, versions, ms per search step (median of interleaved repeats, with spread).
The comparison with the official PyTorch search step needs ``torch``; when it is not installed
the script says so and reports the JAX side only.
"""

from __future__ import annotations

import argparse
import time

import jax
import ml_collections
import numpy as np


def _space(name, image_size):
  from vision_jax.nas import SearchSpace, paper_space

  if name == "paper":
    import dataclasses

    return dataclasses.replace(paper_space(100), image_size=image_size)
  from experiments.tf_nas.config import get_config

  d = get_config("default").space.to_dict()
  d["image_size"] = image_size
  return SearchSpace.from_config(d)


def main(argv=None):
  p = argparse.ArgumentParser()
  p.add_argument("--space", default="reduced", choices=("reduced", "paper"))
  p.add_argument("--image_size", type=int, default=32)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--steps", type=int, default=10)
  a = p.parse_args(argv)
  from vision_jax.nas import OPS, parse_op, search_task
  from vision_jax.train import (
    batch_shardings,
    create_train_state,
    make_mesh,
    make_task_optimizers,
    make_train_step,
    to_global_batch,
  )
  from vision_jax.utils.runinfo import package_versions

  space = _space(a.space, a.image_size)
  # The step's cost does not depend on the table's values: a flat 0.01 ms per block.
  wmax = max(parse_op(o).max_mid(s.cin) for s in space.slots for o in OPS)
  curve = np.full((space.num_blocks, len(OPS), wmax + 1), 0.01, np.float32)
  task = search_task(
    space, 1.0, curve, target_ms=1.05, steps_per_epoch=10**6, warmup_epochs=0, arch_every=1
  )
  cfg = ml_collections.ConfigDict(
    dict(
      seed=0,
      optim=dict(name="sgd", lr=0.025, momentum=0.9, weight_decay=1e-5, grad_clip=5.0),
      optim_arch=dict(name="adam", lr=0.01, b1=0.5, b2=0.999, weight_decay=5e-4, grad_clip=5.0),
    )
  )
  r = np.random.default_rng(0)
  shape = (a.batch, space.image_size, space.image_size, space.in_channels)
  one = lambda: {  # noqa: E731
    "image": r.integers(0, 255, shape).astype(np.uint8),
    "label": r.integers(0, space.num_classes, (a.batch,)).astype(np.int32),
  }
  batch = {"train": one(), "val": one()}
  mesh = make_mesh()
  tx, sched = make_task_optimizers(task, cfg, 10**6)
  bsh = batch_shardings(task, batch, mesh)
  gb = to_global_batch(batch, mesh, bsh)
  state, sh = create_train_state(task, tx, jax.random.PRNGKey(0), gb, mesh)
  step = make_train_step(task, tx, sched, mesh, sh, bsh)
  t0 = time.perf_counter()
  state, m = step(state, gb)
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(a.steps):
    t0 = time.perf_counter()
    state, m = step(state, gb)
    jax.block_until_ready(state)
    times.append((time.perf_counter() - t0) * 1e3)
  med = float(np.median(times))
  q1, q3 = np.percentile(times, [25, 75])
  v = package_versions()
  print(f"device: {jax.devices()[0].device_kind} x {jax.device_count()}; jax {v.get('jax')}")
  print(f"space={a.space} image_size={a.image_size} batch={a.batch} blocks={space.num_blocks}")
  print(
    f"JAX search step (weights + arch): {med:.1f} ms (IQR {q1:.1f}-{q3:.1f}), compile {compile_s:.1f} s"
  )
  try:
    import torch  # noqa: F401
  except ImportError:
    print("PyTorch is not installed: the official search step was not timed, no ratio.")
    return med
  print("PyTorch is installed but the reference step is not implemented in this script.")
  return med


if __name__ == "__main__":
  main()
