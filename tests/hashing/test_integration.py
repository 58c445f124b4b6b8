"""End to end: HashNetwork + EMA + DMUH/CSQ/DPSH learn separable clusters; mAP via metrics."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vision_jax import hashing
from vision_jax.metrics.retrieval import retrieval_map
from vision_jax.train import ema_update


class MLP(nn.Module):
  @nn.compact
  def __call__(self, x, *, train: bool):
    del train
    emb = nn.tanh(nn.Dense(16)(x))
    return emb, {"embedding": emb}


def _data(rng, n, classes=4, dim=6):
  means = 1.5 * rng.normal(size=(classes, dim))
  y = rng.integers(0, classes, n)
  return (means[y] + rng.normal(size=(n, dim))).astype(np.float32), y


@pytest.mark.parametrize("method", ["dmuh", "csq", "dpsh"])
def test_training_learns_retrievable_codes(method):
  rng = np.random.default_rng(0)
  x, y = _data(rng, 160)
  bits = 8
  model = hashing.HashNetwork(
    backbone=MLP(), num_bits=bits, kernel_init=nn.initializers.normal(0.3)
  )
  params = model.init(jax.random.key(0), x[:2], train=True)["params"]
  ema = params
  init_params = params
  centers = jnp.asarray(hashing.csq_hash_centers(4, bits))
  opt = optax.adam(1e-2)
  opt_state = opt.init(params)

  def loss_fn(p, ema_p, xb, yb):
    h, _ = model.apply({"params": p}, xb, train=True)
    h_ema, _ = model.apply({"params": ema_p}, xb, train=True)
    if method == "dmuh":
      per = hashing.dmuh_loss(h, h_ema, targets=centers[yb], bit_weight=1.0, image_weight=1.0)
    elif method == "csq":
      per = hashing.csq_loss(h, centers[yb])
    else:
      per = hashing.dpsh_loss(h, yb)
    return per.mean()

  @jax.jit
  def step(p, ema_p, s, xb, yb):
    loss, g = jax.value_and_grad(loss_fn)(p, ema_p, xb, yb)
    upd, s = opt.update(g, s, p)
    p = optax.apply_updates(p, upd)
    return p, ema_update(ema_p, p, momentum=0.9), s, loss

  losses = []
  for i in range(60):
    sl = slice((i * 32) % 160, (i * 32) % 160 + 32)
    params, ema, opt_state, loss = step(params, ema, opt_state, x[sl], y[sl])
    losses.append(float(loss))
  assert np.all(np.isfinite(losses)) and np.mean(losses[-10:]) < np.mean(losses[:10])
  xq, yq = _data(np.random.default_rng(0), 160)  # same means (same seed), fresh noise below
  xq = xq + 0.1 * np.random.default_rng(1).normal(size=xq.shape).astype(np.float32)
  codes = lambda p, a: hashing.binarize(model.apply({"params": p}, a, train=False)[0])
  before = retrieval_map(codes(init_params, xq[:40]), codes(init_params, x), yq[:40], y)
  after = retrieval_map(codes(params, xq[:40]), codes(params, x), yq[:40], y)
  assert after > before + 0.1 and after > 0.8
