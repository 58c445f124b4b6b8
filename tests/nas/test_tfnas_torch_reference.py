"""The PyTorch reference of benchmarks/bench_tfnas.py builds the same supernet as ours (parameter
counts, outputs with copied weights, latency expectation) and its search step updates both
parameter groups. Skipped where torch is not installed."""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.nas._fixtures import TINY
from vision_jax.nas import expected_latency, init_arch
from vision_jax.nas import supernet as sn

torch = pytest.importorskip("torch")

_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "_tfnas_torch.py")


def _reference():
  spec = importlib.util.spec_from_file_location("_tfnas_torch", _PATH)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def _flax_supernet(space, x, rng):
  """Our supernet's parameter tree (shapes from ``init``), filled with NumPy normals (an eager
  flax ``init`` compiles one initializer per shape: a minute here)."""
  arch = init_arch(space)
  arch["beta"]["s0"] = jnp.asarray([0.4, -0.3])
  masks = sn.prefix_masks(space, sn.nominal_widths(space))
  w = jnp.full((space.num_blocks, sn.NUM_OPS), 1.0 / sn.NUM_OPS)
  shapes = jax.eval_shape(
    lambda: sn.Supernet(space).init(
      jax.random.PRNGKey(0), x, masks, sn.depth_weights(arch, space), op_weights=w
    )
  )["params"]
  params = jax.tree.map(lambda s: jnp.asarray(0.5 * rng.normal(size=s.shape), jnp.float32), shapes)
  return params, masks, arch


def test_torch_supernet_is_the_same_net():
  ref = _reference()
  rng = np.random.default_rng(0)
  x = rng.normal(size=(4, TINY.image_size, TINY.image_size, TINY.in_channels)).astype(np.float32)
  params, masks, arch = _flax_supernet(TINY, jnp.asarray(x), rng)
  tnet = ref.Supernet(TINY)
  n_w, n_a = ref.count_parameters(tnet)
  assert n_w == sum(int(np.size(v)) for v in jax.tree.leaves(params))
  assert n_a == sum(int(np.size(v)) for v in jax.tree.leaves(arch))
  ref.load_flax_params(tnet, params, masks, arch)
  dw = sn.depth_weights(arch, TINY)
  # one compiled program for both mixtures (eager dispatch compiles every primitive instead)
  apply = jax.jit(
    lambda op_w: sn.Supernet(TINY).apply(
      {"params": params}, jnp.asarray(x), masks, dw, op_weights=op_w
    )
  )
  xt = torch.as_tensor(x).permute(0, 3, 1, 2)
  idx = np.asarray([3, 6, 5])
  # single path: a one-hot mixture is the same function (and avoids compiling lax.switch)
  one_hot = jax.nn.one_hot(jnp.asarray(idx), sn.NUM_OPS)
  want = apply(one_hot)
  with torch.no_grad():
    got = tnet(xt, op_index=idx.tolist())
  np.testing.assert_allclose(got.numpy(), np.asarray(want), rtol=2e-4, atol=2e-4)
  op_w = jax.nn.softmax(jnp.asarray(rng.normal(size=(TINY.num_blocks, 8)), jnp.float32), -1)
  want = apply(op_w)
  with torch.no_grad():
    got = tnet(xt, op_weights=torch.as_tensor(np.array(op_w)))
  np.testing.assert_allclose(got.numpy(), np.asarray(want), rtol=2e-4, atol=2e-4)
  lat = rng.uniform(0.1, 1.0, size=(TINY.num_blocks, 8)).astype(np.float32)
  want = float(expected_latency(TINY, op_w, dw, jnp.asarray(lat), 0.5))
  with torch.no_grad():
    got = float(tnet.expected_latency(torch.as_tensor(np.array(op_w)), torch.as_tensor(lat), 0.5))
  assert got == pytest.approx(want, rel=1e-5)


def test_torch_bi_sample_second_path_differs():
  ref = _reference()
  alpha = torch.log_softmax(torch.randn(5, 8, generator=torch.Generator().manual_seed(0)), -1)
  gen = torch.Generator().manual_seed(1)
  pairs = [ref.bi_sample(alpha, gen) for _ in range(300)]
  first = np.asarray([p[0] for p in pairs])
  second = np.asarray([p[1] for p in pairs])
  assert np.all(first != second) and first.min() >= 0 and second.max() <= 7
  assert len(np.unique(second)) == 8


@pytest.fixture
def one_torch_thread():
  n = torch.get_num_threads()
  torch.set_num_threads(1)  # an OpenMP pool on a loaded shared CPU stalls for seconds
  yield
  torch.set_num_threads(n)


def test_torch_search_step_updates_weights_and_arch(one_torch_thread):
  pytest.importorskip("sympy", reason="torch.optim imports torch._dynamo, which needs sympy")
  ref = _reference()
  torch.manual_seed(0)
  tnet = ref.Supernet(TINY)
  lat = np.full((TINY.num_blocks, 8), 0.01, np.float32)
  lat[:, 7] = 0.2  # a dominant latency loss pulls log alpha away from the slowest op
  step = ref.SearchStep(tnet, lat, base_ms=1.0, target_ms=1.0, lat_weight=50.0)
  g = torch.Generator().manual_seed(0)
  shape = (8, TINY.image_size, TINY.image_size, TINY.in_channels)
  one = lambda: {  # noqa: E731
    "image": torch.randint(0, 256, shape, generator=g, dtype=torch.uint8),
    "label": torch.randint(0, TINY.num_classes, (8,), generator=g),
  }
  batch = {"train": one(), "val": one()}
  w0 = [p.detach().clone() for p in tnet.weight_parameters()]
  a0 = [p.detach().clone() for p in tnet.arch_parameters()]
  out = step(batch)
  assert np.isfinite(float(out["loss_w"])) and np.isfinite(float(out["loss_a"]))
  changed_w = [not torch.equal(a, b) for a, b in zip(w0, tnet.weight_parameters(), strict=True)]
  # stem, head and the two sampled ops of each block moved; never-sampled ops have no gradient yet
  assert any(changed_w) and not all(changed_w)
  assert not torch.equal(a0[0], tnet.log_alpha) and not torch.equal(a0[1], tnet.beta[0])
  # re-projected: log alpha is a log-distribution again
  np.testing.assert_allclose(tnet.log_alpha.detach().exp().sum(-1).numpy(), 1.0, rtol=1e-5)
  # LAT > T: the slow op's log-probability fell in every block
  assert torch.all(tnet.log_alpha[:, 7] < a0[0][:, 7])
