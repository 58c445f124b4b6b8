"""vision_jax: ten computer-vision / ML papers as pure, jit-compiled JAX/Flax functions.

Sub-packages (each re-exports its public names):

- ``vision_jax.train``     one sharded train loop (Task, train_and_evaluate, orbax checkpoints,
  sweeps, EMA)
- ``vision_jax.data``      TF-free TFDS builders -> array_record -> grain pipelines, transforms
- ``vision_jax.models``    flax.linen backbones (ResNet, LightCNN, ConvNet)
- ``vision_jax.losses``    optax-style per-example losses (margin softmax family, IR-Softmax, ...)
- ``vision_jax.metrics``   host-side NumPy evaluation protocols over gathered model outputs
- ``vision_jax.search``    anisotropic vector quantization / MIPS index
- ``vision_jax.linalg``    low-rank principal eigenmatrix analysis
- ``vision_jax.hashing``   deep hashing (DMUH, DPSH, CSQ) and packed-bit Hamming search
- ``vision_jax.hfr``       heterogeneous face recognition (DVG-Face)
- ``vision_jax.fewshot``   episodic few-shot classification (ProtoNet, CRN)
- ``vision_jax.detection`` anchor-based single-stage face detection (HAMBox)
- ``vision_jax.nas``       latency-constrained differentiable architecture search (TF-NAS)
- ``vision_jax.video``     frame-sequence models (DCGN and its baselines)
- ``vision_jax.utils``     launcher, config overrides, shared array and plotting helpers

Sub-packages are imported lazily so that ``import vision_jax`` stays cheap.
"""

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = (
  "train",
  "data",
  "models",
  "losses",
  "metrics",
  "search",
  "linalg",
  "hashing",
  "hfr",
  "fewshot",
  "detection",
  "nas",
  "video",
  "utils",
)


def __getattr__(name):
  if name in _SUBPACKAGES:
    return importlib.import_module(f"vision_jax.{name}")
  raise AttributeError(f"module 'vision_jax' has no attribute {name!r}")
