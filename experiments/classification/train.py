"""Builds data, model and task for the classification experiment and runs the shared loop."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from vision_jax import data as vdata
from vision_jax.models import get_model
from vision_jax.train import train_and_evaluate
from vision_jax.train.classification import classification_task


def make_sources(cfg):
  d = cfg.data
  if d.name == "synthetic":
    n = d.num_train or 2048
    return vdata.synthetic_source(n, (28, 28, 1), 10, seed=1), vdata.synthetic_source(
      256, (28, 28, 1), 10, seed=2
    )
  if d.name == "fashion_mnist":
    kw = dict(data_dir=d.data_dir or None, manual_dir=d.manual_dir or None)
    # In-memory copies (47 MB): batch reads become NumPy indexing instead of per-example decode.
    train = vdata.materialize(vdata.fashion_mnist("train", **kw))
    test = vdata.materialize(vdata.fashion_mnist("test", **kw))
    if d.num_train:
      train = vdata.SubsetSource(train, np.arange(d.num_train))
    return train, test
  raise ValueError(f"unknown data.name {d.name!r}; valid: fashion_mnist, synthetic")


def run(cfg, workdir, *, progress=True):
  train_src, test_src = make_sources(cfg)
  steps_per_epoch = len(train_src) / cfg.data.global_batch_size
  if not cfg.train.num_steps:
    with cfg.unlocked():
      cfg.train.num_steps = int(math.ceil(cfg.train.epochs * steps_per_epoch))
  train_ds = vdata.train_dataset(
    train_src,
    global_batch_size=cfg.data.global_batch_size,
    seed=cfg.seed,
    transform=vdata.random_horizontal_flip if cfg.data.flip else None,
  )
  model = get_model(
    cfg.model.name,
    num_classes=10,
    widths=tuple(cfg.model.widths),
    hidden=cfg.model.hidden,
    conv_impl=cfg.model.conv_impl,
    dtype=getattr(jnp, cfg.model.dtype),
  )
  task = classification_task(model, num_classes=10)
  eval_data = lambda: vdata.eval_batches(test_src, global_batch_size=cfg.data.eval_batch_size)
  print(
    f"classification: {len(train_src)} train / {len(test_src)} test examples, "
    f"{cfg.train.num_steps} steps ({cfg.train.num_steps / steps_per_epoch:.2f} epochs) "
    f"at batch {cfg.data.global_batch_size}; workdir {workdir}"
  )
  summary = train_and_evaluate(cfg, workdir, task, train_ds, eval_data, progress=progress)
  return summary


def format_table(summary) -> str:
  ev = summary.get("eval", {})
  rows = [
    ("test accuracy", f"{100 * ev.get('accuracy', float('nan')):.2f} %"),
    ("test loss", f"{ev.get('loss', float('nan')):.4f} nats"),
    ("test examples", f"{int(ev.get('num_examples', 0))}"),
    ("steps", f"{summary.get('step')}"),
    ("train wall time", f"{summary.get('seconds', 0.0) / 60:.1f} min"),
  ]
  w = max(len(r[0]) for r in rows)
  return "\n".join(f"| {k:<{w}} | {v:>12} |" for k, v in rows)
