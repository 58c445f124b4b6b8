"""Metric writers: ``metrics.jsonl`` (resume-safe) + TensorBoard event files, and PNG curves."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np


class MetricWriter:
  """Appends ``{"step": s, "split": ..., **scalars}`` rows to ``workdir/metrics.jsonl`` and
  TensorBoard events (tensorboardX, no TensorFlow) to ``workdir/tb``. Only process 0 writes.

  On resume from step ``s`` rows with ``step > s`` (written after the checkpoint by a run that
  was killed) are dropped, so the file never holds two values for one step.
  """

  def __init__(
    self, workdir: str, *, resume_step: int = 0, enabled: bool = True, tensorboard: bool = True
  ):
    self.enabled = enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    if os.path.exists(self.path):
      keep = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
      with open(self.path, "w") as f:
        for r in keep:
          f.write(json.dumps(r) + "\n")
    if tensorboard:
      try:
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(os.path.join(workdir, "tb"), purge_step=resume_step + 1)
      except ImportError:  # pragma: no cover - optional
        self._tb = None

  def write(self, step: int, scalars: dict[str, Any], split: str = "train"):
    if not self.enabled:
      return
    row = {"step": int(step), "split": split}
    row.update({k: float(np.asarray(v)) for k, v in scalars.items()})
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    if self._tb is not None:
      for k, v in row.items():
        if k not in ("step", "split"):
          self._tb.add_scalar(f"{split}/{k}", v, int(step))

  def close(self):
    if self._tb is not None:
      self._tb.flush()
      self._tb.close()


def read_metrics(path: str) -> list[dict[str, Any]]:
  """Reads ``metrics.jsonl`` rows, skipping a torn last line."""
  rows = []
  if not os.path.exists(path):
    return rows
  with open(path) as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return rows


def plot_curves(
  workdir: str, out: str | None = None, keys: tuple[str, ...] | None = None
) -> str | None:
  """Saves ``curves.png``: train loss and every eval metric against the step."""
  rows = read_metrics(os.path.join(workdir, "metrics.jsonl"))
  if not rows:
    return None
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  train = [r for r in rows if r["split"] == "train"]
  evals = [r for r in rows if r["split"] == "eval"]
  eval_keys = sorted({k for r in evals for k in r if k not in ("step", "split")})
  if keys is not None:
    eval_keys = [k for k in eval_keys if k in keys]
  n = 1 + len(eval_keys)
  fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.2), squeeze=False)
  ax = axes[0, 0]
  loss_keys = sorted({k for r in train for k in r if k == "loss" or k.endswith("/loss")})
  for k in loss_keys:  # one curve per update of a multi-update task (d/loss, g/loss)
    pts = [(r["step"], r[k]) for r in train if k in r]
    ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1, label=k)
  if len(loss_keys) > 1:
    ax.legend(fontsize=7)
  ax.set_xlabel("step")
  ax.set_ylabel("train loss")
  if all(r[k] > 0 for r in train for k in loss_keys if k in r):
    ax.set_yscale("log")
  ax.grid(alpha=0.3)
  for ax, k in zip(axes[0, 1:], eval_keys):
    pts = [(r["step"], r[k]) for r in evals if k in r]
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel(f"eval {k}")
    ax.grid(alpha=0.3)
  fig.tight_layout()
  out = out or os.path.join(workdir, "curves.png")
  fig.savefig(out, dpi=110)
  plt.close(fig)
  return out
