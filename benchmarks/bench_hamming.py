"""Exact Hamming top-k: vision_jax.hashing (native FFI kernel and XLA jit) vs faiss.IndexBinaryFlat.

1M x 64-bit random codes, 256 queries, k = 10 by default. All searches run in the same process
on the same codes; ours use uint32 words (2 per code), faiss the same bits as uint8. Run:

  .venv/bin/pip install faiss-cpu==1.15.1
  .venv/bin/python benchmarks/bench_hamming.py              # both thread settings (subprocesses)
  .venv/bin/python benchmarks/bench_hamming.py --threads=1  # everything single-threaded
  # an AVX2-only machine, emulated: our AVX2 variant against faiss's AVX2 level
  .venv/bin/python benchmarks/bench_hamming.py --variant=avx2 --faiss_simd_level=AVX2

``--threads=1`` sets XLA's CPU flags (``--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1``) before JAX is imported, ``num_threads=1`` for the native kernel
and ``faiss.omp_set_num_threads(1)``; ``--threads=0`` leaves XLA and faiss at their defaults and
gives the native kernel every core this process may use. Reported: the CPU's AVX-512 features
(as ``lscpu | grep -o 'avx512[a-z_]*' | sort -u``), the native kernel's variant and faiss's SIMD
level, best-of-``--repeats`` QPS of each search, the ratios to faiss, and correctness checks (the
native results must equal the XLA path's exactly, the distances faiss's).
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
  p.add_argument("--variant", default=None, help="force the native kernel's variant")
  p.add_argument("--faiss_simd_level", default=None, help="sets $FAISS_SIMD_LEVEL, e.g. AVX2")
  p.add_argument("--skip_xla", action="store_true", help="time only native and faiss")
  return p.parse_args()


def _cpu_features() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      flags = next(line for line in f if line.startswith("flags")).split(":")[1].split()
  except (OSError, StopIteration):
    return "unknown (no /proc/cpuinfo)"
  avx512 = sorted({f for f in flags if f.startswith("avx512")})
  return f"avx2={'avx2' in flags} popcnt={'popcnt' in flags} " + (" ".join(avx512) or "no avx512")


def _run(args) -> None:
  if args.threads == 1:
    os.environ["XLA_FLAGS"] = (
      os.environ.get("XLA_FLAGS", "")
      + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    )
  if args.faiss_simd_level:
    os.environ["FAISS_SIMD_LEVEL"] = args.faiss_simd_level
  import faiss
  import jax
  import numpy as np

  from vision_jax.hashing import hamming_topk, native, pack_codes, unpack_codes
  from vision_jax.utils.runinfo import package_versions

  if args.threads == 1:
    faiss.omp_set_num_threads(1)
  threads = 1 if args.threads == 1 else native.default_num_threads()
  info = package_versions(extra=("faiss-cpu",))
  print(
    f"threads={'1' if args.threads == 1 else 'default'}  os.cpu_count={os.cpu_count()}  "
    f"native threads={threads}  faiss omp threads={faiss.omp_get_max_threads()}  "
    f"devices={info['devices']}"
  )
  print("versions: " + ", ".join(f"{k}={info[k]}" for k in ("jax", "jaxlib", "numpy", "faiss-cpu")))
  if not native.available():
    raise SystemExit(f"native kernel unavailable: {native.unavailable_reason()}")
  variant = args.variant or native.best_variant()
  print(f"cpu features: {_cpu_features()}")
  print(
    f"native variant: {variant} (supported: {', '.join(native.supported_variants())}); "
    f"faiss SIMD level: {faiss.SIMDConfig.get_level_name()}"
  )

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

  def native_search():
    out = hamming_topk(
      q32, db32, k=args.k, backend="native", num_threads=threads, native_variant=variant
    )
    return jax.block_until_ready(out)

  def xla_search():
    out = hamming_topk(
      q32, db32, k=args.k, query_chunk=args.query_chunk, db_block=args.db_block, backend="xla"
    )
    return jax.block_until_ready(out)

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

  nat_qps, (nd, ni) = best_qps(native_search)
  faiss_qps, (fd, fi) = best_qps(faiss_search)
  print(
    f"N={args.num_db} bits={args.bits} Q={args.num_queries} k={args.k} "
    f"query_chunk={args.query_chunk} db_block={args.db_block}"
  )
  print(f"  native hamming_topk ({variant}, {threads} thr): {nat_qps:10.1f} queries/s")
  if not args.skip_xla:
    xla_qps, (xd, xi) = best_qps(xla_search)
    print(f"  xla    hamming_topk (jit, popcount)  : {xla_qps:10.1f} queries/s")
  print(f"  faiss  IndexBinaryFlat               : {faiss_qps:10.1f} queries/s")
  print(
    f"  ratio native/faiss = {nat_qps / faiss_qps:.2f}x (target >= 1.0x) on "
    f"[{_cpu_features()}] with variant {variant}"
  )
  if not args.skip_xla:
    print(f"  ratio xla/faiss    = {xla_qps / faiss_qps:.2f}x")
    same = np.array_equal(np.asarray(nd), np.asarray(xd)) and np.array_equal(ni, xi)
    print(f"  native == xla (distances and indices): {same}")
    if not same:
      raise SystemExit("native and XLA results differ")
  same_dist = bool(np.array_equal(np.asarray(nd), fd))
  same_idx = float(np.mean(np.asarray(ni) == fi))
  print(f"  distances == faiss: {same_dist}; indices == faiss: {same_idx:.3f} (ties may differ)")
  if not same_dist:
    raise SystemExit("distance mismatch between ours and faiss")


def main() -> None:
  args = _parse()
  if args.threads is not None:
    _run(args)
    return
  for t in (1, 0):
    cmd = (
      [sys.executable, __file__, f"--threads={t}"]
      + [
        f"--{k}={v}"
        for k, v in vars(args).items()
        if k not in ("threads", "skip_xla") and v is not None
      ]
      + (["--skip_xla"] if args.skip_xla else [])
    )
    subprocess.run(cmd, check=True)


if __name__ == "__main__":
  main()
