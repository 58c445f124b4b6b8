"""Metric writers: ``metrics.jsonl`` (resume-safe) + TensorBoard event files, and PNG curves."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from vision_jax.utils.plotting import pyplot, save_figure


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


_NOT_RESULTS = ("seconds", "num_examples", "nonfinite", "applied")


def _is_result(key: str) -> bool:
  return not any(key == k or key.endswith(k) or key.endswith("_" + k) for k in _NOT_RESULTS)


def smooth(values, weight: float = 0.9) -> np.ndarray:
  """TensorBoard-style debiased exponential moving average of a curve."""
  values = np.asarray(values, np.float64)
  out = np.empty_like(values)
  acc, norm = 0.0, 0.0
  for i, v in enumerate(values):
    acc = weight * acc + (1 - weight) * v
    norm = weight * norm + (1 - weight)
    out[i] = acc / norm
  return out


def _series(rows, key):
  pts = [(r["step"], r[key]) for r in rows if key in r and np.isfinite(r[key])]
  return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])


def _keys(rows, suffix):
  """``suffix`` and every ``<update>/suffix`` key present in ``rows``, sorted."""
  return sorted({k for r in rows for k in r if k == suffix or k.endswith("/" + suffix)})


def curve_panels(rows, keys=None) -> tuple[list[tuple[str, str]], list[str]]:
  """What :func:`plot_curves` draws: ``([(metric, title), ...], eval metrics measured once)``."""
  train = [r for r in rows if r.get("split") == "train"]
  evals = [r for r in rows if r.get("split") == "eval"]
  eval_keys = sorted({k for r in evals for k in r if k not in ("step", "split") and _is_result(k)})
  if keys is not None:
    eval_keys = [k for k in eval_keys if k in keys]
  curves = [k for k in eval_keys if len(_series(evals, k)[0]) >= 2]
  once = [k for k in eval_keys if k not in curves]
  panels = [("loss", "train loss"), ("lr", "learning rate"), ("grad_norm", "grad norm")]
  panels = [(k, t) for k, t in panels if _keys(train, k)] + [(k, f"eval {k}") for k in curves]
  return panels, once


def plot_curves(
  workdir: str, out: str | None = None, keys: tuple[str, ...] | None = None
) -> str | None:
  """Saves ``curves.png``: what a researcher looks at during training.

  Panels: train loss (raw, faint, and EMA-smoothed; log scale when positive), learning rate,
  gradient global norm (one curve per update of a multi-update task), then every eval metric
  that has at least two eval points. Eval metrics measured once (at the end) are printed in the
  figure's title instead of drawn as one-point panels; timings are never plotted.

  Args:
    workdir: run directory holding ``metrics.jsonl``.
    out: output path (default ``workdir/curves.png``).
    keys: restrict the eval panels to these metric names.

  Returns:
    The path written, or ``None`` when there are no metrics yet.
  """
  rows = read_metrics(os.path.join(workdir, "metrics.jsonl"))
  train = [r for r in rows if r.get("split") == "train"]
  evals = [r for r in rows if r.get("split") == "eval"]
  if not train and not evals:
    return None
  plt = pyplot()
  panels, once = curve_panels(rows, keys)
  curves = [k for k, t in panels if t.startswith("eval ")]
  n = max(len(panels), 1)
  fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False)
  for ax, (key, title) in zip(axes[0], panels):
    if key in curves:
      x, y = _series(evals, key)
      ax.plot(x, y, marker="o", lw=1.2)
    else:
      names = _keys(train, key)
      positive = True
      for i, name in enumerate(names):
        x, y = _series(train, name)
        if not len(x):
          continue
        color = f"C{i}"
        label = name if len(names) > 1 else None
        if key == "loss" and len(y) > 4:
          ax.plot(x, y, lw=0.8, alpha=0.3, color=color)
          ax.plot(x, smooth(y), lw=1.5, color=color, label=label)
        else:
          ax.plot(x, y, lw=1.2, color=color, label=label)
        positive &= bool(np.all(y > 0))
      if key in ("loss", "grad_norm") and positive:
        ax.set_yscale("log")
      if len(names) > 1:
        ax.legend(fontsize=7)
    ax.set_xlabel("step")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
  if once:
    # A metric that is NaN at every eval (e.g. a share with an empty denominator) has no point.
    last = {k: y[-1] if len(y := _series(evals, k)[1]) else float("nan") for k in once}
    text = ", ".join(f"{k}={v:.4g}" for k, v in last.items())
    fig.suptitle(f"final eval: {text}", fontsize=9)
  return save_figure(fig, out or os.path.join(workdir, "curves.png"))


def plot_comparison(
  runs: dict[str, str],
  out: str,
  *,
  metrics: tuple[str, ...] | None = None,
  title: str | None = None,
) -> str | None:
  """One sheet comparing the runs of a sweep: every run's smoothed train loss, and a bar chart
  per final eval metric (from each run's ``summary.json``).

  Args:
    runs: ``{label: run workdir}``, e.g. ``{"closed_lt10/ir_am_softmax": ".../ir_am_softmax"}``.
    out: the PNG path.
    metrics: the eval metrics to draw (default: every result metric the runs share).
    title: optional figure title.

  Returns:
    ``out``, or ``None`` if no run has metrics.
  """
  import json

  curves, finals = {}, {}
  for label, wd in runs.items():
    train = [
      r for r in read_metrics(os.path.join(wd, "metrics.jsonl")) if r.get("split") == "train"
    ]
    name = (_keys(train, "loss") or [None])[0]
    if name is not None:
      curves[label] = _series(train, name)
    path = os.path.join(wd, "summary.json")
    if os.path.exists(path):
      with open(path) as f:
        ev = json.load(f).get("eval", {}) or {}
      finals[label] = {k: float(v) for k, v in ev.items() if isinstance(v, int | float)}
  if not curves and not finals:
    return None
  shared = set.intersection(*(set(v) for v in finals.values())) if finals else set()
  names = [k for k in (metrics or sorted(shared)) if k in shared and _is_result(k)]
  plt = pyplot()
  n = 1 + len(names)
  fig, axes = plt.subplots(1, n, figsize=(max(4.6 * n, 6), 3.8), squeeze=False)
  ax = axes[0, 0]
  for i, (label, (x, y)) in enumerate(curves.items()):
    if len(x):
      ax.plot(x, smooth(y) if len(y) > 4 else y, lw=1.3, color=f"C{i % 10}", label=label)
  if curves and all(np.all(y > 0) for _, y in curves.values() if len(y)):
    ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_title("train loss (smoothed)", fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=6)
  labels = list(finals)
  for ax, k in zip(axes[0, 1:], names):
    vals = [finals[label][k] for label in labels]
    ax.barh(range(len(labels)), vals, color=[f"C{i % 10}" for i in range(len(labels))])
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.invert_yaxis()
    for j, v in enumerate(vals):
      ax.text(v, j, f" {v:.4g}", va="center", fontsize=6)
    ax.set_title(k, fontsize=10)
    ax.grid(alpha=0.3, axis="x")
  if title:
    fig.suptitle(title, fontsize=10)
  return save_figure(fig, out)
