"""conv2d's custom backward equals stock autodiff and a float64 NumPy brute force."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from vision_jax.models import Conv, conv2d, resolve_conv_impl
from vision_jax.models.conv import AUTO_MIN_STRIDE


def _np_pads(in_hw, k, s, padding):
  if padding == "VALID":
    return [(0, 0), (0, 0)]
  pads = []
  for n in in_hw:
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    pads.append((total // 2, total - total // 2))
  return pads


def _np_conv_and_grads(x, w, s, padding, r):
  """Brute-force float64 conv, dL/dx and dL/dw for L = sum(conv(x, w) * r)."""
  x, w, r = (a.astype(np.float64) for a in (x, w, r))
  kh, kw, _, _ = w.shape
  (plh, phh), (plw, phw) = _np_pads(x.shape[1:3], kh, s, padding)
  xp = np.pad(x, ((0, 0), (plh, phh), (plw, phw), (0, 0)))
  oh = (xp.shape[1] - kh) // s + 1
  ow = (xp.shape[2] - kw) // s + 1
  y = np.zeros((x.shape[0], oh, ow, w.shape[3]))
  dxp = np.zeros_like(xp)
  dw = np.zeros_like(w)
  for p in range(oh):
    for q in range(ow):
      patch = xp[:, p * s : p * s + kh, q * s : q * s + kw, :]  # [B, kh, kw, C]
      y[:, p, q, :] = np.einsum("bijc,ijco->bo", patch, w)
      dw += np.einsum("bijc,bo->ijco", patch, r[:, p, q, :])
      dxp[:, p * s : p * s + kh, q * s : q * s + kw, :] += np.einsum(
        "ijco,bo->bijc", w, r[:, p, q, :]
      )
  dx = dxp[:, plh : plh + x.shape[1], plw : plw + x.shape[2], :]
  return y, dx, dw


CASES = list(itertools.product([1, 2], ["SAME", "VALID"], [1, 3, 5, 7]))


@pytest.mark.parametrize("stride,padding,k", CASES)
def test_conv2d_einsum_matches_stock_and_numpy(stride, padding, k):
  rng = np.random.default_rng(k * 10 + stride)
  h = 9 if stride == 2 else 8  # odd size with stride 2 exercises asymmetric SAME padding
  x = rng.standard_normal((2, h, h + 1, 3)).astype(np.float32)
  w = rng.standard_normal((k, k, 3, 4)).astype(np.float32)
  y_stock = lax.conv_general_dilated(
    x, w, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  r = rng.standard_normal(y_stock.shape).astype(np.float32)
  y_np, dx_np, dw_np = _np_conv_and_grads(x, w, stride, padding, r)

  def grads(impl, dx_impl, x, w):
    f = lambda a, b: jnp.sum(
      conv2d(a, b, (stride, stride), padding, impl=impl, dx_impl=dx_impl) * r
    )
    return jax.grad(f, argnums=(0, 1))(x, w)

  @jax.jit  # one compile for all variants keeps this parametrised test fast
  def everything(x, w):
    y = conv2d(x, w, (stride, stride), padding, impl="einsum")
    g = lambda impl, dx_impl: grads(impl, dx_impl, x, w)
    return y, g("xla", "xla"), g("einsum", "xla"), g("einsum", "einsum")

  y_ours, g_stock, *g_ours = everything(x, w)
  np.testing.assert_array_equal(np.asarray(y_ours), np.asarray(y_stock))
  np.testing.assert_allclose(y_stock, y_np, rtol=1e-5, atol=1e-5)
  for g in g_ours:  # dx_impl = "xla", then "einsum"
    for ours, stock, ref in zip(g, g_stock, (dx_np, dw_np)):
      assert ours.shape == ref.shape and ours.dtype == jnp.float32
      np.testing.assert_allclose(ours, stock, rtol=1e-5, atol=1e-5)
      np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_conv2d_explicit_padding_and_check_grads():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, 7, 6, 3)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((3, 3, 3, 2)), jnp.float32)
  pads = ((2, 0), (1, 3))
  f = lambda a, b: conv2d(a, b, (2, 1), pads, impl="einsum", dx_impl="einsum")
  g = lambda a, b: conv2d(a, b, (2, 1), pads, impl="xla")
  np.testing.assert_array_equal(f(x, w), g(x, w))
  ct = jnp.asarray(rng.standard_normal(f(x, w).shape), jnp.float32)
  ours = jax.vjp(f, x, w)[1](ct)
  stock = jax.vjp(g, x, w)[1](ct)
  for a, b in zip(ours, stock):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_conv2d_bfloat16_grads_close_to_float32():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((2, 8, 8, 16)).astype(np.float32)
  w = (0.1 * rng.standard_normal((3, 3, 16, 8))).astype(np.float32)

  def grads(dtype, impl):
    f = lambda a, b: jnp.sum(
      conv2d(a.astype(dtype), b.astype(dtype), impl=impl).astype(jnp.float32)
    )
    return jax.grad(f, argnums=1)(jnp.asarray(x), jnp.asarray(w))

  ref = grads(jnp.float32, "xla")
  ours = grads(jnp.bfloat16, "einsum")
  assert ours.dtype == jnp.float32  # cotangent of the f32 param
  np.testing.assert_allclose(ours, ref, rtol=3e-2, atol=3e-2 * float(jnp.abs(ref).max()))


def test_resolve_conv_impl():
  assert resolve_conv_impl("xla", strides=(2, 2)) == "xla"
  assert resolve_conv_impl("einsum", strides=(1, 1)) == "einsum"
  assert resolve_conv_impl("auto", strides=(1, 1), backend="cpu") == "xla"
  assert resolve_conv_impl("auto", strides=(AUTO_MIN_STRIDE, 1), backend="cpu") == "einsum"
  assert resolve_conv_impl("auto", strides=(2, 2), backend="gpu") == "xla"
  assert resolve_conv_impl("auto", strides=(2, 2), backend="tpu") == "xla"
  with pytest.raises(ValueError, match="conv_impl must be one of"):
    resolve_conv_impl("fast", strides=(1, 1))


def test_conv2d_errors():
  x = jnp.zeros((1, 4, 4, 3))
  with pytest.raises(ValueError, match="channels"):
    conv2d(x, jnp.zeros((3, 3, 2, 4)))
  with pytest.raises(ValueError, match="padding"):
    conv2d(x, jnp.zeros((3, 3, 3, 4)), padding="FULL")
  with pytest.raises(ValueError, match="dx_impl"):
    conv2d(x, jnp.zeros((3, 3, 3, 4)), impl="einsum", dx_impl="fft")


@pytest.mark.parametrize("impl", ["xla", "einsum", "auto"])
def test_conv_module_matches_nn_conv(impl):
  import flax.linen as nn

  x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 6, 6, 3)), jnp.float32)
  ours = Conv(5, (3, 3), (2, 2), conv_impl=impl)
  ref = nn.Conv(5, (3, 3), (2, 2))
  v = ours.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, v) == jax.tree.map(jnp.shape, ref.init(jax.random.key(0), x))
  np.testing.assert_allclose(ours.apply(v, x), ref.apply(v, x), rtol=1e-5, atol=1e-5)
  gy = jax.grad(lambda p: jnp.sum(ours.apply(p, x) ** 2))(v)
  gr = jax.grad(lambda p: jnp.sum(ref.apply(p, x) ** 2))(v)
  for a, b in zip(jax.tree.leaves(gy), jax.tree.leaves(gr)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_default_kernel_init_draws_flax_lecun_normal_values():
  import flax.linen as nn

  from vision_jax.models.conv import lecun_normal_hwio

  key = jax.random.key(3)
  for shape in [(3, 3, 4, 8), (5, 5, 1, 96), (1, 1, 16, 2)]:
    want = nn.initializers.lecun_normal()(key, shape)
    got = lecun_normal_hwio(key, shape)
    assert got.shape == shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)  # same bits, same scale
  x = jnp.zeros((1, 6, 6, 3))
  ours, ref = Conv(5, (3, 3)).init(key, x), nn.Conv(5, (3, 3)).init(key, x)
  np.testing.assert_allclose(ours["params"]["kernel"], ref["params"]["kernel"], rtol=1e-6)


def test_einsum_backward_under_batch_sharding_matches_single_device(num_devices):
  mesh = jax.make_mesh((num_devices,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  rng = np.random.default_rng(6)
  x = rng.standard_normal((num_devices, 6, 6, 4)).astype(np.float32)
  w = rng.standard_normal((3, 3, 4, 5)).astype(np.float32)
  f = jax.jit(
    jax.grad(
      lambda a, b: jnp.sum(jnp.tanh(conv2d(a, b, (2, 2), "SAME", impl="einsum"))), argnums=(0, 1)
    )
  )
  ref = f(x, w)
  got = f(jax.device_put(x, sharding), w)
  assert not got[0].sharding.is_fully_replicated  # dx stays batch-sharded
  for a, b in zip(got, ref):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
