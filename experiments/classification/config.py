"""Softmax classification baseline on Fashion-MNIST — the foundation's end-to-end proof.

Run (embedded default, offline, 2-core CPU)::

    python -m experiments.classification --preset=default --workdir=runs/classification/default

Hardware: 2-core x86 CPU; measured 5.3 min wall including data preparation, with other jobs on
the machine (2026-11-28, recorded in commit ``ac94f78``; docs/classification.md).

Expected result of ``default`` (ConvNet 16/16/32/32, 4 epochs = 1,875 steps at batch 128): test
accuracy 0.92 +- 0.01 (measured 0.9227).

Presets:
  smoke    synthetic 28x28 data, a few steps (seconds; run by tests)
  default  Fashion-MNIST from the Debian package dataset-fashion-mnist (offline)
  paper    the same model trained longer (30 epochs) for GPU/TPU; expected ~0.93-0.94
"""

import ml_collections

from vision_jax.utils.config_checks import check_model

PRESETS = ("smoke", "default", "paper")


def get_config(preset: str = "default") -> ml_collections.ConfigDict:
  cfg = ml_collections.ConfigDict()
  cfg.seed = 0
  cfg.data = ml_collections.ConfigDict(
    dict(
      name="fashion_mnist",  # fashion_mnist | synthetic
      data_dir="",  # "" = ~/.cache/vision_jax/tensorflow_datasets (VISION_JAX_DATA_DIR)
      manual_dir="",  # "" = /usr/share/datasets/fashion-mnist
      global_batch_size=128,
      eval_batch_size=1000,
      flip=True,  # random horizontal flip
      num_train=0,  # 0 = all
    )
  )
  cfg.model = ml_collections.ConfigDict(
    dict(name="convnet", widths=(16, 16, 32, 32), hidden=128, conv_impl="auto", dtype="float32")
  )
  cfg.optim = ml_collections.ConfigDict(
    dict(
      name="adamw", lr=2e-3, weight_decay=1e-4, schedule="cosine", warmup_steps=100, grad_clip=0.0
    )
  )
  cfg.train = ml_collections.ConfigDict(
    dict(
      epochs=4.0,
      num_steps=0,  # num_steps 0 = derived from epochs
      log_every=50,
      eval_every=0,
      checkpoint_every=500,
      keep_checkpoints=2,
      prefetch=4,
    )
  )
  cfg.mesh = ml_collections.ConfigDict(dict(model=1))
  if preset == "smoke":
    cfg.data.name = "synthetic"
    cfg.data.num_train = 512
    cfg.data.global_batch_size = 32
    cfg.data.eval_batch_size = 64
    cfg.model.widths = (8, 8, 16, 16)
    cfg.model.hidden = 32
    cfg.train.epochs = 0.0
    cfg.train.num_steps = 8
    cfg.train.eval_every = 4
    cfg.train.checkpoint_every = 4
    cfg.train.log_every = 2
    cfg.optim.warmup_steps = 2
  elif preset == "paper":
    cfg.train.epochs = 30.0
    cfg.train.eval_every = 2000
  return cfg


def validate(cfg: ml_collections.ConfigDict) -> None:
  """Rejects an invalid ``model`` section (name, dtype, conv_impl, widths, hidden).

  Raises:
    ConfigError: naming ``--config.model.<key>`` and its value (for ``model.dtype``, the valid
      compute dtypes).
  """
  check_model(cfg)
