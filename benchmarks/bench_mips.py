"""MIPS benchmark: vision_jax AVQIndex vs scann 1.4.2 vs faiss-cpu (IVF,PQx4fs + IndexRefineFlat).

Same data, same bits (d/2 blocks x 4 bits), same run, single thread for all three::

    .venv/bin/pip install -e '.[bench]'      # faiss-cpu==1.15.1, scann==1.4.2
    .venv/bin/python benchmarks/bench_mips.py --out runs/bench_mips

Part 1 (quantization quality, no tree, no re-ranking, exhaustive AH/ADC): Recall1@10 and
Recall10@10 of ours vs scann ``score_ah(2, T)`` with T=0.2 and T=nan (isotropic).
Part 2 (speed): Recall10@10 and single-thread batched QPS over a sweep of leaves / reorder
(faiss: nprobe / k_factor) for ours with both search backends (``xla``: padded gather ADC +
``lax.top_k``; ``native``: the C++ FFI kernel, uint8 LUT16 fast scan with exact reorder, and
``native-f32``: the same kernel with float32 LUTs), scann and faiss; recall-vs-QPS pairs, best QPS
at Recall10@10 >= 0.9, the ratios to faiss/scann, a per-stage time breakdown of ours at our best
setting (the fused native kernel's own stage clocks: leaf scores + top-L, LUT build, uint8
quantization, ADC + top-R, exact reorder; the kernel call alone; the public search; the XLA
path's stages), the native thread scaling (same index and queries, ``--threads=1,2``: QPS ratio
and whether the results are bit-equal) and the load average at start and end.

Data (default): synthetic clustered, L2-normalised (the glove-100-angular setting; the real
file is not reachable offline), ``--n`` x ``--dim``; ``--dataset=word2vec`` uses the wefe sample
(normalised), ``--dataset=hdf5 --hdf5=PATH`` an ann-benchmarks file.
"""

from __future__ import annotations

import os

# Single-threaded XLA CPU (must precede the jax import).
os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "")
  + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # no idle BLAS threads spinning beside us
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GLOG_minloglevel", "2")

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from vision_jax import search  # noqa: E402
from vision_jax.utils import package_versions  # noqa: E402
from vision_jax.utils.plotting import pyplot, save_figure  # noqa: E402


def _cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def load(args):
  if args.dataset == "synthetic":
    x = search.synthetic_clustered(
      args.n + args.num_queries, args.dim, num_clusters=200, normalize=True, seed=0
    )
    db, q = search.split_queries(x, args.num_queries, seed=0)
    name = f"synthetic clustered unit-norm {len(db)} x {args.dim}"
  elif args.dataset == "word2vec":
    x, _ = search.load_word2vec_sample()
    x = np.asarray(search.normalize_rows(x))
    db, q = search.split_queries(x, args.num_queries, seed=0)
    name = f"word2vec (wefe) unit-norm {len(db)} x {db.shape[1]}"
  else:
    f = search.load_ann_benchmarks_hdf5(args.hdf5)
    db = np.asarray(search.normalize_rows(f["train"]))
    q = np.asarray(search.normalize_rows(f["test"][: args.num_queries]))
    name = f"{os.path.basename(args.hdf5)} {len(db)} x {db.shape[1]}"
  gt, _ = search.exact_mips(q, db, 10)
  return np.ascontiguousarray(db, np.float32), np.ascontiguousarray(q, np.float32), gt, name


def timed(fn, repeats: int) -> tuple[float, object]:
  out = fn()  # warm-up (compiles for ours)
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = fn()
    best = min(best, time.perf_counter() - t0)
  return best, out


