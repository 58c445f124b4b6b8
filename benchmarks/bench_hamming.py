"""Exact Hamming top-k: jit XOR + popcount (vision_jax.hashing) vs faiss.IndexBinaryFlat.

1M x 64-bit random codes, 256 queries, k = 10 by default. Both searches run in the same process
on the same codes; the JAX search uses uint32 words (2 per code), faiss the same bits as uint8.
Run:

  .venv/bin/pip install faiss-cpu==1.15.1
  .venv/bin/python benchmarks/bench_hamming.py              # both thread settings (subprocesses)
  .venv/bin/python benchmarks/bench_hamming.py --threads=1  # XLA and faiss single-threaded

``--threads=1`` sets XLA's CPU flags (``--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1``) before JAX is imported and ``faiss.omp_set_num_threads(1)``;
``--threads=0`` leaves both at their defaults. Reported: best-of-``--repeats`` QPS of each, the
ratio JAX/faiss, and a correctness check (the k distances must equal faiss's exactly).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def _parse():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--num_db", type=int, default=1_000_000)
  p.add_argument("--num_queries", type=int, default=256)
  p.add_argument("--bits", type=int, default=64)
  p.add_argument("--k", type=int, default=10)
  p.add_argument("--query_chunk", type=int, default=8)
  p.add_argument("--db_block", type=int, default=65536)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--threads", type=int, default=None, help="1 = single-thread, 0 = default")
  return p.parse_args()


def _run(args) -> None:
  if args.threads == 1:
    os.environ["XLA_FLAGS"] = (
      os.environ.get("XLA_FLAGS", "")
      + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    )
  import faiss
  import jax
  import numpy as np

  from vision_jax.hashing import hamming_topk, pack_codes, unpack_codes
  from vision_jax.utils.runinfo import package_versions

  if args.threads == 1:
    faiss.omp_set_num_threads(1)
  info = package_versions(extra=("faiss-cpu",))
  print(
    f"threads={'1' if args.threads == 1 else 'default'}  os.cpu_count={os.cpu_count()}  "
    f"faiss omp threads={faiss.omp_get_max_threads()}  devices={info['devices']}"
  )
  print("versions: " + ", ".join(f"{k}={info[k]}" for k in ("jax", "jaxlib", "numpy", "faiss-cpu")))

  rng = np.random.default_rng(0)
  if args.bits % 32:
    raise SystemExit(f"--bits must be a multiple of 32 for the uint32 path, got {args.bits}")
  # Uniform random bits, generated packed (a [1M, 64] int8 ±1 array would be 64 MB more).
  db8 = rng.integers(0, 256, (args.num_db, args.bits // 8), dtype=np.uint8)
  q8 = rng.integers(0, 256, (args.num_queries, args.bits // 8), dtype=np.uint8)
  sample = np.asarray(unpack_codes(db8[:64]))
  assert np.array_equal(np.asarray(pack_codes(sample, word_bits=32)), db8[:64].view(np.uint32))
  # LSB-first packing: the uint8 words viewed as uint32 are exactly pack_codes(word_bits=32).
  db32 = jax.device_put(db8.view(np.uint32))
  q32 = jax.device_put(q8.view(np.uint32))

  def jax_search():
    d, i = hamming_topk(q32, db32, k=args.k, query_chunk=args.query_chunk, db_block=args.db_block)
    return jax.block_until_ready(d), jax.block_until_ready(i)

  index = faiss.IndexBinaryFlat(args.bits)
  index.add(db8)

  def faiss_search():
    return index.search(q8, args.k)

  def best_qps(fn):
    out = fn()  # warm-up (compiles the jit)
    times = []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      out = fn()
      times.append(time.perf_counter() - t0)
    return args.num_queries / min(times), out

  jax_qps, (jd, ji) = best_qps(jax_search)
  faiss_qps, (fd, fi) = best_qps(faiss_search)
  same_dist = bool(np.array_equal(np.asarray(jd), fd))
  same_idx = float(np.mean(np.asarray(ji) == fi))
  print(
    f"N={args.num_db} bits={args.bits} Q={args.num_queries} k={args.k} "
    f"query_chunk={args.query_chunk} db_block={args.db_block}"
  )
  print(f"  jax  hamming_topk (uint32, jit, popcount): {jax_qps:10.1f} queries/s")
  print(f"  faiss IndexBinaryFlat                    : {faiss_qps:10.1f} queries/s")
  print(f"  ratio jax/faiss = {jax_qps / faiss_qps:.2f}x   (target >= 0.5x on CPU)")
  print(f"  distances identical: {same_dist}; indices identical: {same_idx:.3f} (ties may differ)")
  if not same_dist:
    raise SystemExit("distance mismatch between JAX and faiss")


def main() -> None:
  args = _parse()
  if args.threads is not None:
    _run(args)
    return
  for t in (1, 0):
    cmd = [sys.executable, __file__, f"--threads={t}"] + [
      f"--{k}={v}" for k, v in vars(args).items() if k != "threads"
    ]
    subprocess.run(cmd, check=True)


if __name__ == "__main__":
  main()
