"""Table -> (search -> parse -> retrain -> time) per target latency -> results.json."""

from __future__ import annotations

import json
import os
import time

import ml_collections
import numpy as np

from vision_jax import data as vdata
from vision_jax.data.idx import read_idx
from vision_jax.nas import (
  OPS,
  SearchSpace,
  arch_from_choices,
  cached_table,
  count_flops,
  count_params,
  derived_net,
  measure_nets,
  parse_arch,
  search_task,
)
from vision_jax.nas.supernet import width_bounds
from vision_jax.train import SweepRun, run_sweep, train_and_evaluate
from vision_jax.train.classification import classification_task
from vision_jax.utils.runinfo import save_json


# ----------------------------------------------------------------------------- data
def _pad(images: np.ndarray, size: int) -> np.ndarray:
  h = images.shape[1]
  if h > size:
    raise ValueError(f"data images are {h} px but space.image_size={size}; it must be >= {h}")
  a = (size - h) // 2
  return np.pad(images, ((0, 0), (a, size - h - a), (a, size - h - a), (0, 0)))


def make_sources(cfg):
  """``(search_train, search_val, test)`` ArraySources of ``{"image": uint8, "label"}``."""
  d, size = cfg.data, int(cfg.space.image_size)
  if d.name == "fashion_mnist":
    root = d.manual_dir
    x = read_idx(os.path.join(root, "train-images-idx3-ubyte.gz"))[..., None]
    y = read_idx(os.path.join(root, "train-labels-idx1-ubyte.gz")).astype(np.int32)
    xt = read_idx(os.path.join(root, "t10k-images-idx3-ubyte.gz"))[..., None]
    yt = read_idx(os.path.join(root, "t10k-labels-idx1-ubyte.gz")).astype(np.int32)
  elif d.name == "synthetic":
    n = int(d.num_search) + int(d.num_test)
    src = vdata.synthetic_source(n, (size, size, 1), 10, seed=1)
    x, y = src.arrays["image"][: d.num_search], src.arrays["label"][: d.num_search].astype(np.int32)
    xt, yt = (
      src.arrays["image"][d.num_search :],
      src.arrays["label"][d.num_search :].astype(np.int32),
    )
  elif d.name == "imagenet100":
    raise FileNotFoundError(
      "data.name='imagenet100' (the paper preset) needs the code's ImageNet-100 lists and images "
      f"under data.imagenet100_dir={d.imagenet100_dir!r}; no loader for them ships here yet"
    )
  else:
    raise ValueError(f"unknown data.name {d.name!r}; valid: fashion_mnist, synthetic, imagenet100")
  x, xt = _pad(x, size), _pad(xt, size)
  rng = np.random.default_rng(int(cfg.seed))
  idx = rng.permutation(len(x))[: int(d.num_search)]
  n_val = int(round(len(idx) * float(d.search_val_fraction)))
  val, tr = idx[:n_val], idx[n_val:]
  test = rng.permutation(len(xt))[: int(d.num_test)]
  mk = lambda i, xs, ys: vdata.ArraySource({"image": xs[i], "label": ys[i]})  # noqa: E731
  return mk(tr, x, y), mk(val, x, y), mk(test, xt, yt)


class PairedBatches:
  """``data[t] = {"train": train[t], "val": val[t]}`` (both pure functions of seed and ``t``)."""

  def __init__(self, train, val):
    self.train, self.val = train, val

  def __getitem__(self, t):
    return {"train": self.train[t], "val": self.val[t]}


# ----------------------------------------------------------------------------- pieces
def _space(cfg) -> SearchSpace:
  return SearchSpace.from_config(cfg.space.to_dict())


def _protocol(cfg) -> dict:
  lc = cfg.lut
  return dict(
    batch_size=int(lc.batch_size), warmup=int(lc.warmup), rounds=int(lc.rounds),
    inner=int(lc.inner), isolated=bool(lc.isolated),
  )  # fmt: skip


def random_archs(space: SearchSpace, n: int, seed: int) -> list[dict]:
  """``n`` uniformly random architectures (op, depth and width per block) of ``space``."""
  rng = np.random.default_rng(seed)
  lo, hi = width_bounds(space)
  out = []
  for _ in range(n):
    ops = rng.integers(0, len(OPS), space.num_blocks)
    depths = [int(rng.integers(1, st.max_blocks + 1)) for st in space.stages]
    widths = rng.integers(lo, hi + 1)
    out.append(arch_from_choices(space, ops, depths, widths))
  return out


