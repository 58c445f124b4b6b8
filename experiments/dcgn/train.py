"""Runs every (setting, method) of the DCGN experiment through the shared train loop."""

from __future__ import annotations

import os

import numpy as np

from experiments.dcgn import data as dcgn_data
from vision_jax import data as vdata
from vision_jax.metrics.video import youtube8m_metrics
from vision_jax.train import SweepRun, run_sweep, train_and_evaluate
from vision_jax.utils import save_json
from vision_jax.video import synthetic, video_classification_task, video_model

METHODS = ("dcgn", "meanpool", "lstm")


def build_model(cfg, method: str, num_classes: int):
  """The method's model from ``cfg.<method>`` plus the shared head config."""
  if method not in METHODS:
    raise ValueError(f"unknown method {method!r} in config.methods; valid: {', '.join(METHODS)}")
  kw = {k: (tuple(v) if isinstance(v, list | tuple) else v) for k, v in cfg[method].items()}
  return video_model(
    method, num_classes, head=cfg.head.kind, num_mixtures=int(cfg.head.num_mixtures), **kw
  )


def reference_levels(
  eval_videos, seed: int, k: int, draws: int = 20
) -> dict[str, dict[str, float]]:
  """Chance (uniform random scores) and the two order-blind oracles, mean over ``draws``."""
  rng = np.random.default_rng(seed)
  labels = eval_videos["labels"]
  rows = {"chance": [], "bag_oracle_6_present": [], "bag_oracle_4_events_known": []}
  for _ in range(draws):
    rows["chance"].append(youtube8m_metrics(rng.random(labels.shape), labels, k))
    for name, key in (
      ("bag_oracle_6_present", "present_classes"),
      ("bag_oracle_4_events_known", "event_classes"),
    ):
      scores = synthetic.bag_oracle_scores(eval_videos[key], rng)
      rows[name].append(youtube8m_metrics(scores, labels, k))
  return {name: {m: float(np.mean([r[m] for r in rs])) for m in rs[0]} for name, rs in rows.items()}


def run(cfg, workdir, *, progress=True):
  """Trains every method on every setting; returns ``{setting: {method: summary}, "reference"}``."""
  methods = [m for m in cfg.methods.split(",") if m]
  for m in methods:
    if m not in METHODS:
      raise ValueError(f"unknown method {m!r} in config.methods; valid: {', '.join(METHODS)}")
  os.makedirs(workdir, exist_ok=True)
  if cfg.data.name == "youtube8m":
    sources, eval_videos, dims, num_classes = dcgn_data.youtube8m_sources(cfg)
  elif cfg.data.name in ("events", "events_synthetic"):
    sources, eval_videos, dims, num_classes = dcgn_data.event_video_sources(
      cfg, workdir, progress=progress
    )
  else:
    raise ValueError(
      f"unknown data.name {cfg.data.name!r}; valid: events, events_synthetic, youtube8m"
    )
  control = set(cfg.control_methods.split(","))
  runs = []
  for setting, (train_src, eval_src) in sources.items():
    train_ds = vdata.train_dataset(
      train_src, global_batch_size=int(cfg.data.global_batch_size), seed=cfg.seed
    )
    eval_data = lambda s=eval_src: vdata.eval_batches(
      s, global_batch_size=int(cfg.data.eval_batch_size)
    )
    for method in methods:
      if setting != "original" and method not in control:
        continue

      def fn(wd, method=method, setting=setting, train_ds=train_ds, eval_data=eval_data):
        task = video_classification_task(
          build_model(cfg, method, num_classes),
          num_classes=num_classes,
          feature_keys=tuple(dims),
          top_k=int(cfg.eval.top_k),
        )
        run_cfg = cfg.copy_and_resolve_references()
        with run_cfg.unlocked():
          run_cfg.method, run_cfg.setting = method, setting
        return train_and_evaluate(run_cfg, wd, task, train_ds, eval_data, progress=progress)

      runs.append(SweepRun(key=(setting, method), fn=fn))
  results = run_sweep(workdir, runs)
  if eval_videos is not None:
    results["reference"] = reference_levels(eval_videos, cfg.seed, int(cfg.eval.top_k))
    save_json(os.path.join(workdir, "results.json"), results)
  return results


def format_table(results) -> str:
  """Markdown table: one row per (setting, method) and the reference levels."""
  lines = [
    "| setting | method | GAP@20 | Hit@1 | PERR | mAP | train s |",
    "|---|---|---|---|---|---|---|",
  ]
  for setting, by_method in results.items():
    if setting == "reference" or not isinstance(by_method, dict):
      continue
    for method, s in by_method.items():
      ev = s.get("eval", {})
      lines.append(
        f"| {setting} | {method} | {ev.get('gap', float('nan')):.4f} | "
        f"{ev.get('hit_at_1', float('nan')):.4f} | {ev.get('perr', float('nan')):.4f} | "
        f"{ev.get('map', float('nan')):.4f} | {s.get('seconds', float('nan')):.0f} |"
      )
  for name, ev in results.get("reference", {}).items():
    lines.append(
      f"| reference | {name} | {ev['gap']:.4f} | {ev['hit_at_1']:.4f} | {ev['perr']:.4f} | "
      f"{ev['map']:.4f} | - |"
    )
  return "\n".join(lines)
