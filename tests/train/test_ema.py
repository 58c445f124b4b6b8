import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.train import ema_update


def test_ema_update_blends_in_float32_and_keeps_dtypes():
  ema = {"w": jnp.array([1.0, 2.0]), "b": {"x": jnp.array(4.0, jnp.bfloat16)}}
  new = {"w": jnp.array([3.0, 0.0]), "b": {"x": jnp.array(0.0, jnp.bfloat16)}}
  out = ema_update(ema, new, momentum=0.75)
  np.testing.assert_allclose(out["w"], [1.5, 1.5])
  assert out["b"]["x"].dtype == jnp.bfloat16 and float(out["b"]["x"]) == 3.0
  np.testing.assert_array_equal(ema_update(ema, new, momentum=0.0)["w"], new["w"])
  np.testing.assert_array_equal(ema_update(ema, new, momentum=1.0)["w"], ema["w"])
  # A bfloat16 copy still moves by a (1 - m) step that bfloat16 products would round away.
  slow = ema_update(
    {"x": jnp.array(1.0, jnp.bfloat16)}, {"x": jnp.array(1.5, jnp.bfloat16)}, momentum=0.99
  )
  np.testing.assert_allclose(float(slow["x"]), 0.99 + 0.015, atol=4e-3)


def test_ema_update_has_no_gradient():
  ema, new = {"w": jnp.ones(3)}, {"w": jnp.full(3, 2.0)}
  g = jax.grad(lambda p: jnp.sum(ema_update(ema, p, momentum=0.5)["w"]))(new)
  np.testing.assert_array_equal(g["w"], np.zeros(3))


def test_ema_update_bad_input():
  ema = {"a": jnp.zeros(3), "b": jnp.zeros(2)}
  with pytest.raises(ValueError, match="momentum must be in"):
    ema_update(ema, ema, momentum=1.5)
  with pytest.raises(ValueError, match=r"ema_params and params must have the same tree structure"):
    ema_update(ema, {"a": jnp.zeros(3)}, momentum=0.9)
  with pytest.raises(ValueError, match=r"ema_params\['b'\] has shape \(2,\) but params has \(4,\)"):
    ema_update(ema, {"a": jnp.zeros(3), "b": jnp.zeros(4)}, momentum=0.9)
