"""ProtoNet Conv-4 train-step throughput: vision_jax (one jitted step of the shared trainer) vs the
same model in PyTorch, in the same run.

Model: Conv-4-64 (4 x [conv3x3-64, BN, ReLU, maxpool2], no conv bias), squared-Euclidean
ProtoNet loss on a 5-way 5-shot 15-query episode (100 images), Adam (lr 1e-3). Both sides train
on the same random episode; their initial losses are printed (same architecture, different
random init, so they agree only in magnitude). Timed steps are interleaved (jax,
torch, jax, ...) so that background load on a shared machine hits both alike; the median is
reported as episodes/s, and the ratio jax / torch.

Run::

  .venv/bin/python benchmarks/bench_fewshot.py                 # 84x84x3 (miniImageNet size)
  .venv/bin/python benchmarks/bench_fewshot.py --size=28 --channels=1 --iters=30

PyTorch is optional: without it only the JAX side runs and the script says torch is missing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np


def jax_step(args, x_s, y_s, x_q, y_q):
  import jax
  import optax

  from vision_jax import fewshot as fs
  from vision_jax.models import Conv4
  from vision_jax.train import create_train_state, make_mesh, make_train_step, to_global_batch
  from vision_jax.train.step import batch_shardings

  mesh = make_mesh(devices=jax.devices()[:1])
  task = fs.fewshot_task(Conv4(width=args.width, conv_impl=args.conv_impl), num_ways=args.ways)
  batch = {
    "support": x_s,
    "support_label": y_s,
    "support_class": y_s,
    "query": x_q,
    "query_label": y_q,
    "query_class": y_q,
  }
  tx = optax.adam(1e-3)
  bsh = batch_shardings(task, batch, mesh)
  gb = to_global_batch(batch, mesh, bsh)
  state, sh = create_train_state(task, tx, jax.random.PRNGKey(0), gb, mesh)
  step = make_train_step(task, tx, None, mesh, sh, bsh)
  holder = {"state": state}

  def run():
    holder["state"], m = step(holder["state"], gb)
    return jax.block_until_ready(m["loss"])

  first = float(run())
  return run, first, f"jax {jax.__version__} on {jax.devices()[0].device_kind}"


def torch_step(args, x_s, y_s, x_q, y_q):
  import torch
  from torch import nn

  torch.manual_seed(0)
  if args.threads:
    torch.set_num_threads(args.threads)
  layers, cin = [], args.channels
  for _ in range(4):
    layers += [
      nn.Conv2d(cin, args.width, 3, padding=1, bias=False),
      nn.BatchNorm2d(args.width),
      nn.ReLU(),
      nn.MaxPool2d(2),
    ]
    cin = args.width
  net = nn.Sequential(*layers, nn.Flatten())
  opt = torch.optim.Adam(net.parameters(), lr=1e-3)
  xs = torch.from_numpy(np.ascontiguousarray(x_s.transpose(0, 3, 1, 2)))
  xq = torch.from_numpy(np.ascontiguousarray(x_q.transpose(0, 3, 1, 2)))
  ys, yq = torch.from_numpy(y_s.astype(np.int64)), torch.from_numpy(y_q.astype(np.int64))
  n = args.ways

  def run():
    opt.zero_grad(set_to_none=True)
    emb = net(torch.cat([xs, xq]))
    s, q = emb[: len(xs)], emb[len(xs) :]
    protos = (
      torch.zeros(n, s.shape[1]).index_add_(0, ys, s)
      / torch.bincount(ys, minlength=n)[:, None].float()
    )
    loss = nn.functional.cross_entropy(-(torch.cdist(q, protos) ** 2), yq)
    loss.backward()
    opt.step()
    return loss.item()

  first = run()
  return run, first, f"torch {torch.__version__} CPU, {torch.get_num_threads()} threads"


def main(argv=None):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--size", type=int, default=84)
  p.add_argument("--channels", type=int, default=3)
  p.add_argument("--width", type=int, default=64)
  p.add_argument("--ways", type=int, default=5)
  p.add_argument("--shots", type=int, default=5)
  p.add_argument("--queries", type=int, default=15)
  p.add_argument("--iters", type=int, default=10)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
  p.add_argument("--conv_impl", default="auto")
  args = p.parse_args(argv)
  r = np.random.default_rng(0)
  shape = (args.size, args.size, args.channels)
  x_s = r.random((args.ways * args.shots, *shape), np.float32)
  x_q = r.random((args.ways * args.queries, *shape), np.float32)
  y_s = np.repeat(np.arange(args.ways, dtype=np.int32), args.shots)
  y_q = np.repeat(np.arange(args.ways, dtype=np.int32), args.queries)
  print(
    f"ProtoNet Conv-4-{args.width}, {args.ways}-way {args.shots}-shot {args.queries}-query, "
    f"{args.size}x{args.size}x{args.channels}, Adam; {args.iters} timed steps each"
  )
  sides = {"jax": jax_step(args, x_s, y_s, x_q, y_q)}
  try:
    sides["torch"] = torch_step(args, x_s, y_s, x_q, y_q)
  except ImportError as e:
    print(f"torch is not installed ({e}): PyTorch side skipped (pip install torch, CPU wheel).")
  for name, (_, first, desc) in sides.items():
    print(
      f"  {name}: {desc}; first-step loss {first:.4f} (log {args.ways} = {np.log(args.ways):.4f})"
    )
  for _ in range(args.warmup):
    for fn, _, _ in sides.values():
      fn()
  times = {k: [] for k in sides}
  for _ in range(args.iters):
    for name, (fn, _, _) in sides.items():
      t0 = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - t0)
  rate = {k: 1.0 / statistics.median(v) for k, v in times.items()}
  for k, v in rate.items():
    print(f"  {k:5s}: {v:8.2f} episodes/s (median of {args.iters}; min step {min(times[k]):.4f} s)")
  if "torch" in rate:
    print(f"  ratio jax / torch episodes/s: {rate['jax'] / rate['torch']:.2f}x")
  return rate


if __name__ == "__main__":
  main()
