"""MIPS on an accelerator: brute force vs AVQ ADC (the XLA search path), on JAX's default backend.

The CPU comparison against scann/faiss is ``bench_mips.py``; this script is for a GPU/TPU (it also
runs on CPU, where it is only a smoke test). Same data as ``bench_mips.py`` (synthetic clustered,
L2-normalised, glove-100 shaped), 200 bits per vector (d/2 blocks x 4 bits), T=0.2::

    python benchmarks/bench_mips.py ...                                   # CPU, vs scann/faiss
    python benchmarks/bench_mips_accel.py --n=1000000 --num_queries=10000  # on a GPU host

Prints, for batched queries (``--batch`` per call, timed after a warm-up, best of
``--repeats``): QPS and Recall10@10 of

* brute force: one ``q @ dbᵀ`` matmul + ``lax.top_k`` per batch (float32, and bfloat16 operands
  with float32 accumulation);
* exhaustive ADC (``num_leaves=0``: LUTs times one-hot codes, one matmul) + exact reorder;
* tree + ADC + exact reorder over a sweep of ``leaves_to_search``.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax import search
from vision_jax.utils import package_versions


def _timed(fn, queries, batch, repeats):
  """Best-of-``repeats`` wall time to answer all queries in batches; returns (s, ids)."""
  batches = [queries[i : i + batch] for i in range(0, len(queries), batch)]
  jax.block_until_ready(fn(batches[0]))  # compile
  best, ids = float("inf"), None
  for _ in range(repeats):
    t0 = time.perf_counter()
    outs = [fn(b) for b in batches]
    jax.block_until_ready(outs)
    best = min(best, time.perf_counter() - t0)
    ids = np.concatenate([np.asarray(o) for o in outs])
  return best, ids


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--n", type=int, default=100_000)
  p.add_argument("--dim", type=int, default=100)
  p.add_argument("--num_queries", type=int, default=1000)
  p.add_argument("--batch", type=int, default=1000)
  p.add_argument("--num_leaves", type=int, default=316)
  p.add_argument("--leaves", default="1,2,4,8,16", help="leaves_to_search sweep")
  p.add_argument("--reorder", type=int, default=100)
  p.add_argument("--threshold", type=float, default=0.2)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--out", default=None, help="write the results as JSON here")
  args = p.parse_args(argv)

  dev = jax.devices()[0]
  print("versions:", json.dumps(package_versions()))
  print(f"device: {dev.device_kind} ({dev.platform}), {jax.device_count()} device(s)")
  x = search.synthetic_clustered(
    args.n + args.num_queries, args.dim, num_clusters=200, normalize=True, seed=0
  )
  db, q = x[: args.n], x[args.n :]
  true_ids, _ = search.exact_mips(q, db, 10)
  true_ids = np.asarray(true_ids)
  dpb = 2
  rows = []

  def report(name, seconds, ids):
    qps = len(q) / seconds
    rec = search.recall_at(ids, true_ids, n_true=10, k=10)
    rows.append({"method": name, "qps": qps, "recall10_at_10": rec})
    print(f"{name:42s} Recall10@10 {rec:5.3f}   {qps:12,.0f} QPS")

  db_dev = jax.device_put(jnp.asarray(db))
  for dtype in (jnp.float32, jnp.bfloat16):

    @jax.jit
    def brute(qb, dtype=dtype):
      s = jnp.dot(qb.astype(dtype), db_dev.astype(dtype).T, preferred_element_type=jnp.float32)
      return jax.lax.top_k(s, 10)[1]

    t, ids = _timed(brute, jnp.asarray(q), args.batch, args.repeats)
    report(f"brute force ({jnp.dtype(dtype).name} operands)", t, ids)

  t0 = time.perf_counter()
  flat = search.AVQIndex.build(db, dims_per_block=dpb, threshold=args.threshold)
  print(f"(built exhaustive index in {time.perf_counter() - t0:.1f} s)")
  t, ids = _timed(
    lambda qb: flat.search(qb, 10, reorder=args.reorder, backend="xla")[0],
    q,
    args.batch,
    args.repeats,
  )
  report(f"exhaustive ADC + reorder {args.reorder}", t, ids)

  t0 = time.perf_counter()
  tree = search.AVQIndex.build(
    db, num_leaves=args.num_leaves, dims_per_block=dpb, threshold=args.threshold
  )
  print(f"(built {args.num_leaves}-leaf index in {time.perf_counter() - t0:.1f} s)")
  for leaves in [int(v) for v in args.leaves.split(",") if int(v) <= args.num_leaves]:
    t, ids = _timed(
      lambda qb, leaves=leaves: tree.search(
        qb, 10, leaves_to_search=leaves, reorder=args.reorder, backend="xla"
      )[0],
      q,
      args.batch,
      args.repeats,
    )
    report(f"tree ADC, leaves={leaves}, reorder {args.reorder}", t, ids)

  if args.out:
    with open(args.out, "w") as f:
      json.dump({"device": str(dev.device_kind), "args": vars(args), "rows": rows}, f, indent=1)
  return rows


if __name__ == "__main__":
  main()
