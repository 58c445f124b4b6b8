"""Runs every (bits, method) of the DMUH experiment through the shared train loop."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from experiments.dmuh.task import METHODS, hashing_task, retrieval_summary
from vision_jax import data as vdata
from vision_jax.models import backbone_from_config
from vision_jax.train import SweepRun, read_metrics, run_sweep, train_and_evaluate
from vision_jax.utils.plotting import pyplot, save_figure


def _photo_transform(size: int):
  """Decoded photo + multi-hot ``labels`` -> ``size x size`` RGB uint8 and int8 ``label`` [C]."""

  def fn(ex):
    return {
      "image": vdata.resize_image(ex["image"], size),
      "label": np.asarray(ex["labels"], np.int8),
    }

  return fn


NUM_CLASSES = {"synthetic": 10, "fashion_mnist": 10, "cifar10": 10, "nuswide_21": 21, "coco": 80}


def make_sources(cfg):
  """``({"query", "train", "database"}, num_classes)``; labels are ids or multi-hot ``[C]``."""
  d = cfg.data
  if d.name in ("nuswide_21", "coco"):
    fn = _photo_transform(int(d.image_size))
    srcs = {
      k: vdata.MappedSource(
        vdata.load(
          f"vj_hashing_image_list/{d.name}",
          k,
          data_dir=d.data_dir or None,
          manual_dir=d.image_list_dir or None,
        ),
        fn,
      )
      for k in ("query", "train", "database")
    }
    return srcs, NUM_CLASSES[d.name]
  kw = dict(
    num_query_per_class=d.num_query_per_class,
    num_train_per_class=d.num_train_per_class,
    seed=cfg.seed,
  )
  if d.name == "synthetic":
    src = vdata.synthetic_source(600, (28, 28, 1), 10, seed=1)
    return vdata.array_hashing_sources(src.arrays["image"], src.arrays["label"], **kw), 10
  if d.name == "fashion_mnist":
    return vdata.fashion_mnist_hashing_sources(
      data_dir=d.data_dir or None, manual_dir=d.manual_dir or None, **kw
    ), 10
  if d.name == "cifar10":
    return vdata.cifar10_hashing_sources(
      data_dir=d.data_dir or None, manual_dir=d.cifar10_dir or None, **kw
    ), 10
  raise ValueError(f"unknown data.name {d.name!r}; valid: {', '.join(NUM_CLASSES)}")


def run(cfg, workdir, *, progress=True):
  """Runs all bits x methods through :func:`vision_jax.train.run_sweep` (finished runs are
  skipped, a preempted one resumes); run ``(bits, method)`` lives in ``workdir/<bits>bits/<method>``.

  Returns:
    ``results[str(bits)][method]`` = that run's summary; also in ``workdir/results.json``.
  """
  methods = [m for m in cfg.methods.split(",") if m]
  bad = [m for m in methods if m not in METHODS]
  if bad:
    raise ValueError(f"unknown method(s) {bad}; valid: {', '.join(METHODS)}")
  srcs, num_classes = make_sources(cfg)
  query, train_src, db = srcs["query"], srcs["train"], srcs["database"]
  eval_src = vdata.ConcatSource(query, db)
  print(f"dmuh: {len(query)} query / {len(train_src)} train / {len(db)} database images")
  summarize = retrieval_summary(len(query), topk=cfg.eval.topk, radius=cfg.eval.radius)
  train_ds = vdata.train_dataset(
    train_src,
    global_batch_size=cfg.data.global_batch_size,
    seed=cfg.seed,
    transform=vdata.random_horizontal_flip if cfg.data.flip else None,
  )
  eval_data = lambda: vdata.eval_batches(eval_src, global_batch_size=cfg.data.eval_batch_size)

  def train_one(wd, bits, method):
    task = hashing_task(
      backbone_from_config(cfg.model),
      method=method,
      num_bits=int(bits),
      num_classes=num_classes,
      cfg=cfg,
      seed=cfg.seed,
    )
    task = dataclasses.replace(task, summarize=summarize)
    run_cfg = cfg.copy_and_resolve_references()
    with run_cfg.unlocked():
      run_cfg.method, run_cfg.num_bits = method, int(bits)
    return train_and_evaluate(run_cfg, wd, task, train_ds, eval_data, progress=progress)

  runs = [
    SweepRun(
      key=(str(bits), method),
      fn=lambda wd, b=bits, m=method: train_one(wd, b, m),
      subdir=os.path.join(f"{bits}bits", method),
    )
    for bits in cfg.bits
    for method in methods
  ]
  results = run_sweep(workdir, runs)
  plot_uncertainty(workdir, cfg, os.path.join(workdir, "bit_uncertainty.png"))
  return results


def format_table(results, radius=2) -> str:
  methods = sorted({m for r in results.values() for m in r})
  bits = sorted(results, key=int)
  lines = [
    "| method | "
    + " | ".join(f"mAP@all {b} bits" for b in bits)
    + " | "
    + " | ".join(f"P@H<={radius} {b} bits" for b in bits)
    + " |",
    "|---|" + "---|" * (2 * len(bits)),
  ]
  for m in methods:
    maps = [results[b].get(m, {}).get("eval", {}).get("map", float("nan")) for b in bits]
    phs = [results[b].get(m, {}).get("eval", {}).get(f"p_at_h{radius}", float("nan")) for b in bits]
    lines.append(
      f"| {m} | "
      + " | ".join(f"{v:.4f}" for v in maps)
      + " | "
      + " | ".join(f"{v:.4f}" for v in phs)
      + " |"
    )
  return "\n".join(lines)


def plot_uncertainty(workdir, cfg, path):
  """Heatmaps of DMUH's per-bit mean uncertainty (bits x steps), one panel per code length."""
  plt = pyplot()

  panels = []
  for bits in cfg.bits:
    rows = [
      r
      for r in read_metrics(os.path.join(workdir, f"{bits}bits", "dmuh", "metrics.jsonl"))
      if r["split"] == "train" and "ubit_00" in r
    ]
    if rows:
      mat = np.array([[r[f"ubit_{k:02d}"] for k in range(int(bits))] for r in rows]).T
      panels.append((bits, [r["step"] for r in rows], mat))
  if not panels:
    return
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
  for ax, (bits, steps, mat) in zip(axes[0], panels):
    im = ax.imshow(
      mat,
      aspect="auto",
      origin="lower",
      cmap="magma",
      extent=(steps[0], steps[-1], -0.5, int(bits) - 0.5),
    )
    ax.set_xlabel("step")
    ax.set_ylabel("bit")
    ax.set_title(f"DMUH bit uncertainty |h - h_ema|, {bits} bits")
    fig.colorbar(im, ax=ax)
  save_figure(fig, path)
