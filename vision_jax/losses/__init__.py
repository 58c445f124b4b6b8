"""vision_jax.losses: optax-style per-example losses.

Margin-softmax family (``margin.py``), IR-Softmax (``ir_softmax.py``), class-parallel heads
(``class_parallel.py``) and input validation helpers (``_validate.py``). Every loss takes
``(embeddings [B, D], weights [C, D], labels [B] int, *, ...)`` and returns ``[B]`` float32.
"""

from vision_jax.losses._validate import check_head_inputs_traced, checked
from vision_jax.losses.class_parallel import (
  class_parallel_loss,
  class_parallel_update_centers,
  class_sharding,
)
from vision_jax.losses.ir_softmax import (
  init_class_centers,
  ir_a_softmax_loss,
  ir_am_softmax_loss,
  ir_arcface_loss,
  ir_center_momentum,
  ir_weights,
  update_class_centers,
  weight_center_angles,
)
from vision_jax.losses.margin import (
  a_softmax_logits,
  a_softmax_loss,
  am_softmax_logits,
  am_softmax_loss,
  arcface_logits,
  arcface_loss,
  l2_normalize,
  margin_loss,
  normface_logits,
  normface_loss,
  softmax_logits,
  softmax_loss,
  sphereface_lambda,
)

__all__ = [
  "a_softmax_logits",
  "a_softmax_loss",
  "am_softmax_logits",
  "am_softmax_loss",
  "arcface_logits",
  "arcface_loss",
  "check_head_inputs_traced",
  "checked",
  "class_parallel_loss",
  "class_parallel_update_centers",
  "class_sharding",
  "init_class_centers",
  "ir_a_softmax_loss",
  "ir_am_softmax_loss",
  "ir_arcface_loss",
  "ir_center_momentum",
  "ir_weights",
  "l2_normalize",
  "margin_loss",
  "normface_logits",
  "normface_loss",
  "softmax_logits",
  "softmax_loss",
  "sphereface_lambda",
  "update_class_centers",
  "weight_center_angles",
]
