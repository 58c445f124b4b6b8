"""Margin-loss head benchmark: vision_jax vs pytorch-metric-learning, forward+backward.

Measures, at B=512, D=512 and C in {10k, 100k, 1M} (by default), the time of one
forward+backward pass (gradients w.r.t. embeddings and class weights; for IR w.r.t. embeddings
plus the class-centre update) and its peak extra memory, for

* vision_jax ``am_softmax_loss`` (s=64, m=0.35), ``arcface_loss`` (s=64, m=28.6° in radians),
  ``ir_am_softmax_loss`` + ``update_class_centers``, and a bare ``x @ W^T`` matmul (the floor:
  a margin head is three B x D x C matmuls: forward, dX, dW); our losses run with their default
  ``chunk_size`` (class-chunked above C = 16,384 at B = 512; ``--chunk_size=0`` for unchunked);
* pytorch-metric-learning ``CosFaceLoss`` / ``ArcFaceLoss`` (same s, m) and a bare torch matmul,

in the same run, printing ratios, and beside the memory the bytes a step cannot avoid
(``unavoidable_bytes``: the gradients dW + dX, for IR the new centres + dX). Each configuration
runs in its own subprocess so that peak memory is per configuration; up to
``--interleave_max_classes`` the two libraries' workers of a row run side by side with their
timed steps interleaved one by one (ours, PML, ours, ...), so that background load on a shared
machine hits both alike; larger rows run them one after the other, so that their peaks do not
add up. Peak memory: peak RSS (``VmHWM`` after resetting it via ``/proc/self/clear_refs``) minus
RSS before the step, i.e. temporaries + gradients of one step, inputs excluded; taken as the max
over the first step (XLA:CPU keeps freed buffers for reuse after it, so later steps show ~0) and
the timed steps. XLA's own buffer assignment (``memory_analysis``: temp + output bytes) is
printed as a cross-check. On GPU, JAX reports ``peak_bytes_in_use`` and torch (if it has CUDA)
``max_memory_allocated`` instead. Before timing, the two libraries' losses are checked to agree.
torch and PML are not dependencies of vision_jax; put them on ``PYTHONPATH`` for this script
(without them the PML columns show an error and ours still run).

Run (CPU; at C = 1M PML's worker needs several GB beyond ours, and each row takes minutes)::

  .venv/bin/python benchmarks/bench_margin_loss.py --iters=7                      # all cores
  .venv/bin/python benchmarks/bench_margin_loss.py --iters=7 --threads=1          # 1 core each
  .venv/bin/python benchmarks/bench_margin_loss.py --iters=7 --allocator=tuned     # both tuned
  .venv/bin/python benchmarks/bench_margin_loss.py --classes=1000000 --iters=3    # the 1M row
  .venv/bin/python benchmarks/bench_margin_loss.py --classes=10000 --iters=3      # quicker

Targets: ours <= 0.7x PML's time and <= 1.0x its peak memory; at C = 1M, ours <= 1.2x the
unavoidable bytes and <= 1.2x the time of three bare matmuls.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

# This checkout's vision_jax (workers included), not whichever one the environment installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MARGIN_DEG = 28.6  # PML's ArcFace default, in degrees


def _rss_bytes(field: str) -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) * 1024
  return -1


def _reset_peak() -> bool:
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def _time(step, iters):
  """Median and min of ``iters`` timed steps.

  In ``--serve`` mode (``VJ_BENCH_SERVE=1``) the worker instead prints ``READY`` and times one
  step per ``t`` line on stdin until ``q``, so that the parent can interleave the two
  libraries' steps: on a shared machine both then see the same background load.
  """
  times = []
  if os.environ.get("VJ_BENCH_SERVE") == "1":
    print("READY", flush=True)
    for line in sys.stdin:
      if line.strip() != "t":
        break
      t0 = time.perf_counter()
      step()
      times.append(time.perf_counter() - t0)
      print(f"{times[-1]:.6f}", flush=True)
  else:
    for _ in range(iters):
      t0 = time.perf_counter()
      step()
      times.append(time.perf_counter() - t0)
  times.sort()
  return times[len(times) // 2], times[0]


def unavoidable_bytes(kind, batch, dim, classes):
  """Bytes a forward+backward step cannot avoid holding beyond its inputs (float32).

  A margin head's gradients: ``dW`` (``C x D``) and ``dX`` (``B x D``); an IR step instead
  returns ``dX`` and the updated centres (``C x D``, the weights get no gradient). The loss
  value itself, ``[B]``, is negligible; ``matmul`` (the floor's bare ``x W^T``) outputs
  ``[B, C]``.
  """
  if kind == "matmul":
    return 4 * batch * classes
  return 4 * (classes * dim + batch * dim + batch)


def _class_weights(rng, classes, dim):
  """``[C, D]`` float32 N(0, 0.01^2) weights, drawn in float32 (no 8-byte copy: 4 GB at 1M)."""
  w = rng.standard_normal((classes, dim), dtype=np.float32)
  w *= 0.01
  return w


def worker_jax(kind, batch, dim, classes, iters, threads=0, chunk_size=None):
  import jax
  import jax.numpy as jnp

  from vision_jax import losses as L

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(batch, dim)).astype(np.float32))
  w = jnp.asarray(_class_weights(rng, classes, dim))
  y = jnp.asarray(rng.integers(0, classes, size=batch).astype(np.int32))
  margin = math.radians(MARGIN_DEG)

  if kind == "matmul":
    fn = jax.jit(lambda x, w, y: x @ w.T)
  elif kind == "am_softmax":
    fn = jax.jit(
      jax.value_and_grad(
        lambda x, w, y: jnp.mean(
          L.am_softmax_loss(x, w, y, scale=64.0, margin=0.35, chunk_size=chunk_size)
        ),
        (0, 1),
      )
    )
  elif kind == "arcface":
    fn = jax.jit(
      jax.value_and_grad(
        lambda x, w, y: jnp.mean(
          L.arcface_loss(x, w, y, scale=64.0, margin=margin, chunk_size=chunk_size)
        ),
        (0, 1),
      )
    )
  elif kind == "ir_am_softmax":

    def step(x, c, y):
      loss, gx = jax.value_and_grad(
        lambda x: jnp.mean(
          L.ir_am_softmax_loss(x, c, y, scale=64.0, margin=0.35, chunk_size=chunk_size)
        )
      )(x)
      c = L.update_class_centers(c, jax.lax.stop_gradient(x), y, momentum=0.9)
      return loss, gx, c

    fn = jax.jit(step)
  else:
    raise ValueError(kind)

  compiled = fn.lower(x, w, y).compile()  # compile first: its memory is not the step's
  # Inputs resident and touched before the base RSS (a host-to-device copy may be lazy), and a
  # throwaway computation over all of w so that its pages count as input, not as the step's.
  jax.block_until_ready((x, w, y))
  float(jnp.sum(w))

  def run():
    jax.block_until_ready(compiled(x, w, y))

  out = {}
  try:
    ma = compiled.memory_analysis()
    out["xla_temp_bytes"] = int(ma.temp_size_in_bytes)
    out["xla_output_bytes"] = int(ma.output_size_in_bytes)
  except Exception:  # pragma: no cover - backend dependent
    pass
  dev = jax.devices()[0]
  on_gpu = dev.platform == "gpu"
  if on_gpu:
    stats0 = dev.memory_stats() or {}
  # XLA:CPU keeps freed buffers in the process after the first execution, so the peak RSS
  # increase is measured on the first step (and on the timed steps; the max is reported).
  base = _rss_bytes("VmRSS")
  reset_ok = _reset_peak()
  run()
  peak_first = _rss_bytes("VmHWM") - base
  run()
  if kind in ("am_softmax", "arcface"):
    out["loss"] = float(compiled(x, w, y)[0])
  base = _rss_bytes("VmRSS")
  _reset_peak()
  out["median_s"], out["min_s"] = _time(run, iters)
  if on_gpu:
    stats = dev.memory_stats() or {}
    out["peak_bytes"] = int(stats.get("peak_bytes_in_use", -1)) - int(stats0.get("bytes_in_use", 0))
  else:
    out["peak_bytes"] = max(peak_first, _rss_bytes("VmHWM") - base) if reset_ok else -1
    # Both parts of the max: freed-but-retained allocator memory moves them in opposite ways.
    out["peak_first_step_bytes"] = peak_first if reset_ok else -1
    out["peak_timed_steps_bytes"] = _rss_bytes("VmHWM") - base if reset_ok else -1
  out["device"] = f"{dev.device_kind} ({dev.platform})"
  return out


def worker_floor(kind, batch, dim, classes, iters, chunk_size=None):
  """Our ``kind`` loss step vs the bare matmul, alternated step by step in one process.

  On a loaded machine the floor measured in another process at another time is not comparable;
  here both see the same load. Returns both medians and ``ratio_to_3_matmuls``.
  """
  import jax
  import jax.numpy as jnp

  from vision_jax import losses as L

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(batch, dim)).astype(np.float32))
  w = jnp.asarray(_class_weights(rng, classes, dim))
  y = jnp.asarray(rng.integers(0, classes, size=batch).astype(np.int32))
  loss = {"am_softmax": L.am_softmax_loss, "arcface": L.arcface_loss}[kind]
  kw = {"margin": 0.35} if kind == "am_softmax" else {"margin": math.radians(MARGIN_DEG)}
  step = jax.jit(
    jax.value_and_grad(
      lambda x, w, y: jnp.mean(loss(x, w, y, scale=64.0, chunk_size=chunk_size, **kw)), (0, 1)
    )
  )
  matmul = jax.jit(lambda x, w: x @ w.T)
  fns = {"matmul": lambda: matmul(x, w), "loss": lambda: step(x, w, y)}
  times = {"matmul": [], "loss": []}
  for i in range(iters + 2):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn())
      if i >= 2:  # two warm-ups (compilation, first-touch page faults)
        times[name].append(time.perf_counter() - t0)
  med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
  return {
    "matmul_median_s": med["matmul"],
    "loss_median_s": med["loss"],
    "ratio_to_3_matmuls": med["loss"] / (3 * med["matmul"]),
    "times": times,
  }


def worker_torch(kind, batch, dim, classes, iters, threads=0):
  import torch
  from pytorch_metric_learning import losses as pml

  device = "cuda" if torch.cuda.is_available() else "cpu"
  if threads > 0:
    torch.set_num_threads(threads)
  rng = np.random.default_rng(0)
  x = torch.tensor(
    rng.normal(size=(batch, dim)).astype(np.float32), device=device, requires_grad=True
  )
  w_np = _class_weights(rng, classes, dim)
  y = torch.tensor(rng.integers(0, classes, size=batch).astype(np.int64), device=device)
  if kind == "matmul":
    w = torch.tensor(w_np, device=device)

    def step():
      with torch.no_grad():
        x @ w.T
  else:
    cls = {"cosface": pml.CosFaceLoss, "arcface": pml.ArcFaceLoss}[kind]
    kw = {"margin": 0.35} if kind == "cosface" else {"margin": MARGIN_DEG}
    loss_fn = cls(num_classes=classes, embedding_size=dim, scale=64, **kw).to(device)
    with torch.no_grad():
      loss_fn.W.copy_(torch.tensor(w_np.T))

    def step():
      x.grad = None
      loss_fn.W.grad = None
      loss_fn(x, y).backward()

  def run():
    step()
    if device == "cuda":
      torch.cuda.synchronize()

  out = {}
  if device == "cuda":
    torch.cuda.reset_peak_memory_stats()
    base_gpu = torch.cuda.memory_allocated()
  base = _rss_bytes("VmRSS")
  reset_ok = _reset_peak()
  run()  # same protocol as JAX: peak of the first step and of the timed steps
  peak_first = _rss_bytes("VmHWM") - base
  run()
  if kind != "matmul":
    x.grad = None
    loss_fn.W.grad = None
    with torch.no_grad():
      out["loss"] = float(loss_fn(x, y))
  base = _rss_bytes("VmRSS")
  _reset_peak()
  out["median_s"], out["min_s"] = _time(run, iters)
  if device == "cuda":
    out["peak_bytes"] = torch.cuda.max_memory_allocated() - base_gpu
  else:
    out["peak_bytes"] = max(peak_first, _rss_bytes("VmHWM") - base) if reset_ok else -1
  out["device"] = device
  out["threads"] = torch.get_num_threads()
  return out


def _pin_threads(n):
  """Restrict this worker to ``n`` CPUs (both libraries; call before importing them)."""
  if n <= 0:
    return
  cpus = sorted(os.sched_getaffinity(0))[:n]
  os.sched_setaffinity(0, cpus)
  for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(n)
  if n == 1:
    os.environ["XLA_FLAGS"] = (
      os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    )


def _interleaved(jax_kind, torch_kind, args, classes):
  """Runs both workers at once, alternating single timed steps (ours, PML, ours, ...)."""
  procs = []
  for framework, kind in (("jax", jax_kind), ("torch", torch_kind)):
    procs.append(
      subprocess.Popen(
        _worker_cmd(framework, kind, args, classes),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "VJ_BENCH_SERVE": "1"},
      )
    )
  try:
    for p in procs:  # wait for both to finish compiling / warming up
      line = p.stdout.readline()
      if line.strip() != "READY":
        raise RuntimeError(p.stderr.read().strip().splitlines()[-1] if p.stderr else "failed")
    for _ in range(args.iters):
      for p in procs:
        p.stdin.write("t\n")
        p.stdin.flush()
        p.stdout.readline()
    results = []
    for p in procs:
      out, err = p.communicate("q\n", timeout=600)
      if p.returncode != 0:
        raise RuntimeError(err.strip().splitlines()[-1] if err else "failed")
      results.append(json.loads(out.strip().splitlines()[-1]))
    return results
  except Exception as e:  # one failing library should not hide the other's numbers
    for p in procs:
      p.kill()
    return [{"error": str(e)}, {"error": str(e)}]


def _worker_cmd(framework, kind, args, classes):
  return [
    sys.executable,
    os.path.abspath(__file__),
    "--worker",
    f"{framework}:{kind}:{classes}",
    f"--batch={args.batch}",
    f"--dim={args.dim}",
    f"--iters={args.iters}",
    f"--threads={args.threads}",
    f"--allocator={args.allocator}",
    f"--chunk_size={args.chunk_size}",
    f"--worker_mem_limit_gib={args.worker_mem_limit_gib}",
  ]


def _limit_memory(gib, to_available: bool):
  """Caps this worker's address space (``--worker_mem_limit_gib``; 0 = no cap).

  With ``to_available`` (PML's workers, several 2 GB tensors per step at C = 1M) the cap is also
  lowered to what the machine has available when the worker starts (its current size +
  ``MemAvailable`` - 512 MiB), so that on a shared machine a worker that needs more fails with an
  allocation error (reported in its row) instead of pushing the machine out of memory.
  """
  if gib <= 0:
    return
  import resource

  limit = int(gib * 2**30)
  with open("/proc/meminfo") as f:
    avail = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
  if to_available:
    limit = min(limit, _rss_bytes("VmSize") + avail - 2**29)
  resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _spawn(framework, kind, args, classes):
  cmd = _worker_cmd(framework, kind, args, classes)
  res = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if res.returncode != 0:
    return {"error": res.stderr.strip().splitlines()[-1] if res.stderr else "failed"}
  return json.loads(res.stdout.strip().splitlines()[-1])


def _mib(b):
  return "n/a" if b is None or b < 0 else f"{b / 2**20:8.1f}"


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=512)
  p.add_argument("--dim", type=int, default=512)
  p.add_argument("--classes", default="10000,100000,1000000")
  p.add_argument(
    "--chunk_size",
    type=int,
    default=-1,
    help="our losses' chunk_size: -1 = automatic (the default of the losses), 0 = unchunked",
  )
  p.add_argument("--iters", type=int, default=5)
  p.add_argument(
    "--threads",
    type=int,
    default=0,
    help="pin each worker to N CPUs (torch.set_num_threads(N); XLA single-threaded "
    "Eigen for N=1); 0 = library defaults. Use 1 on a shared/oversubscribed machine, "
    "where torch's OpenMP spin-waiting otherwise dominates.",
  )
  p.add_argument(
    "--allocator",
    choices=("tuned", "default"),
    default="default",
    help="host allocator policy, applied to BOTH libraries' workers: default = glibc's, as "
    "both libraries run out of the box; tuned = vision_jax.utils.host_memory."
    "keep_freed_host_memory() (what vision_jax experiments use; it also removes PML's "
    "page faults on its 200 MB tensors at C=100k, so PML gains more from it there)",
  )
  p.add_argument(
    "--interleave_max_classes",
    type=int,
    default=200_000,
    help="rows up to this C run the two libraries' workers side by side with interleaved "
    "timed steps; larger rows run them one after the other (their peaks would add up)",
  )
  p.add_argument(
    "--worker_mem_limit_gib",
    type=float,
    default=0.0,
    help="cap each worker's address space (RLIMIT_AS); 0 = no cap",
  )
  p.add_argument(
    "--floor_check",
    action="store_true",
    help="also time our AM-Softmax step against the bare matmul alternated in one process "
    "(the same load for both), per C",
  )
  p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
  args = p.parse_args()

  if args.worker:
    _limit_memory(args.worker_mem_limit_gib, to_available=args.worker.startswith("torch:"))
    _pin_threads(args.threads)
    if args.allocator == "tuned":
      from vision_jax.utils.host_memory import keep_freed_host_memory

      keep_freed_host_memory()
    framework, kind, classes = args.worker.split(":")
    classes = int(classes)
    if framework == "floor":
      chunk = {-1: None, 0: classes}.get(args.chunk_size, args.chunk_size)
      res = worker_floor(kind, args.batch, args.dim, classes, args.iters, chunk)
    elif framework == "jax":
      chunk = {-1: None, 0: classes}.get(args.chunk_size, args.chunk_size)
      res = worker_jax(kind, args.batch, args.dim, classes, args.iters, args.threads, chunk)
    else:
      res = worker_torch(kind, args.batch, args.dim, classes, args.iters, args.threads)
    print(json.dumps(res))
    return

  from vision_jax.utils import package_versions

  vers = package_versions(extra=("torch", "pytorch-metric-learning"))
  print("versions:", json.dumps(vers))
  print(
    f"B={args.batch} D={args.dim} iters={args.iters} threads={args.threads or 'default'} "
    f"allocator={args.allocator} chunk_size={args.chunk_size} (-1 auto, 0 unchunked) "
    f"(median of iters, after 2 warm-ups); "
    f"time = forward+backward; mem = peak extra bytes during the steps"
  )
  pairs = [("am_softmax", "cosface"), ("arcface", "arcface"), ("ir_am_softmax", "cosface")]
  rows = []
  for classes in [int(c) for c in args.classes.split(",")]:
    pml_cache = {}
    jmm = _spawn("jax", "matmul", args, classes)
    tmm = _spawn("torch", "matmul", args, classes)
    print(
      f"\nC={classes}: matmul x@W^T  jax {jmm.get('median_s', float('nan')) * 1e3:.1f} ms "
      f"[{jmm.get('device')}]   torch {tmm.get('median_s', float('nan')) * 1e3:.1f} ms "
      f"[{tmm.get('device')}, {tmm.get('threads')} threads]"
    )
    if args.floor_check:
      fl = _spawn("floor", "am_softmax", args, classes)
      if "error" in fl:
        print(f"floor check: error: {fl['error']}")
      else:
        print(
          f"floor check (one process, alternated): am_softmax {fl['loss_median_s'] * 1e3:.1f} ms"
          f" vs matmul {fl['matmul_median_s'] * 1e3:.1f} ms: /3mm {fl['ratio_to_3_matmuls']:.2f}"
        )
    print(
      f"{'ours':>14} {'PML':>8} | {'ours ms':>8} {'PML ms':>8} {'ratio':>6} | "
      f"{'floor MiB':>9} {'ours MiB':>8} {'PML MiB':>8} {'ratio':>6} {'/floor':>6} | "
      f"{'/3mm':>5} | loss ours / PML"
    )
    for ours, theirs in pairs:
      if classes <= args.interleave_max_classes:
        a, b = _interleaved(ours, theirs, args, classes)
      else:  # one after the other, so that the two workers' peak memories do not add up
        a = _spawn("jax", ours, args, classes)
        if theirs not in pml_cache:  # the IR row reuses the CosFace row's PML run
          pml_cache[theirs] = _spawn("torch", theirs, args, classes)
        b = pml_cache[theirs]
      if "error" in a:
        print(f"{ours:>14} {theirs:>8} | error (ours): {a['error']}")
        continue
      nan = float("nan")
      pml_ok = "error" not in b  # PML missing or failed: our columns still print
      b_s = b["median_s"] if pml_ok else nan
      b_peak = b["peak_bytes"] if pml_ok else -1
      t_ratio = a["median_s"] / b_s
      m_ratio = a["peak_bytes"] / b_peak if b_peak > 0 else nan
      floor = a["median_s"] / (3 * jmm["median_s"]) if "median_s" in jmm else nan
      need = unavoidable_bytes(ours, args.batch, args.dim, classes)
      m_floor = a["peak_bytes"] / need
      b_loss = f"{b['loss']:.4f}" if pml_ok else "n/a"
      loss_cmp = f"{a['loss']:.4f} / {b_loss}" if "loss" in a else "(IR: n/a)"
      xla = _mib(a.get("xla_temp_bytes", 0) + a.get("xla_output_bytes", 0))
      print(
        f"{ours:>14} {theirs:>8} | {a['median_s'] * 1e3:8.1f} {b_s * 1e3:8.1f} "
        f"{t_ratio:6.2f} | {_mib(need):>9} {_mib(a['peak_bytes'])} {_mib(b_peak)} "
        f"{m_ratio:6.2f} {m_floor:6.2f} | {floor:5.2f} | {loss_cmp}   (xla temp+out {xla} MiB)"
      )
      if not pml_ok:
        print(f"{'':>14} {theirs:>8} | PML error: {b['error']}")
      rows.append(
        {
          "classes": classes,
          "loss": ours,
          "pml_loss": theirs,
          "ours": a,
          "pml": b,
          "time_ratio": t_ratio,
          "mem_ratio": m_ratio,
          "unavoidable_bytes": need,
          "mem_ratio_to_unavoidable": m_floor,
          "ratio_to_3_matmuls": floor,
        }
      )
  print(
    "\nratio = ours / PML (target <= 0.7 time, <= 1.0 memory); floor MiB = bytes a step cannot "
    "avoid (dW + dX; IR: new centres + dX); /floor = ours / floor MiB (target <= 1.2 at C=1M); "
    "/3mm = ours / (3 x bare jax matmul time) (target <= 1.2 at C=1M)"
  )
  print("json:", json.dumps(rows))


if __name__ == "__main__":
  main()