def _sub_cfg(cfg, *, num_steps, optim, **extra_sections):
  c = ml_collections.ConfigDict()
  c.seed = cfg.seed
  c.train = ml_collections.ConfigDict(cfg.train.to_dict())
  c.train.num_steps = int(num_steps)
  c.optim = ml_collections.ConfigDict(optim.to_dict())
  for k, v in extra_sections.items():
    c[k] = ml_collections.ConfigDict(v.to_dict())
  c.mesh = ml_collections.ConfigDict(cfg.mesh.to_dict())
  return c


def search_and_retrain(cfg, run_dir, *, target_ms, table, sources, progress=False) -> dict:
  """One target: search, parse, retrain the derived net, time it; returns its summary."""
  space = _space(cfg)
  s = cfg.search
  tr, va, te = sources
  base, curve = table.dense(space)
  table.check_target(space, target_ms)
  task = search_task(
    space, base, curve, target_ms=target_ms, steps_per_epoch=int(s.steps_per_epoch),
    warmup_epochs=int(s.warmup_epochs), lat_weight=float(s.lat_weight), tau0=float(s.tau0),
    tau_decay=float(s.tau_decay), arch_every=int(s.arch_every), elastic=bool(s.elastic),
  )  # fmt: skip
  b = int(cfg.data.batch_size)
  data = PairedBatches(
    vdata.train_dataset(tr, global_batch_size=b, seed=int(cfg.seed)),
    vdata.train_dataset(va, global_batch_size=b, seed=int(cfg.seed) + 1),
  )
  scfg = _sub_cfg(
    cfg,
    num_steps=int(s.epochs) * int(s.steps_per_epoch),
    optim=cfg.optim,
    optim_arch=cfg.optim_arch,
  )
  t0 = time.time()
  ssum, state = train_and_evaluate(
    scfg, os.path.join(run_dir, "search"), task, data, progress=progress, return_state=True
  )
  if ssum.get("preempted"):
    return ssum
  search_s = time.time() - t0
  arch = parse_arch(space, state.params["arch"], np.asarray(state.extra["widths"]))
  save_json(os.path.join(run_dir, "arch.json"), arch)
  predicted = table.predict(arch)

  r = cfg.retrain
  rcfg = _sub_cfg(cfg, num_steps=int(r.steps), optim=r.optim)
  rcfg.train.checkpoint_every = 0
  full = vdata.ArraySource(
    {k: np.concatenate([tr.arrays[k], va.arrays[k]]) for k in ("image", "label")}
  )
  rtask = classification_task(
    derived_net(arch, float(r.dropout), dw_impl="taps"), num_classes=space.num_classes,
    label_smoothing=float(r.label_smoothing),
  )  # fmt: skip
  t0 = time.time()
  rsum = train_and_evaluate(
    rcfg,
    os.path.join(run_dir, "retrain"),
    rtask,
    vdata.train_dataset(full, global_batch_size=int(r.batch_size), seed=int(cfg.seed)),
    lambda: vdata.eval_batches(te, global_batch_size=int(r.eval_batch_size)),
    progress=progress,
  )
  if rsum.get("preempted"):
    return rsum
  retrain_s = time.time() - t0
  ((measured, spread),) = measure_nets([arch], **_protocol(cfg))
  final = ssum.get("final_train", {})
  return dict(
    target_ms=float(target_ms),
    predicted_ms=float(predicted),
    measured_ms=float(measured),
    measured_spread=float(spread),
    predicted_error=float(predicted / target_ms - 1.0),
    measured_error=float(measured / target_ms - 1.0),
    accuracy=float(rsum["eval"]["accuracy"]),
    flops=count_flops(arch),
    params=count_params(arch),
    depths=[
      int(np.argmax(np.asarray(state.params["arch"]["beta"][f"s{i}"]))) + 1
      for i in range(len(space.stages))
    ],
    ops=[blk["op"] for blk in arch["blocks"]],
    search_seconds=search_s,
    retrain_seconds=retrain_s,
    search_final_arch_latency_ms=final.get("arch/latency_ms"),
  )


def table_check(cfg, table, space) -> dict:
  """The table's prediction vs the measured latency of random architectures."""
  n = int(cfg.lut.num_random_archs)
  if n <= 0:
    return {}
  archs = random_archs(space, n, int(cfg.seed) + 7)
  meas = measure_nets(archs, **_protocol(cfg))
  pred = [table.predict(a) for a in archs]
  err = [p / m - 1.0 for p, (m, _) in zip(pred, meas)]
  return dict(
    predicted_ms=pred,
    measured_ms=[m for m, _ in meas],
    measured_spread=[s for _, s in meas],
    rel_error=err,
    mean_abs_rel_error=float(np.mean(np.abs(err))),
    max_abs_rel_error=float(np.max(np.abs(err))),
  )


