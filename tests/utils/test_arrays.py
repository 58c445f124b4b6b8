import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.utils.arrays import is_concrete


def test_is_concrete_outside_and_inside_transforms():
  x = jnp.ones(3)
  assert is_concrete(x) and is_concrete(np.ones(3)) and is_concrete(2.0)
  seen = []
  jax.jit(lambda v: seen.append(is_concrete(v)) or v)(x)
  jax.grad(lambda v: seen.append(is_concrete(v)) or jnp.sum(v))(x)
  jax.vmap(lambda v: seen.append(is_concrete(v)) or v)(x)
  assert seen == [False, False, False]
