"""The explicit train state pytree."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes; checkpointed as one pytree.

  Attributes:
    step: int32 scalar, number of optimizer updates applied so far.
    params: trainable parameters (flax ``params`` collection). A multi-update task keeps one
      top-level key per parameter group: ``{"gen", "disc"}`` for a GAN, ``{"net", "arch"}`` for
      a differentiable NAS, whose architecture logits are a differentiated group of their own.
    model_state: non-trainable model collections, e.g. ``{"batch_stats": ...}``.
    opt_state: optax state; for a multi-update task ``{update name: optax state of its group}``.
    rng: base PRNG key; step ``t`` uses ``jax.random.fold_in(rng, t)`` (update ``i`` of a
      multi-update step folds in ``i`` once more).
    extra: method-specific state that is neither trained by gradients nor part of the model:
      IR-Softmax class centres, an EMA (momentum) copy of the network.
  """

  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  rng: jax.Array
  extra: Any = flax.struct.field(default_factory=dict)


def split_variables(variables: Any) -> tuple[Any, dict[str, Any]]:
  """Splits flax ``variables`` into ``(params, model_state)``, the two fields of a TrainState.

  ``model_state`` holds every non-``params`` collection (``batch_stats``, ...); ``{}`` when there
  is none. ``{"params": params, **model_state}`` rebuilds the variables for ``apply``.

  Example:
    >>> split_variables({"params": {"w": 1}, "batch_stats": {"mean": 0}})
    ({'w': 1}, {'batch_stats': {'mean': 0}})
  """
  return variables["params"], {k: v for k, v in variables.items() if k != "params"}
