"""HashNetwork wrapper with a tiny Dense backbone."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.hashing import HashNetwork, binarize
from vision_jax.train import ema_update


class TinyBackbone(nn.Module):
  @nn.compact
  def __call__(self, x, *, train: bool):
    emb = nn.relu(nn.Dense(6, name="fc")(x.reshape(x.shape[0], -1)))
    emb = nn.BatchNorm(use_running_average=not train, name="bn")(emb)
    return nn.Dense(3, name="head")(emb), {"embedding": emb}


class NoEmbedding(nn.Module):
  @nn.compact
  def __call__(self, x, *, train: bool):
    return x, {"features": x}


def test_shapes_range_and_formula():
  model = HashNetwork(backbone=TinyBackbone(), num_bits=8)
  x = jax.random.normal(jax.random.key(0), (4, 2, 2, 1))
  variables = model.init(jax.random.key(1), x, train=False)
  h, inter = model.apply(variables, x, train=False)
  assert h.shape == (4, 8) and h.dtype == jnp.float32
  assert np.all(np.abs(np.asarray(h)) < 1)
  p = variables["params"]["hash"]
  expect = np.tanh(np.asarray(inter["embedding"]) @ np.asarray(p["kernel"]) + np.asarray(p["bias"]))
  np.testing.assert_allclose(h, expect, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(inter["hash_logits"], np.arctanh(np.asarray(h)), rtol=1e-4, atol=1e-5)
  assert float(np.std(np.asarray(p["kernel"]))) < 0.05  # N(0, 0.01) init
  # Train mode updates BatchNorm stats of the backbone.
  _, new_state = model.apply(variables, x, train=True, mutable=["batch_stats"])
  assert "batch_stats" in new_state


def test_ema_copy_gives_identical_outputs_at_start():
  model = HashNetwork(backbone=TinyBackbone(), num_bits=4)
  x = jnp.ones((2, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  ema = ema_update(variables["params"], variables["params"], momentum=0.9)
  h, _ = model.apply(variables, x, train=False)
  h_ema, _ = model.apply({**variables, "params": ema}, x, train=False)
  np.testing.assert_allclose(h, h_ema, rtol=1e-6)


def test_backbone_without_embedding_raises():
  model = HashNetwork(backbone=NoEmbedding(), num_bits=4)
  with pytest.raises(ValueError, match="embedding"):
    model.init(jax.random.key(0), jnp.ones((2, 3)), train=False)


def test_binarize():
  np.testing.assert_array_equal(binarize(jnp.array([[-0.2, 0.0, 0.3]])), [[-1, 1, 1]])


def test_scale_for_hashnet_continuation():
  model = HashNetwork(backbone=TinyBackbone(), num_bits=4)
  x = jax.random.normal(jax.random.key(3), (3, 5))
  variables = model.init(jax.random.key(0), x, train=False)
  h2, inter = model.apply(variables, x, train=False, scale=2.0)
  np.testing.assert_allclose(h2, np.tanh(2.0 * np.asarray(inter["hash_logits"])), rtol=1e-5)