def stage_breakdown(index, q, L: int, R: int, repeats: int) -> dict:
  """Seconds per stage for the whole query set at leaves=L, reorder=R, one thread.

  Native: the fused kernel's own clocks per stage (:func:`native.search_stage_times`, uint8 and
  float32 LUTs), the kernel call alone (jitted, queries already on the device) and the public
  ``AVQIndex.search`` (adds input validation, the host->device copy and dispatch). XLA: each
  stage of the pure-XLA path jitted and timed alone, and its ``AVQIndex.search``.
  """
  import jax
  import jax.numpy as jnp
  from jax import lax

  from vision_jax.search import index as ix
  from vision_jax.search import native

  out = {}
  ct, cbt = (np.asarray(a) for a in index._native_query_arrays())
  db = np.asarray(index.database)
  for lut in ("uint8", "float32"):
    arrays = [np.asarray(a) for a in index._native_arrays(lut)]
    perm, off, codes, goff = arrays
    best = None
    for _ in range(repeats + 1):
      _, _, st = native.search_stage_times(
        q, ct, cbt, db, codes, off, goff, perm, k=10, leaves=L, reorder=R, lut=lut
      )
      best = st if best is None else {k: min(v, st[k]) for k, v in best.items()}
    for name, t in best.items():
      if lut == "float32" and name == "LUT uint8 quantization":
        continue
      out[f"native {lut}: {name}"] = t
    out[f"native {lut}: sum of stages"] = sum(best.values())
  qj = jnp.asarray(q)
  dev = index._native_arrays("uint8")
  kernel = functools.partial(
    ix._search_batch_native, k=10, leaves_to_search=L, reorder=R, lut="uint8", num_threads=1
  )
  qa = index._native_query_arrays()

  leaf_fn = jax.jit(lambda qq, c: lax.top_k(qq @ c.T, L))
  lut_fn = jax.jit(ix.lookup_tables)
  bias, leaves = leaf_fn(qj, index.leaf_centers)
  luts = lut_fn(qj, index.codebooks)

  @jax.jit
  def xla_adc(luts, bias, leaves, members, codes):
    m = members.shape[1]
    cand = members[leaves].reshape(len(bias), L * m)
    sc = ix.adc_scores(luts, codes[jnp.maximum(cand, 0)]) + jnp.repeat(bias, m, axis=1)
    sc, pos = lax.top_k(jnp.where(cand >= 0, sc, -jnp.inf), R)
    return jnp.take_along_axis(cand, pos, axis=1), sc

  ids, _ = xla_adc(luts, bias, leaves, index.members, index.codes)
  rr = jax.jit(ix._rerank, static_argnames=("k",))
  timed_stages = {
    "native uint8: kernel call (jit, queries on device)": lambda: kernel(
      qj, *qa, index.database, *dev
    ),
    "native uint8: AVQIndex.search end-to-end": lambda: index.search(
      q, 10, leaves_to_search=L, reorder=R, backend="native", num_threads=1
    ),
    "xla: leaf scoring (matmul + top_k)": lambda: leaf_fn(qj, index.leaf_centers),
    "xla: LUT build (einsum)": lambda: lut_fn(qj, index.codebooks),
    "xla: ADC + top-R (gather + top_k)": lambda: xla_adc(
      luts, bias, leaves, index.members, index.codes
    ),
    "xla: exact reorder (gather + dot + top_k)": lambda: rr(qj, index.database, ids, k=10),
    "xla: AVQIndex.search end-to-end": lambda: index.search(
      q, 10, leaves_to_search=L, reorder=R, backend="xla"
    ),
  }
  for name, fn in timed_stages.items():
    out[name], _ = timed(lambda fn=fn: jax.block_until_ready(fn()), repeats)
  return out


