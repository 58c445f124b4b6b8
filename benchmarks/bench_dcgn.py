"""DCGN vs the LSTM baseline: train-step throughput, and frame-graph memory dense vs kNN.

Usage (from the repo root):
  .venv/bin/python benchmarks/bench_dcgn.py [--batch 16] [--frames 300] [--hidden 256]
      [--steps 5] [--mem-frames 300,1000,3000,10000,30000] [--budget-gib 4] [--knn-k 16]

1. Throughput: the shared trainer's jitted step (``make_train_step``: forward, backward, AdamW
   update) of DCGN and of the 2-layer LSTM at ``--frames`` frames of YouTube-8M-sized features
   (rgb 1024 + audio 128, 3,862 classes, MoE head), same batch, same run, interleaved. Prints the
   median videos/s of each and the ratio DCGN / LSTM.
2. Memory: XLA's compiled ``memory_analysis`` (temp + argument bytes) of one frame-graph layer
   (adjacency + propagation) at ``--hidden`` width, batch 1, for dense and blockwise-kNN
   adjacency over ``--mem-frames``. Dense grows as T^2, kNN as T k; lengths whose dense graph
   exceeds ``--budget-gib`` are reported as not fitting (compiled only, never run).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vision_jax.train import create_train_state, make_mesh, make_optimizer, make_train_step
from vision_jax.train.mesh import to_global_batch
from vision_jax.utils import package_versions
from vision_jax.video import graph, video_classification_task, video_model

NUM_CLASSES = 3862


def _batch(b, t, rng):
  return {
    "rgb": rng.integers(0, 256, (b, t, 1024), dtype=np.uint8),
    "audio": rng.integers(0, 256, (b, t, 128), dtype=np.uint8),
    "num_frames": rng.integers(t // 2, t + 1, b).astype(np.int32),
    "labels": (rng.random((b, NUM_CLASSES)) < 1e-3).astype(np.uint8),
  }


def build_step(model, batch, mesh):
  task = video_classification_task(model, num_classes=NUM_CLASSES)
  cfg = ml_collections.ConfigDict(dict(name="adamw", lr=1e-3, weight_decay=0.0, grad_clip=1.0))
  tx, schedule = make_optimizer(cfg, 1000)
  gb = to_global_batch(batch, mesh)
  state, shardings = create_train_state(task, tx, jax.random.PRNGKey(0), gb, mesh)
  step = make_train_step(task, tx, schedule, mesh, shardings)
  t0 = time.perf_counter()
  state, m = step(state, gb)
  jax.block_until_ready(m)
  return step, state, gb, time.perf_counter() - t0


def throughput(args):
  mesh = make_mesh(model=1)
  rng = np.random.default_rng(0)
  batch = _batch(args.batch, args.frames, rng)
  models = {
    "dcgn": video_model(
      "dcgn", NUM_CLASSES, hidden=args.hidden, conv_kernels=(2, 2, 1), pool_windows=(5, 3, 5)
    ),
    "lstm": video_model("lstm", NUM_CLASSES, hidden=args.hidden, num_layers=2),
  }
  built = {k: build_step(m, batch, mesh) for k, m in models.items()}
  times = {k: [] for k in models}
  for _ in range(args.steps):
    for k in models:  # interleaved: background load hits both alike
      step, state, gb, c = built[k]
      t0 = time.perf_counter()
      state, m = step(state, gb)
      jax.block_until_ready(m)
      times[k].append(time.perf_counter() - t0)
      built[k] = (step, state, gb, c)
  print(
    f"\nthroughput: batch {args.batch}, {args.frames} frames, hidden {args.hidden}, 3862 classes"
  )
  print(f"{'model':6s} {'step_s':>8s} {'videos/s':>9s} {'compile_s':>9s}")
  vps = {}
  for k in models:
    med = statistics.median(times[k])
    vps[k] = args.batch / med
    print(f"{k:6s} {med:8.3f} {vps[k]:9.1f} {built[k][3]:9.1f}")
  print(f"ratio dcgn/lstm videos/s: {vps['dcgn'] / vps['lstm']:.2f}x")


def memory(args):
  print(
    f"\nframe-graph memory (adjacency + propagation), batch 1, width {args.hidden}, k={args.knn_k}"
  )
  print(f"{'frames':>7s} {'dense_MiB':>10s} {'knn_MiB':>9s} {'dense fits':>10s}")
  budget = args.budget_gib * 2**30
  for t in [int(v) for v in args.mem_frames.split(",")]:
    xs = (
      jax.ShapeDtypeStruct((1, t, args.hidden), jnp.float32),
      jax.ShapeDtypeStruct((1, t), jnp.bool_),
    )
    dense = lambda x, m: graph.propagate_dense(graph.dense_adjacency(x, m), x)
    knn = lambda x, m: graph.propagate_knn(graph.knn_adjacency(x, m, k=args.knn_k), x)
    out = []
    for fn in (dense, knn):
      ma = jax.jit(fn).lower(*xs).compile().memory_analysis()
      out.append(
        (ma.temp_size_in_bytes + ma.argument_size_in_bytes + ma.output_size_in_bytes) / 2**20
      )
    print(
      f"{t:7d} {out[0]:10.1f} {out[1]:9.1f} {'yes' if out[0] * 2**20 <= budget else 'no':>10s}",
      flush=True,
    )


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--frames", type=int, default=300)
  p.add_argument("--hidden", type=int, default=256)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--mem-frames", default="300,1000,3000,10000,30000")
  p.add_argument("--budget-gib", type=float, default=4.0)
  p.add_argument("--knn-k", type=int, default=16)
  p.add_argument("--skip-throughput", action="store_true")
  args = p.parse_args()
  dev = jax.devices()[0]
  print(
    f"device: {dev.platform} / {dev.device_kind} x{jax.device_count()}  host: {platform.processor() or platform.machine()}"
  )
  vers = package_versions()
  print("versions:", {k: vers[k] for k in ("jax", "jaxlib", "flax", "optax") if k in vers})
  if not args.skip_throughput:
    throughput(args)
  memory(args)


if __name__ == "__main__":
  main()