def _targets(cfg, table, space) -> list[float]:
  if cfg.targets_ms:
    ts = [float(t) for t in cfg.targets_ms]
  else:
    lo, hi = table.reachable(space)
    ts = [lo + float(f) * (hi - lo) for f in cfg.target_fractions]
  for i, t in enumerate(ts):
    table.check_target(space, t, where=f"targets_ms[{i}]")
  return ts


def run(cfg, workdir, *, progress=False):
  t_start = time.time()
  os.makedirs(workdir, exist_ok=True)
  if cfg.compilation_cache:
    import jax

    from vision_jax.train import setup_runtime

    if not jax.config.jax_compilation_cache_dir:
      d = (
        os.path.join(workdir, "jax_cache")
        if cfg.compilation_cache == "auto"
        else cfg.compilation_cache
      )
      setup_runtime(compilation_cache=d)
  space = _space(cfg)
  cache = cfg.lut.cache_dir or os.path.join(workdir, "lut")
  t0 = time.time()
  table, lut_path = cached_table(space, cache, num_widths=int(cfg.lut.num_widths), **_protocol(cfg))
  lut_s = time.time() - t0
  table.save(os.path.join(workdir, "lut.json"))
  lo, hi = table.reachable(space)
  check_path = os.path.join(workdir, "table_check.json")
  if os.path.exists(check_path):
    with open(check_path) as f:
      check = json.load(f)
  else:
    check = table_check(cfg, table, space)
    save_json(check_path, check)
  targets = _targets(cfg, table, space)
  sources = make_sources(cfg)
  print(
    f"tf_nas: table {lut_path} ({len(table.blocks)} configurations, batch {table.batch_size}, "
    f"{table.threads}-threaded, {table.device}); reachable {lo:.3f}..{hi:.3f} ms; targets "
    + ", ".join(f"{t:.3f}" for t in targets)
  )

  def fn_for(t):
    return lambda run_dir: search_and_retrain(
      cfg, run_dir, target_ms=t, table=table, sources=sources, progress=progress
    )

  # One sweep run per target, through the shared harness: finished targets are read back, a
  # stop request raises Preempted (the launcher prints the resume command), and a target whose
  # stored settings differ from this config's is refused instead of reused.
  runs = [
    SweepRun(
      key=(f"target_{i}",),
      fn=fn_for(t),
      config=dict(target_ms=float(t), search=cfg.search.to_dict(), retrain=cfg.retrain.to_dict()),
    )
    for i, t in enumerate(targets)
  ]
  per_target = run_sweep(workdir, runs, results_name="targets.json", comparison=None)
  results = dict(
    targets=per_target,
    table=dict(
      path=lut_path,
      device=table.device,
      batch_size=table.batch_size,
      threads=table.threads,
      configurations=len(table.blocks),
      spread=table.spread,
      base_ms=table.base_ms,
      dispatch_ms=table.dispatch_ms,
      reachable_ms=[lo, hi],
      seconds=lut_s,
      measured_seconds=table.meta.get("seconds"),
    ),  # fmt: skip
    table_check=check,
    wall_seconds=time.time() - t_start,
    load_average=list(os.getloadavg()),
  )
  save_json(os.path.join(workdir, "results.json"), results)
  return results


def format_table(cfg, results) -> str:
  if results.get("preempted"):
    return "preempted"
  rows = [
    "| target ms | predicted ms (err) | measured ms (spread, err) | top-1 | MFLOPs | params | search s |",
    "|---|---|---|---|---|---|---|",
  ]
  for r in results["targets"].values():
    rows.append(
      f"| {r['target_ms']:.3f} | {r['predicted_ms']:.3f} ({100 * r['predicted_error']:+.1f} %) | "
      f"{r['measured_ms']:.3f} (±{100 * r['measured_spread']:.0f} %, {100 * r['measured_error']:+.1f} %) | "
      f"{100 * r['accuracy']:.2f} % | {r['flops'] / 1e6:.2f} | {r['params']} | {r['search_seconds']:.0f} |"
    )
  c = results.get("table_check") or {}
  t = results["table"]
  rows.append("")
  rows.append(
    f"table: {t['configurations']} configurations on {t['device']}, batch {t['batch_size']}, "
    f"median block spread {100 * t['spread'].get('block_median', 0):.0f} %"
    + (
      f"; random-arch error mean {100 * c['mean_abs_rel_error']:.1f} % / max "
      f"{100 * c['max_abs_rel_error']:.1f} % over {len(c['rel_error'])} nets"
      if c
      else ""
    )
  )
  return "\n".join(rows)
