"""A three-run toy sweep launched like an experiment, for the preemption tests.

    python -m tests.train.toy_sweep --preset=smoke --workdir=DIR [--config.k=v ...]

goes through :func:`vision_jax.utils.launch` and :func:`vision_jax.train.run_sweep` exactly as
``python -m experiments.<slug>`` does. Slow-downs that let a test aim a signal come from the
environment, so the config (and every number) is the same whatever the timing:
``TOY_SETUP_SLEEP`` (seconds before each run's ``train_and_evaluate``) and ``TOY_STEP_SLEEP``
(seconds per train batch).
"""

from __future__ import annotations

import os
import sys
import time

import jax
import jax.numpy as jnp

from tests.train.toy import ToyData, ToyNet, toy_config

PRESETS = ("smoke",)


def get_config(preset: str = "smoke"):
  del preset
  cfg = toy_config(num_steps=12, checkpoint_every=2, eval_every=0)
  cfg.runs = "a,b,c"
  return cfg


class _SlowData(ToyData):
  def __init__(self, sleep: float, **kw):
    super().__init__(**kw)
    self.sleep = sleep

  def __getitem__(self, t):
    if self.sleep:
      time.sleep(self.sleep)
    return super().__getitem__(t)


def _finalize(state):
  return {"param_sq": sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(state.params))}


def run(cfg, workdir):
  import dataclasses

  from vision_jax.train import SweepRun, run_sweep, train_and_evaluate
  from vision_jax.train.classification import classification_task

  setup_sleep = float(os.environ.get("TOY_SETUP_SLEEP", 0))
  step_sleep = float(os.environ.get("TOY_STEP_SLEEP", 0))

  def train_one(wd, seed):
    if setup_sleep:
      print(f"setup of {wd}", flush=True)
      time.sleep(setup_sleep)
    run_cfg = cfg.copy_and_resolve_references()
    run_cfg.seed = seed
    data = _SlowData(step_sleep, seed=seed)
    task = classification_task(ToyNet(), num_classes=4)
    task = dataclasses.replace(task, finalize=_finalize)
    return train_and_evaluate(run_cfg, wd, task, data, lambda: data.eval_batches(), progress=False)

  runs = [
    SweepRun(key=("toy", name), fn=lambda wd, s=seed: train_one(wd, s))
    for seed, name in enumerate(cfg.runs.split(","))
  ]
  return run_sweep(workdir, runs)


def format_table(results) -> str:
  rows = ["| run | accuracy | loss | final train loss | param_sq |", "|---|---|---|---|---|"]
  for name, s in results["toy"].items():
    ev = s["eval"]
    rows.append(
      f"| {name} | {ev['accuracy']!r} | {ev['loss']!r} | {s['final_train']['loss']!r} "
      f"| {s['param_sq']!r} |"
    )
  return "\n".join(rows)


def main(argv=None):
  from vision_jax.utils import launch

  # launch() loads ``experiments.<slug>.config``; this module plays that part.
  sys.modules["experiments.toy_sweep.config"] = sys.modules[__name__]
  return launch("toy_sweep", run, lambda cfg, r: format_table(r), argv)


if __name__ == "__main__":
  main()
