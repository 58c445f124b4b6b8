"""Full SGD train step (forward + backward + update), stock XLA conv vs the per-tap einsum conv.

Usage (from the repo root):
  .venv/bin/python benchmarks/bench_train_step.py [--steps 5] [--models resnet18_cifar,convnet]
      [--impls xla,einsum,auto]

For each model it builds one jitted step ``(params, batch_stats, x, y) -> (params, batch_stats,
loss)`` with softmax cross-entropy and plain SGD, warms it up (compile + 2 steps), then times
``--steps`` steps per implementation, interleaved, with ``block_until_ready``. Prints the median
wall time and process CPU time per step for each ``conv_impl`` and the ratios stock / ours (> 1
means ours is faster). On a shared machine, CPU time is the steadier of the two.

Settings: ResNet-18 (CIFAR stem, 10 classes) at batch 64 on 32x32x3; ConvNet (default widths)
at batch 128 on 28x28x1.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vision_jax.models import get_model
from vision_jax.utils import package_versions

SETTINGS = {
  "resnet18_cifar": dict(
    name="resnet18", kwargs=dict(num_classes=10, stem="cifar"), batch=64, shape=(32, 32, 3)
  ),
  "convnet": dict(name="convnet", kwargs=dict(num_classes=10), batch=128, shape=(28, 28, 1)),
  # Not run by default: the half-width ConvNet, for choosing the Fashion-MNIST default.
  "convnet_half": dict(
    name="convnet",
    kwargs=dict(num_classes=10, widths=(16, 16, 32, 32)),
    batch=128,
    shape=(28, 28, 1),
  ),
}
DEFAULT_SETTINGS = ("resnet18_cifar", "convnet")


def make_step(model, lr=0.1):
  """One jitted SGD step; donates params and batch stats like the real train loop."""

  def loss_fn(params, batch_stats, x, y):
    (logits, _), updates = model.apply(
      {"params": params, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"]
    )
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, updates["batch_stats"]

  @jax.jit
  def step(params, batch_stats, x, y):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      params, batch_stats, x, y
    )
    params = jax.tree.map(lambda p, g: p - lr * g, params, grads)
    return params, batch_stats, loss

  return step


def build(setting, impl):
  """Compiles one step for ``setting`` / ``impl``; returns (step, state, compile seconds)."""
  cfg = SETTINGS[setting]
  model = get_model(cfg["name"], conv_impl=impl, **cfg["kwargs"])
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((cfg["batch"], *cfg["shape"]), dtype=np.float32))
  y = jnp.asarray(rng.integers(0, 10, cfg["batch"]))
  variables = jax.jit(lambda: model.init(jax.random.key(0), x, train=False))()
  state = [variables["params"], variables["batch_stats"]]
  step = make_step(model)
  t0 = time.perf_counter()
  jax.block_until_ready(step(*state, x, y))
  compile_s = time.perf_counter() - t0
  for _ in range(2):  # warm-up
    params, bs, loss = step(*state, x, y)
    state = [params, bs]
  jax.block_until_ready(loss)
  return step, state, (x, y), compile_s


def time_one(step, state, batch):
  """One timed step: (wall seconds, process CPU seconds, new state, loss)."""
  t0, c0 = time.perf_counter(), time.process_time()
  params, bs, loss = step(*state, *batch)
  jax.block_until_ready(loss)
  return time.perf_counter() - t0, time.process_time() - c0, [params, bs], float(loss)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--models", default=",".join(DEFAULT_SETTINGS), help=f"of {list(SETTINGS)}")
  parser.add_argument("--impls", default="xla,einsum,auto")
  args = parser.parse_args()
  dev = jax.devices()[0]
  print(
    f"device: {dev.platform} / {dev.device_kind} x{jax.device_count()}  host: "
    f"{platform.processor() or platform.machine()}"
  )
  vers = package_versions()
  print("versions:", {k: vers[k] for k in ("jax", "jaxlib", "flax", "optax") if k in vers})
  impls = args.impls.split(",")
  print(
    f"{'setting':16s} {'conv_impl':9s} {'step_wall_s':>11s} {'step_cpu_s':>10s} "
    f"{'compile_s':>9s} {'loss':>8s}"
  )
  for setting in args.models.split(","):
    built = {impl: build(setting, impl) for impl in impls}
    wall = {impl: [] for impl in impls}
    cpu = {impl: [] for impl in impls}
    losses = {}
    # Interleave the implementations so that load from other processes hits all of them alike.
    for _ in range(args.steps):
      for impl in impls:
        step, state, batch, c = built[impl]
        w, p, state, losses[impl] = time_one(step, state, batch)
        built[impl] = (step, state, batch, c)
        wall[impl].append(w)
        cpu[impl].append(p)
    med_w = {k: statistics.median(v) for k, v in wall.items()}
    med_c = {k: statistics.median(v) for k, v in cpu.items()}
    for impl in impls:
      print(
        f"{setting:16s} {impl:9s} {med_w[impl]:11.3f} {med_c[impl]:10.3f} "
        f"{built[impl][3]:9.1f} {losses[impl]:8.4f}",
        flush=True,
      )
    if "xla" in impls:
      for impl in impls:
        if impl != "xla":
          print(
            f"{setting:16s} ratio xla/{impl}: wall {med_w['xla'] / med_w[impl]:.2f}x, "
            f"cpu {med_c['xla'] / med_c[impl]:.2f}x  (> 1: ours faster)"
          )


if __name__ == "__main__":
  main()
