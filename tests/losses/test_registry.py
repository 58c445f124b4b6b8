"""The one loss-name registry: ``margin_loss(name, ...)`` is the named loss."""

import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax import losses as L
from vision_jax.losses.margin import HEADS
from vision_jax.train.embedding import LOSSES

CASES = {
  "softmax": (L.softmax_loss, {}),
  "normface": (L.normface_loss, {"scale": 16.0}),
  "a_softmax": (L.a_softmax_loss, {"margin": 3, "lambda_": 2.0}),
  "am_softmax": (L.am_softmax_loss, {"scale": 30.0, "margin": 0.35}),
  "arcface": (L.arcface_loss, {"scale": 64.0, "margin": 0.5}),
}


def test_registry_names_are_the_task_names():
  assert set(HEADS) == set(CASES) and LOSSES == tuple(HEADS)


@pytest.mark.parametrize("name", list(CASES))
def test_margin_loss_is_the_named_loss(name):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
  y = jnp.asarray([0, 1, 2, 3, 0, 1])
  where = jnp.asarray([1, 1, 1, 0, 1, 1], bool)
  fn, kw = CASES[name]
  np.testing.assert_allclose(
    L.margin_loss(name, x, w, y, where=where, **kw), fn(x, w, y, where=where, **kw), rtol=1e-6
  )


def test_margin_loss_bad_input():
  x, w, y = jnp.ones((2, 3)), jnp.ones((4, 3)), jnp.zeros(2, int)
  with pytest.raises(ValueError, match="loss='cosface' is unknown"):
    L.margin_loss("cosface", x, w, y)
  with pytest.raises(ValueError, match="bias is an argument of loss='softmax' only"):
    L.margin_loss("arcface", x, w, y, bias=jnp.zeros(4))