def thread_scaling(index, q, L: int, R: int, repeats: int, threads=(1, 2), batch=None) -> dict:
  """Native QPS of the same index and queries at each thread count (timed in turn, best of
  ``repeats`` rounds), and whether every count returns the same ids and scores as the first
  (bit for bit). ``batch``: queries per native call (default: the search's own, <= 1,024)."""
  import jax

  fns = {
    nt: lambda nt=nt: jax.block_until_ready(
      index.search(
        q, 10, leaves_to_search=L, reorder=R, backend="native", num_threads=nt, batch_size=batch
      )
    )
    for nt in threads
  }
  res = {nt: tuple(np.asarray(a) for a in fn()) for nt, fn in fns.items()}  # warm-up
  best = dict.fromkeys(threads, float("inf"))
  cpu = dict.fromkeys(threads, float("inf"))
  for _ in range(repeats):
    for nt, fn in fns.items():
      t, c = time.perf_counter(), time.process_time()
      fn()
      best[nt] = min(best[nt], time.perf_counter() - t)
      cpu[nt] = min(cpu[nt], time.process_time() - c)
  qps = {nt: len(q) / t for nt, t in best.items()}
  cpu_us = {nt: 1e6 * c / len(q) for nt, c in cpu.items()}
  one = res[threads[0]]
  equal = all(
    np.array_equal(res[nt][0], one[0]) and np.array_equal(res[nt][1], one[1]) for nt in threads
  )
  return dict(
    qps=qps,
    ratio=qps[threads[-1]] / qps[threads[0]],
    results_equal=equal,
    cpu_us_per_query=cpu_us,
    num_queries=len(q),
    batch=batch or min(len(q), 1024),
  )


def load_average() -> str:
  try:
    with open("/proc/loadavg") as f:
      return " ".join(f.read().split()[:3])
  except OSError:
    return "unknown"


