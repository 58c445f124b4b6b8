"""TF-NAS search-step time: vision_jax (one jitted step of the shared trainer) vs the official
code's search step written in PyTorch, same net, same input, same run.

    PYTHONPATH=<dir with torch> python benchmarks/bench_tfnas.py \\
        [--space=reduced|paper|smoke] [--image_size=32] [--batch=32] [--steps=10] [--threads=0]

One search step = the bi-sampled weight update on the train batch (Gumbel-max path + a second
path uniform over the other ops, ``CE_1 + CE_2``, SGD momentum 0.9, wd 1e-5, clip 5) followed by
the all-ops Gumbel-softmax architecture update on the val batch (``CE + 0.1 |LAT/T - 1|`` from
the latency-table expectation, Adam (0.5, 0.999) lr 0.01 wd 5e-4, clip 5) and the
``log_softmax`` re-projection of ``log alpha``. The JAX side is :func:`vision_jax.nas.search_task`
on the trainer's jitted multi-update step; the PyTorch side (``benchmarks/_tfnas_torch.py``) is
the same supernet (8 masked MBConv ops per block, affine-free search BN, sink-connecting depth)
with the step of the official ``train_search.py`` (eager, ``requires_grad`` toggled between the
two updates, paths sampled on the host). The script asserts that both nets have the same
weight and architecture parameter counts and prints them.

``--space``: ``reduced`` (the ``default`` preset's 4-stage supernet, 1 input channel),
``paper`` (the code's 6-stage ImageNet supernet at ``--image_size``) or ``smoke`` (the smoke
preset's 2-block supernet, for a quick check). Timed steps are interleaved (JAX, PyTorch,
PyTorch, JAX, ...) after warm-up; medians with IQR, the ratio JAX / PyTorch (< 1: JAX faster),
the thread counts of both sides and the 1-minute load are printed.

``--threads=1`` (default): single-threaded XLA (``--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1``, set before JAX is imported) and ``torch.set_num_threads(1)``;
``--threads=0``: XLA's default CPU thread pool (one thread per schedulable core) and torch set
to the same count. Choice: single-threaded by default, because on a loaded shared CPU torch's
OpenMP pool stalls (smoke supernet: 0.4-11 s per PyTorch step with 2 threads, 42-90 ms with 1).

Measured (docs/tf_nas.md, "Search-step benchmark"): defaults (reduced space, 32 px, batch 32,
1 thread each) on a shared 2-core x86 CPU at load 6-10, JAX 4.6-4.9 s vs PyTorch 1.47-1.48 s
per step, ratio JAX / PyTorch 3.1-3.3; both nets 1,093,230 weight + 63 architecture
parameters; JAX trace + compile 4-9 min.

torch (and its own dependency sympy, which ``torch.optim`` imports) is not a dependency of
vision_jax; without it the script times the JAX side only and says so.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

SINGLE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _space(name, image_size):
  import dataclasses

  from vision_jax.nas import SearchSpace, paper_space

  if name == "paper":
    return dataclasses.replace(paper_space(100), image_size=image_size)
  from experiments.tf_nas.config import get_config

  d = get_config("smoke" if name == "smoke" else "default").space.to_dict()
  d["image_size"] = image_size
  return SearchSpace.from_config(d)


def _stats(ms):
  q1, med, q3 = np.percentile(ms, [25, 50, 75])
  return float(med), float(q1), float(q3)


def main(argv=None):
  p = argparse.ArgumentParser()
  p.add_argument("--space", default="reduced", choices=("reduced", "paper", "smoke"))
  p.add_argument("--image_size", type=int, default=32)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--steps", type=int, default=10, help="timed steps per side (interleaved)")
  p.add_argument("--warmup", type=int, default=2, help="untimed steps per side after compile")
  p.add_argument("--threads", type=int, default=1, choices=(0, 1), help="1 = single, 0 = default")
  p.add_argument("--compilation_cache", default="", help="JAX persistent compilation cache dir")
  a = p.parse_args(argv)
  if a.threads == 1:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + SINGLE_THREAD_FLAGS).strip()
  import jax
  import ml_collections

  if a.compilation_cache:
    jax.config.update("jax_compilation_cache_dir", a.compilation_cache)

  from vision_jax.nas import OPS, parse_op, search_task
  from vision_jax.nas import supernet as sn
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
  base_ms, target_ms, tau = 1.0, 1.05, 5.0
  task = search_task(
    space, base_ms, curve, target_ms=target_ms, steps_per_epoch=10**6, warmup_epochs=0,
    arch_every=1, tau0=tau,
  )  # fmt: skip
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
  mesh = make_mesh(devices=jax.devices()[:1])
  tx, sched = make_task_optimizers(task, cfg, 10**6)
  bsh = batch_shardings(task, batch, mesh)
  gb = to_global_batch(batch, mesh, bsh)
  state, sh = create_train_state(task, tx, jax.random.PRNGKey(0), gb, mesh)
  step = make_train_step(task, tx, sched, mesh, sh, bsh)
  holder = {"state": state}

  def jax_step():
    holder["state"], _ = step(holder["state"], gb)
    jax.block_until_ready(holder["state"])

  t0 = time.perf_counter()
  jax_step()
  compile_s = time.perf_counter() - t0
  n_w_jax = sum(int(np.size(x)) for x in jax.tree.leaves(holder["state"].params["net"]))
  n_a_jax = sum(int(np.size(x)) for x in jax.tree.leaves(holder["state"].params["arch"]))
  dev = jax.devices()[0]
  jax_threads = 1 if a.threads == 1 else len(os.sched_getaffinity(0))
  v = package_versions()
  print(f"device: {dev.device_kind} ({dev.platform}); jax {v.get('jax')}, flax {v.get('flax')}")
  print(f"space={a.space} image_size={a.image_size} batch={a.batch} blocks={space.num_blocks}")
  print(f"JAX supernet parameters: weights {n_w_jax:,}, architecture {n_a_jax:,}")
  print(
    f"JAX threads: {jax_threads} ({'single-threaded XLA' if a.threads == 1 else 'XLA default'})"
  )
  try:
    import torch
  except ImportError:
    torch, why = None, "PyTorch is not installed"
  else:
    try:
      import sympy  # noqa: F401  (torch.optim imports torch._dynamo, which needs it)
    except ImportError:
      torch, why = None, f"torch {torch.__version__} is installed but its dependency sympy is not"
  if torch is None:
    for _ in range(a.warmup):
      jax_step()
    ms = []
    for _ in range(a.steps):
      t0 = time.perf_counter()
      jax_step()
      ms.append((time.perf_counter() - t0) * 1e3)
    med, q1, q3 = _stats(ms)
    print(f"JAX search step: {med:.1f} ms (IQR {q1:.1f}-{q3:.1f}), first step {compile_s:.1f} s")
    print(f"{why}: the official search step was not timed, no ratio.")
    return {"jax_ms": med, "jax_iqr": (q1, q3), "compile_s": compile_s}

  import importlib.util

  torch.set_num_threads(jax_threads)
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_tfnas_torch.py")
  spec = importlib.util.spec_from_file_location("_tfnas_torch", path)
  ref = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(ref)
  torch.manual_seed(0)
  tnet = ref.Supernet(space)
  n_w_t, n_a_t = ref.count_parameters(tnet)
  print(f"PyTorch supernet parameters: weights {n_w_t:,}, architecture {n_a_t:,}")
  assert (n_w_t, n_a_t) == (n_w_jax, n_a_jax), (
    f"the two supernets differ: JAX {(n_w_jax, n_a_jax)} vs PyTorch {(n_w_t, n_a_t)} parameters"
  )
  lat = np.asarray(sn.block_latencies(curve, sn.nominal_widths(space)))
  tstep = ref.SearchStep(tnet, lat, base_ms, target_ms, tau=tau)
  tbatch = {
    k: {"image": torch.from_numpy(b["image"]), "label": torch.from_numpy(b["label"]).long()}
    for k, b in batch.items()
  }
  print(f"PyTorch threads: {torch.get_num_threads()} (torch {torch.__version__}, CPU)")
  if dev.platform != "cpu":
    print(f"note: JAX runs on {dev.platform}, the PyTorch reference on the CPU: not like for like")

  def torch_step():
    tstep(tbatch)

  for _ in range(a.warmup):
    jax_step()
    torch_step()
  times = {"jax": [], "torch": []}
  fns = {"jax": jax_step, "torch": torch_step}
  for i in range(a.steps):
    for name in ("jax", "torch") if i % 2 == 0 else ("torch", "jax"):
      t0 = time.perf_counter()
      fns[name]()
      times[name].append((time.perf_counter() - t0) * 1e3)
  jm, jq1, jq3 = _stats(times["jax"])
  tm, tq1, tq3 = _stats(times["torch"])
  load = os.getloadavg()[0]
  print(f"JAX search step (weights + arch):     {jm:8.1f} ms (IQR {jq1:.1f}-{jq3:.1f})")
  print(f"PyTorch search step (weights + arch): {tm:8.1f} ms (IQR {tq1:.1f}-{tq3:.1f})")
  print(f"ratio JAX / PyTorch: {jm / tm:.2f} (< 1: JAX faster); {a.steps} steps per side")
  print(f"JAX first step (trace + compile): {compile_s:.1f} s; 1-minute load: {load:.2f}")
  return {
    "jax_ms": jm, "jax_iqr": (jq1, jq3), "torch_ms": tm, "torch_iqr": (tq1, tq3),
    "ratio": jm / tm, "compile_s": compile_s, "threads": jax_threads, "load": load,
    "params": (n_w_jax, n_a_jax),
  }  # fmt: skip


if __name__ == "__main__":
  main()
