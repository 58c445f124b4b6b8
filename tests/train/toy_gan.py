"""A toy GAN (2-D ring of 8 Gaussians, MLP G and D) as a two-update Task; also run as a script.

Shared by the multi-update tests: the task, its data, a mode-coverage measure and a config with
separate Adam(b1=0.5) sections for D and G.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vision_jax.train import Task, Update

NUM_MODES, RADIUS, STD, Z_DIM = 8, 2.0, 0.05, 2
MODES = RADIUS * np.stack(
  [
    np.cos(2 * np.pi * np.arange(NUM_MODES) / NUM_MODES),
    np.sin(2 * np.pi * np.arange(NUM_MODES) / NUM_MODES),
  ],
  -1,
).astype(np.float32)


class MLP(nn.Module):
  out: int
  width: int = 64

  @nn.compact
  def __call__(self, x):
    for _ in range(2):
      x = nn.relu(nn.Dense(self.width)(x))
    return nn.Dense(self.out)(x)


G, D = MLP(2), MLP(1)


class RingData:
  """``data[t]``: ``{"x": [B, 2]}`` samples of the ring mixture; a pure function of (seed, t)."""

  def __init__(self, batch_size=64, seed=0):
    self.batch_size, self.seed = batch_size, seed

  def __getitem__(self, t):
    rng = np.random.default_rng([self.seed, t])
    k = rng.integers(0, NUM_MODES, self.batch_size)
    x = MODES[k] + STD * rng.standard_normal((self.batch_size, 2)).astype(np.float32)
    return {"x": x.astype(np.float32)}


def d_loss(params, x, z):
  """Discriminator: ``softplus(-D(x)) + softplus(D(G(z)))`` (G is a constant here)."""
  fake = G.apply({"params": params["gen"]}, z)
  real_logit = D.apply({"params": params["disc"]}, x)
  fake_logit = D.apply({"params": params["disc"]}, fake)
  return jnp.mean(jax.nn.softplus(-real_logit)) + jnp.mean(jax.nn.softplus(fake_logit))


def g_loss(params, z):
  """Non-saturating generator loss ``softplus(-D(G(z)))``."""
  fake = G.apply({"params": params["gen"]}, z)
  return jnp.mean(jax.nn.softplus(-D.apply({"params": params["disc"]}, fake)))


def noise(rng, n):
  return jax.random.normal(rng, (n, Z_DIM))


def gan_task(g_every: int = 1) -> Task:
  def init(rng, batch):
    rg, rd = jax.random.split(rng)
    return (
      {
        "gen": G.init(rg, jnp.zeros((1, Z_DIM)))["params"],
        "disc": D.init(rd, jnp.zeros((1, 2)))["params"],
      },
      {},
      {},
    )

  def d_fn(params, model_state, extra, batch, rng, step):
    loss = d_loss(params, batch["x"], noise(rng, batch["x"].shape[0]))
    return loss, {"metrics": {}}

  def g_fn(params, model_state, extra, batch, rng, step):
    return g_loss(params, noise(rng, batch["x"].shape[0])), {"metrics": {}}

  return Task(
    init=init,
    updates=(
      Update("d", d_fn, params="disc", optim="optim_d"),
      Update("g", g_fn, params="gen", optim="optim_g", every=g_every),
    ),
  )


def gan_config(num_steps=2000, **train):
  cfg = ml_collections.ConfigDict()
  cfg.seed = 0
  cfg.train = ml_collections.ConfigDict(
    dict(
      num_steps=num_steps,
      log_every=100,
      eval_every=0,
      checkpoint_every=0,
      keep_checkpoints=10,
      prefetch=2,
    )
  )
  cfg.train.update(train)
  adam = dict(name="adam", lr=2e-3, b1=0.5, b2=0.999, schedule="constant")
  cfg.optim_d = ml_collections.ConfigDict(adam)
  cfg.optim_g = ml_collections.ConfigDict(adam)
  return cfg


def modes_covered(gen_params, n=2000, seed=123, min_share=0.02) -> tuple[int, float]:
  """``(modes with >= min_share of the samples within 3 std, share of such high-quality samples)``."""
  z = noise(jax.random.PRNGKey(seed), n)
  x = np.asarray(G.apply({"params": gen_params}, z))
  d = np.linalg.norm(x[:, None, :] - MODES[None], axis=-1)
  near = d.min(1) < 3 * STD
  counts = np.bincount(d.argmin(1)[near], minlength=NUM_MODES)
  return int(np.sum(counts >= min_share * n)), float(near.mean())


def main():
  from tests.train.toy import run_script

  run_script(
    lambda: gan_task(g_every=2),
    RingData,
    lambda steps: gan_config(steps, log_every=1, checkpoint_every=2),
  )


if __name__ == "__main__":
  main()