def best_qps_at(pairs, target: float):
  ok = [p for p in pairs if p["recall10_at10"] >= target]
  return max(ok, key=lambda p: p["qps"]) if ok else None


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--dataset", default="synthetic", choices=("synthetic", "word2vec", "hdf5"))
  ap.add_argument("--hdf5", default="")
  ap.add_argument("--n", type=int, default=100_000)
  ap.add_argument("--dim", type=int, default=100)
  ap.add_argument("--num_queries", type=int, default=1000)
  ap.add_argument("--num_leaves", type=int, default=0, help="default ~sqrt(n)")
  ap.add_argument("--dims_per_block", type=int, default=2)
  ap.add_argument("--threshold", type=float, default=0.2)
  ap.add_argument("--leaves", default="1,2,4,8,16")
  ap.add_argument("--reorders", default="20,40,100")
  ap.add_argument("--repeats", type=int, default=2)
  ap.add_argument("--skip_quality", action="store_true")
  ap.add_argument(
    "--threads", default="1,2", help="thread counts of the native scaling check (first = base)"
  )
  ap.add_argument(
    "--scaling_queries",
    type=int,
    default=10_000,
    help="the thread scaling is also timed on the query set tiled to this many queries, in one "
    "native call (0 = only the query set itself, in batches of <= 1,024)",
  )
  ap.add_argument(
    "--ours_index", default="", help="load our Part 2 index from this .npz (build + save if absent)"
  )
  ap.add_argument("--out", default="runs/bench_mips")
  args = ap.parse_args()
  os.makedirs(args.out, exist_ok=True)

  import faiss
  import jax
  import scann

  faiss.omp_set_num_threads(1)
  load_start = load_average()
  print(f"load average (1, 5, 15 min) at start: {load_start}")
  vers = package_versions(extra=("scann", "faiss-cpu"))
  print(f"CPU: {_cpu_name()} ({os.cpu_count()} logical cores; all timings single-thread)")
  print(
    f"jax device: {jax.devices()[0].device_kind}; versions: "
    + ", ".join(f"{k}={vers[k]}" for k in ("jax", "jaxlib", "numpy", "scann", "faiss-cpu"))
  )
  db, q, gt, name = load(args)
  n, d = db.shape
  nl = args.num_leaves or int(round(np.sqrt(n)))
  dpb, T = args.dims_per_block, args.threshold
  bits = 4 * d // dpb
  print(f"data: {name}; {len(q)} queries; {bits} bits/vector (LUT16, {dpb} dims/block); T={T}")
  results = dict(data=name, bits=bits, threshold=T, num_leaves=nl, cpu=_cpu_name(), versions=vers)

  # ---------------------------------------------------------------- brute force reference
  t_bf, _ = timed(lambda: search.exact_mips(q, db, 10), args.repeats)
  results["brute_force_qps"] = len(q) / t_bf
  print(f"\nbrute force (jax float32 matmul + top_k): {len(q) / t_bf:,.0f} QPS")

  # ---------------------------------------------------------------- part 1: quality
  if not args.skip_quality:
    print("\nPart 1: quantization quality, exhaustive AH/ADC, no re-ranking")
    qual = []

    def add(system, setting, ids, build_s):
      r = dict(
        system=system,
        setting=setting,
        recall1_at10=search.recall_at(ids, gt, n_true=1, k=10),
        recall10_at10=search.recall_at(ids, gt, n_true=10, k=10),
        build_s=build_s,
      )
      qual.append(r)
      print(
        f"  {system:<6} {setting:<40} R1@10={r['recall1_at10']:.4f}  "
        f"R10@10={r['recall10_at10']:.4f}  build={build_s:.1f}s",
        flush=True,
      )

    for t_s, kw in (("T=nan (isotropic)", {}), (f"T={T}", {"threshold": T})):
      t0 = time.perf_counter()
      ours = search.AVQIndex.build(db, dims_per_block=dpb, **kw)
      ids = np.asarray(ours.search(q, 10)[0])
      add("ours", t_s + " encode-only", ids, time.perf_counter() - t0)
      if kw:
        t0 = time.perf_counter()
        ours = search.AVQIndex.build(
          db, dims_per_block=dpb, codebook_update="blockwise", codebook_update_rounds=3, **kw
        )
        ids = np.asarray(ours.search(q, 10)[0])
        add("ours", t_s + " + LS codebook update", ids, time.perf_counter() - t0)
      t0 = time.perf_counter()
      s = (
        scann.scann_ops_pybind.builder(db, 10, "dot_product")
        .score_ah(dpb, anisotropic_quantization_threshold=kw.get("threshold", float("nan")))
        .build()
      )
      bs = time.perf_counter() - t0
      s.set_num_threads(1)
      ids = s.search_batched(q, final_num_neighbors=10)[0]
      add("scann", t_s, ids, bs)
    results["quality"] = qual

  # ---------------------------------------------------------------- part 2: speed
  print(f"\nPart 2: Recall10@10 vs single-thread QPS ({nl} leaves / nlist)")
  leaves = [int(v) for v in args.leaves.split(",") if int(v) <= nl]
  reorders = [int(v) for v in args.reorders.split(",")]
  curves = {"ours-native": [], "ours-native-f32": [], "ours-xla": [], "scann": [], "faiss": []}

  def record(system, setting, t, ids):
    p = dict(
      setting=setting, qps=len(q) / t, recall10_at10=search.recall_at(ids, gt, n_true=10, k=10)
    )
    curves[system].append(p)
    print(
      f"  {system:<15} {setting:<28} R10@10={p['recall10_at10']:.4f}  QPS={p['qps']:>9,.0f}",
      flush=True,
    )

  t0 = time.perf_counter()
  if args.ours_index and os.path.exists(args.ours_index):
    ours = search.AVQIndex.load(args.ours_index)
    print(f"  ours: loaded {args.ours_index} (build time not measured)")
  else:
    ours = search.AVQIndex.build(db, num_leaves=nl, dims_per_block=dpb, threshold=T)
    results["ours_build_s"] = time.perf_counter() - t0
    if args.ours_index:
      ours.save(args.ours_index)
    print(f"  ours build {results['ours_build_s']:.1f}s")
  sizes = np.diff(ours._native_arrays("float32")[1])
  print(f"  leaf sizes: max {sizes.max()}, mean {sizes.mean():.0f}, empty {(sizes == 0).sum()}")
  from vision_jax.search import native

  if not native.available():
    print(f"  native kernel unavailable ({native.unavailable_reason()}); native = XLA path")
  else:
    print(
      f"  native LUT16 variant: {native.lut16_variant()} ({', '.join(native.supported_variants())})"
    )
  t0 = time.perf_counter()
  sc = (
    scann.scann_ops_pybind.builder(db, 10, "dot_product")
    .tree(num_leaves=nl, num_leaves_to_search=leaves[0], training_sample_size=n)
    .score_ah(dpb, anisotropic_quantization_threshold=T)
    .reorder(max(reorders))
    .build()
  )
  results["scann_build_s"] = time.perf_counter() - t0
  sc.set_num_threads(1)
  t0 = time.perf_counter()
  base = faiss.index_factory(d, f"IVF{nl},PQ{d // dpb}x4fs", faiss.METRIC_INNER_PRODUCT)
  fi = faiss.IndexRefineFlat(base)
  fi.train(db)
  fi.add(db)
  results["faiss_build_s"] = time.perf_counter() - t0
  ivf = faiss.extract_index_ivf(base)
  print(f"  builds: scann {results['scann_build_s']:.1f}s, faiss {results['faiss_build_s']:.1f}s")

  def ours_fn(backend, lut, L, R):
    return lambda: jax.block_until_ready(
      ours.search(
        q, 10, leaves_to_search=L, reorder=R, backend=backend, native_lut=lut, num_threads=1
      )
    )[0]

  def faiss_fn(L, R):
    def run():
      ivf.nprobe = L
      fi.k_factor = R / 10.0
      return fi.search(q, 10)[1]

    return run

  # Per setting, every system is timed in turn, `repeats` rounds (best kept), so a change of the
  # machine's load hits all systems alike.
  for L in leaves:
    for R in reorders:
      runs = {
        "ours-native": ("", ours_fn("native", "uint8", L, R)),
        "ours-native-f32": ("", ours_fn("native", "float32", L, R)),
        "ours-xla": ("", ours_fn("xla", "auto", L, R)),
        "scann": (
          "",
          lambda L=L, R=R: sc.search_batched(
            q, final_num_neighbors=10, leaves_to_search=L, pre_reorder_num_neighbors=R
          )[0],
        ),
        "faiss": (f"nprobe={L} k_factor={R / 10:g}", faiss_fn(L, R)),
      }
      ids = {s: np.asarray(fn()) for s, (_, fn) in runs.items()}  # warm-up (compiles ours)
      best = dict.fromkeys(runs, float("inf"))
      for _ in range(args.repeats):
        for s, (_, fn) in runs.items():
          t = time.perf_counter()
          fn()
          best[s] = min(best[s], time.perf_counter() - t)
      for s, (setting, _) in runs.items():
        record(s, setting or f"leaves={L} reorder={R}", best[s], ids[s])

  # ---------------------------------------------------------------- summary
  print("\nBest single-thread QPS at Recall10@10 >= 0.9 (batched queries):")
  best = {s: best_qps_at(c, 0.9) for s, c in curves.items()}
  for s, b in best.items():
    print(
      f"  {s:<6} "
      + (
        f"{b['qps']:>9,.0f} QPS ({b['setting']}, R10@10={b['recall10_at10']:.3f})"
        if b
        else "never reaches 0.9 in this sweep"
      )
    )
  ratios = {}
  for mine in ("ours-native", "ours-native-f32", "ours-xla"):
    for other in ("faiss", "scann"):
      if best[mine] and best[other]:
        key = f"{mine}/{other}"
        ratios[key] = best[mine]["qps"] / best[other]["qps"]
        print(f"  ratio {key} at Recall10@10 >= 0.9: {ratios[key]:.2f}x")
  results.update(curves=curves, best_at_0_9=best, ratios=ratios)

  # ---------------------------------------------------------------- where the time goes
  b = best["ours-native"] or best["ours-xla"]
  if b and native.available():
    L, R = (int(v.split("=")[1]) for v in b["setting"].split())
    print(f"\nWhere the time goes (ours, leaves={L} reorder={R}, {len(q)} queries, 1 thread):")
    stages = stage_breakdown(ours, q, L, R, args.repeats)
    for name, t in stages.items():
      print(f"  {name:<58} {1e6 * t / len(q):8.2f} us/query")
    results["stages_s"] = dict(setting=b["setting"], **stages)
    nts = tuple(int(v) for v in args.threads.split(","))
    sets = [("query set", q, None)]
    if args.scaling_queries > len(q):
      reps = -(-args.scaling_queries // len(q))
      big = np.tile(q, (reps, 1))[: args.scaling_queries]
      sets.append((f"query set tiled to {len(big):,}, one call", big, len(big)))
    for label, qs, batch in sets:
      print(
        f"\nThreads (native, queries split over threads, same index, leaves={L} reorder={R}; "
        f"{label}: {len(qs):,} queries):"
      )
      sc_ = thread_scaling(ours, qs, L, R, max(args.repeats, 5), nts, batch)
      for nt, v in sc_["qps"].items():
        print(
          f"  num_threads={nt}: {v:10,.0f} QPS, process CPU "
          f"{sc_['cpu_us_per_query'][nt]:.2f} us/query"
        )
      print(
        f"  scaling {nts[-1]} threads / {nts[0]}: {sc_['ratio']:.2f}x; results equal to "
        f"num_threads={nts[0]}: {sc_['results_equal']}"
      )
      cpu = sc_["cpu_us_per_query"]
      print(
        f"  CPU time per query {nts[-1]} threads / {nts[0]}: {cpu[nts[-1]] / cpu[nts[0]]:.2f} (~1: "
        "no added work, so a wall ratio below the thread count means the cores were not free)"
      )
      if batch is not None:
        results["native_threads_large_batch"] = sc_
      else:
        results["native_threads"] = sc_
  results["load_average"] = dict(start=load_start, end=load_average())
  print("\nSummary (best single-thread QPS at Recall10@10 >= 0.9):")
  for s in ("ours-native", "scann", "faiss"):
    if best[s]:
      print(f"  {s:<12} {best[s]['qps']:>9,.0f} QPS  {best[s]['setting']}")
  for key in ("ours-native/scann", "ours-native/faiss"):
    if key in ratios:
      print(f"  {key}: {ratios[key]:.2f}x")
  for key in ("native_threads", "native_threads_large_batch"):
    if key in results:
      t = results[key]
      print(
        f"  native thread scaling {nts[-1]}/{nts[0]}, {t['num_queries']:,} queries in batches of "
        f"{t['batch']:,}: {t['ratio']:.2f}x (equal: {t['results_equal']})"
      )
  print(f"  load average (1, 5, 15 min): start {load_start}, end {results['load_average']['end']}")
  with open(os.path.join(args.out, "bench_mips.json"), "w") as f:
    json.dump(results, f, indent=2, default=float)

  plt = pyplot()

  fig, ax = plt.subplots(figsize=(7, 5))
  for s, c in curves.items():
    c = sorted(c, key=lambda p: p["recall10_at10"])
    ax.scatter([p["recall10_at10"] for p in c], [p["qps"] for p in c], label=s, s=18)
    # Pareto frontier.
    front, top = [], -1.0
    for p in sorted(c, key=lambda p: -p["recall10_at10"]):
      if p["qps"] > top:
        front.append(p)
        top = p["qps"]
    ax.plot([p["recall10_at10"] for p in front], [p["qps"] for p in front])
  ax.axvline(0.9, color="gray", ls=":")
  ax.set_yscale("log")
  ax.set_xlabel("Recall10@10")
  ax.set_ylabel("queries per second (1 thread, batched)")
  ax.set_title(f"{name}, {bits} bits, T={T}", fontsize=9)
  ax.legend()
  ax.grid(alpha=0.3, which="both")
  save_figure(fig, os.path.join(args.out, "recall_vs_qps.png"))
  print(f"\nwrote {args.out}/bench_mips.json and recall_vs_qps.png")


if __name__ == "__main__":
  main()
