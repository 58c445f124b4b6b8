"""DMUH vs DPSH vs CSQ on the embedded Fashion-MNIST hashing split (same backbone, budget, seed).

Run (embedded default, offline, 2-core CPU)::

    python -m experiments.dmuh --preset=default --workdir=runs/dmuh/default

Split (DeepHash-pytorch ``cifar10`` style on pooled Fashion-MNIST 70k): per class 100 query /
500 train, rest database -> 1,000 query / 5,000 train / 64,000 database. Metrics: mAP@all
(stable Hamming ranking, ties by database index; tie-aware mAP also reported) and P@H<=2.
Prints a table over 16/32/64 bits and saves ``bit_uncertainty.png`` (DMUH's per-bit
uncertainty |h - h_ema| over training).

Hardware: 2-core x86 CPU; measured 10.1 min wall (6.9 min user CPU) for the 9 runs (2026-11-28,
commit ``49b824e``; docs/dmuh.md holds the full table).

Expected result of ``default`` (+- 0.01 mAP; single seed, a tolerance, not a measured spread):
mAP@all at 16 / 32 / 64 bits DMUH 0.782 / 0.778 / 0.784, CSQ 0.782 / 0.777 / 0.787, DPSH
0.535 / 0.628 / 0.680; DMUH ties CSQ. The paper's claim (CIFAR-10 / NUS-WIDE / COCO /
Clothing1M) is that DMUH beats its baselines at every code length.

Presets:
  smoke    synthetic data, 2 methods x 1 code length, a few steps (seconds; run by tests)
  default  the embedded setting above
  paper    CIFAR-10 (python pickles in --config.data.cifar10_dir), ResNet-18, 150 epochs (GPU/TPU);
           NUS-WIDE / COCO hashing lists with --config.data.name=nuswide_21|coco
           --config.data.image_list_dir=DIR --config.eval.topk=5000 (mAP@5000 as DeepHash-pytorch)
"""

import ml_collections

from vision_jax.utils.config_checks import (
  check_choice,
  check_choices,
  check_model,
  check_number,
  check_numbers,
)

PRESETS = ("smoke", "default", "paper")


def get_config(preset: str = "default") -> ml_collections.ConfigDict:
  cfg = ml_collections.ConfigDict()
  cfg.seed = 0
  cfg.methods = "dpsh,csq,dmuh"
  cfg.bits = (16, 32, 64)
  cfg.data = ml_collections.ConfigDict(
    dict(
      name="fashion_mnist",  # fashion_mnist | cifar10 | nuswide_21 | coco | synthetic
      data_dir="",
      manual_dir="",
      cifar10_dir="",
      image_list_dir="",  # NUS-WIDE / COCO: train.txt, test.txt, database.txt + images
      image_size=224,  # photos (NUS-WIDE / COCO) are resized to this
      num_query_per_class=100,
      num_train_per_class=500,
      global_batch_size=64,
      eval_batch_size=1000,
      flip=True,
    )
  )
  cfg.model = ml_collections.ConfigDict(
    dict(name="convnet", widths=(16, 16, 32, 32), hidden=128, conv_impl="auto")
  )
  cfg.dpsh = ml_collections.ConfigDict(dict(quantization_weight=0.1))
  cfg.csq = ml_collections.ConfigDict(dict(quantization_weight=1e-4))
  cfg.dmuh = ml_collections.ConfigDict(
    dict(
      base="center",
      momentum=0.99,
      bit_weight=1.0,
      image_weight=1.0,
      discrepancy="abs",
      quantization_weight=1e-4,
    )
  )
  cfg.optim = ml_collections.ConfigDict(
    dict(
      name="adamw", lr=1e-3, weight_decay=1e-4, schedule="cosine", warmup_steps=30, grad_clip=5.0
    )
  )
  cfg.train = ml_collections.ConfigDict(
    dict(
      num_steps=300, log_every=10, eval_every=0, checkpoint_every=0, keep_checkpoints=1, prefetch=4
    )
  )
  cfg.eval = ml_collections.ConfigDict(dict(topk=0, radius=2))  # topk 0 = mAP@all
  cfg.mesh = ml_collections.ConfigDict(dict(model=1))
  if preset == "smoke":
    cfg.data.name = "synthetic"
    cfg.data.num_query_per_class = 5
    cfg.data.num_train_per_class = 20
    cfg.data.global_batch_size = 16
    cfg.data.eval_batch_size = 96
    cfg.methods = "csq,dmuh"
    cfg.bits = (16,)
    cfg.model.widths = (4, 4, 8, 8)
    cfg.model.hidden = 16
    cfg.optim.warmup_steps = 1
    cfg.train.num_steps = 4
    cfg.train.log_every = 2
  elif preset == "paper":
    cfg.data.name = "cifar10"
    cfg.model.name = "resnet18"
    cfg.data.global_batch_size = 128
    cfg.optim = ml_collections.ConfigDict(
      dict(
        name="rmsprop",
        lr=1e-5,
        weight_decay=1e-5,
        schedule="constant",
        warmup_steps=0,
        grad_clip=0.0,
      )
    )
    cfg.train.num_steps = 150 * 5000 // 128
  return cfg


def validate(cfg: ml_collections.ConfigDict) -> None:
  """Rejects invalid method / code-length / loss settings before any data is built.

  Raises:
    ConfigError: naming ``--config.<key>`` and its value.
  """
  from experiments.dmuh.task import METHODS

  check_choices(cfg, "methods", METHODS)
  check_numbers(cfg, "bits", low=2, integer=True)
  check_model(cfg)
  check_number(cfg, "dpsh.quantization_weight", low=0.0)
  check_number(cfg, "csq.quantization_weight", low=0.0)
  check_choice(cfg, "dmuh.base", ("center", "pairwise"))
  check_number(cfg, "dmuh.momentum", low=0.0, high=1.0)
  check_number(cfg, "dmuh.bit_weight", low=0.0)
  check_number(cfg, "dmuh.image_weight", low=0.0)
  check_choice(cfg, "dmuh.discrepancy", ("abs", "squared"))
  check_number(cfg, "dmuh.quantization_weight", low=0.0)
  check_number(cfg, "eval.topk", low=0, integer=True)
  check_number(cfg, "eval.radius", low=0, integer=True)
