"""Command line: build datasets and measure read throughput.

python -m vision_jax.data prepare vj_fashion_mnist [--data_dir=DIR] [--manual_dir=DIR]
python -m vision_jax.data bench [--name=vj_fashion_mnist] [--split=train] [--batch=128]
    [--steps=200] [--threads=0,2]
"""

import argparse
import time

import numpy as np

import vision_jax.data as vd


def _prepare(args) -> None:
  t0 = time.perf_counter()
  for split in args.splits.split(","):
    src = vd.load(args.name, split, data_dir=args.data_dir, manual_dir=args.manual_dir)
    print(f"{args.name}/{split}: {len(src)} examples")
  print(f"ready in {time.perf_counter() - t0:.1f} s under {args.data_dir or vd.default_data_dir()}")


def _bench(args) -> None:
  src = vd.load(args.name, args.split, data_dir=args.data_dir, manual_dir=args.manual_dir)
  n = min(len(src), 2000)
  t0 = time.perf_counter()
  for i in range(n):
    src[i]
  dt = time.perf_counter() - t0
  print(f"random access src[i]: {n / dt:,.0f} examples/s")
  t0 = time.perf_counter()
  mem = vd.materialize(src)
  print(f"materialize({len(src)} examples): {time.perf_counter() - t0:.1f} s")
  to_float = lambda ex, rng: {"image": ex["image"].astype(np.float32) / 255.0, "label": ex["label"]}
  for name, source, threads in [("tfds", src, t) for t in map(int, args.threads.split(","))] + [
    ("materialized", mem, 0)
  ]:
    ds = vd.train_dataset(
      source,
      global_batch_size=args.batch,
      seed=0,
      transform=to_float,
      process_index=0,
      process_count=1,
    )
    it = vd.prefetch_iterator(ds, 0, num_threads=threads, buffer=max(2, 2 * threads))
    next(it)  # warm up
    t0 = time.perf_counter()
    for _ in range(args.steps):
      next(it)
    dt = time.perf_counter() - t0
    print(
      f"train_dataset({name}) batch={args.batch} threads={threads}: {args.steps / dt:,.1f} batches/s = "
      f"{args.steps * args.batch / dt:,.0f} examples/s"
    )


def main() -> None:
  parser = argparse.ArgumentParser(prog="python -m vision_jax.data", description=__doc__)
  sub = parser.add_subparsers(dest="cmd", required=True)
  for cmd in ("prepare", "bench"):
    p = sub.add_parser(cmd)
    p.add_argument("name", nargs="?", default="vj_fashion_mnist")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--manual_dir", default=None)
  sub.choices["prepare"].add_argument("--splits", default="train,test")
  b = sub.choices["bench"]
  b.add_argument("--split", default="train")
  b.add_argument("--batch", type=int, default=128)
  b.add_argument("--steps", type=int, default=200)
  b.add_argument("--threads", default="0,2")
  args = parser.parse_args()
  _prepare(args) if args.cmd == "prepare" else _bench(args)


if __name__ == "__main__":
  main()
