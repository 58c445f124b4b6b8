"""`get_model(name, **kwargs)`: the one place experiments turn a config string into a Module."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.models.convnet import ConvNet
from vision_jax.models.lightcnn import LightCNN9, LightCNN29v2
from vision_jax.models.resnet import Bottleneck, ResNet

_REGISTRY = {
  "convnet": ConvNet,
  "resnet18": functools.partial(ResNet, stage_sizes=(2, 2, 2, 2)),
  "resnet34": functools.partial(ResNet, stage_sizes=(3, 4, 6, 3)),
  "resnet50": functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block=Bottleneck),
  "lightcnn9": LightCNN9,
  "lightcnn29v2": LightCNN29v2,
}

MODEL_NAMES = tuple(_REGISTRY)

#: Compute dtypes a model accepts by name (params stay float32).
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


def compute_dtype(name: str, *, key: str = "dtype"):
  """The ``jnp`` dtype of a compute-dtype name (``"float32"``, ``"bfloat16"``, ``"float16"``).

  Args:
    name: one of `COMPUTE_DTYPES`.
    key: what to call the argument in the error (e.g. the config key ``"model.dtype"``).

  Raises:
    ValueError: any other name; the message names ``key``, the value and the valid dtypes.
  """
  if not isinstance(name, str) or name not in COMPUTE_DTYPES:
    raise ValueError(f"{key}={name!r} is not a compute dtype; valid: {', '.join(COMPUTE_DTYPES)}")
  return getattr(jnp, name)


def get_model(name: str, **kwargs) -> nn.Module:
  """Builds a backbone by name.

  Every model follows one contract: ``model.apply(variables, x, train=bool,
  mutable=["batch_stats"])`` with NHWC float32 ``x``; ``__call__`` returns ``(output,
  intermediates)`` where ``output`` is float32 logits ``[B, num_classes]`` (or the embedding
  ``[B, D]`` when ``num_classes=None``) and ``intermediates["embedding"]`` is ``[B, D]``.

  Args:
    name: one of `MODEL_NAMES` (case-insensitive; ``-`` and ``_`` ignored, so ``"ResNet-18"``
      works).
    **kwargs: module fields, e.g. ``num_classes=10, stem="cifar", width=0.5,
      dtype=jnp.bfloat16`` (or ``dtype="bfloat16"``), ``conv_impl="auto"``.

  Returns:
    An unbound ``flax.linen.Module``.

  Raises:
    ValueError: unknown name (the message lists valid names).
    TypeError: unknown keyword for that model (the message lists its fields).
    ValueError: a ``dtype`` name that is not in `COMPUTE_DTYPES` (names are accepted too).
  """
  if isinstance(kwargs.get("dtype"), str):
    kwargs["dtype"] = compute_dtype(kwargs["dtype"])
  key = name.lower().replace("-", "").replace("_", "")
  if key not in _REGISTRY:
    raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
  ctor = _REGISTRY[key]
  cls = ctor.func if isinstance(ctor, functools.partial) else ctor
  fields = [f for f in cls.__dataclass_fields__ if f not in ("parent", "name")]
  bad = sorted(set(kwargs) - set(fields))
  if bad:
    raise TypeError(f"model {name!r} has no field(s) {bad}; valid fields: {fields}")
  return ctor(**kwargs)


def backbone_from_config(mcfg) -> nn.Module:
  """A feature extractor (``num_classes=None``) from an experiment's ``config.model`` section.

  ``mcfg.name`` picks the model; ``widths``/``hidden`` apply to the ConvNet, ``stem`` (default
  ``"cifar"`` for ResNets) and ``conv_impl`` to the others when present.
  """
  kw = {"num_classes": None}
  if "conv_impl" in mcfg:
    kw["conv_impl"] = mcfg.conv_impl
  key = mcfg.name.lower().replace("-", "").replace("_", "")
  if key == "convnet":
    kw.update(widths=tuple(mcfg.widths), hidden=int(mcfg.hidden))
  elif key.startswith("resnet"):
    kw["stem"] = mcfg.get("stem", "cifar")
  return get_model(mcfg.name, **kw)
