"""A tiny model + deterministic random-access data for train-loop tests (also run as a script)."""

from __future__ import annotations

import argparse
import os

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np


class ToyNet(nn.Module):
  num_classes: int = 4

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = nn.Conv(8, (3, 3), strides=(2, 2))(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    x = nn.relu(x)
    emb = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes)(emb), {"embedding": emb}


class ToyData:
  """``data[t]`` is a batch that depends only on (seed, t): labels decide a bright quadrant."""

  def __init__(self, batch_size=16, seed=0, size=8, nan_at=None):
    self.batch_size, self.seed, self.size, self.nan_at = batch_size, seed, size, nan_at

  def __getitem__(self, t):
    rng = np.random.default_rng([self.seed, t])
    labels = rng.integers(0, 4, self.batch_size)
    img = rng.integers(0, 60, (self.batch_size, self.size, self.size, 1)).astype(np.uint8)
    h = self.size // 2
    for i, y in enumerate(labels):
      r, c = divmod(int(y), 2)
      img[i, r * h : (r + 1) * h, c * h : (c + 1) * h] += 150
    return {"image": img, "label": labels.astype(np.int32)}

  def eval_batches(self, n=40, batch_size=16):
    parts = [self[10_000 + i] for i in range(-(-n // self.batch_size))]
    data = {k: np.concatenate([p[k] for p in parts])[:n] for k in parts[0]}
    for i in range(0, n, batch_size):
      chunk = {k: v[i : i + batch_size] for k, v in data.items()}
      m = len(chunk["label"])
      pad = batch_size - m
      chunk = {
        k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) for k, v in chunk.items()
      }
      chunk["mask"] = np.arange(batch_size) < m
      yield chunk


def toy_config(num_steps=6, **train):
  cfg = ml_collections.ConfigDict()
  cfg.seed = 0
  cfg.train = ml_collections.ConfigDict(
    dict(
      num_steps=num_steps,
      log_every=1,
      eval_every=0,
      checkpoint_every=2,
      keep_checkpoints=10,
      prefetch=2,
    )
  )
  cfg.train.update(train)
  cfg.optim = ml_collections.ConfigDict(
    dict(name="sgd", lr=0.1, momentum=0.9, schedule="cosine", warmup_steps=1, weight_decay=1e-4)
  )
  return cfg


def run_script(make_task, make_data, make_config):
  """The script mode the subprocess tests use: ``--workdir --steps --sleep`` (seconds per batch,
  so a test can kill the trainer mid-run), then ``train_and_evaluate`` and a ``SUMMARY`` line."""
  import time

  p = argparse.ArgumentParser()
  p.add_argument("--workdir", required=True)
  p.add_argument("--steps", type=int, default=12)
  p.add_argument("--sleep", type=float, default=0.0, help="seconds per batch (lets tests kill us)")
  a = p.parse_args()
  from vision_jax.train import train_and_evaluate

  data = make_data()
  if a.sleep:
    base = data

    class Slow:
      def __getitem__(self, t):
        time.sleep(a.sleep)
        return base[t]

    data = Slow()
  out = train_and_evaluate(make_config(a.steps), a.workdir, make_task(), data, progress=False)
  print("SUMMARY", out)
  os.makedirs(a.workdir, exist_ok=True)


def main():
  from vision_jax.train.classification import classification_task

  run_script(lambda: classification_task(ToyNet(), num_classes=4), ToyData, toy_config)


if __name__ == "__main__":
  main()
