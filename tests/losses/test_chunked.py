"""Class-chunked margin losses: equal to the unchunked path, never holding [B, C]."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax import losses as L
from vision_jax.losses import _chunked

C = 37  # prime: no chunk size below C divides it

_HEADS = {
  "softmax": lambda x, w, y, **kw: L.softmax_loss(x, w, y, **kw),
  "normface": lambda x, w, y, **kw: L.normface_loss(x, w, y, scale=8.0, **kw),
  "a_softmax": lambda x, w, y, **kw: L.a_softmax_loss(x, w, y, margin=4, lambda_=2.0, **kw),
  "am_softmax": lambda x, w, y, **kw: L.am_softmax_loss(x, w, y, scale=30.0, margin=0.35, **kw),
  "arcface": lambda x, w, y, **kw: L.arcface_loss(x, w, y, scale=16.0, margin=0.5, **kw),
  "arcface_easy": lambda x, w, y, **kw: L.arcface_loss(x, w, y, scale=16.0, easy_margin=True, **kw),
  "arcface_st": lambda x, w, y, **kw: L.arcface_loss(
    x, w, y, scale=16.0, gradient="straight_through", **kw
  ),
}


def _data(b=7, c=C, d=5, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(b, d)).astype(np.float32) * 2
  w = rng.normal(size=(c, d)).astype(np.float32)
  y = rng.integers(0, c, size=b).astype(np.int32)
  x[0] = -w[y[0]]  # theta = pi: the ArcFace fallback branch
  x[1] = 0.0  # zero embedding: clamped norm
  return x, w, y


def _assert_close_tree(got, want, rtol=1e-5, atol=1e-5):
  """Equal to float32 rounding. A gradient entry is a sum of per-class terms with cancellation,
  so its rounding error follows the size of its row, not of the entry itself: ``atol`` is
  scaled per row by ``max(1, max |row|)`` (summation order differs between the chunked and
  unchunked paths and between CPUs)."""
  for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    g, r = np.asarray(g), np.asarray(r)
    scale = np.maximum(1.0, np.abs(r).max(axis=-1, keepdims=True)) if r.ndim else 1.0
    np.testing.assert_array_less(np.abs(g - r), atol * scale + rtol * np.abs(r) + 1e-30)


def _value_and_grads(fn, args, argnums, **kw):
  weights = jnp.arange(1.0, args[0].shape[0] + 1)  # a non-uniform upstream cotangent

  def total(*a):
    return jnp.sum(fn(*a, **kw) * weights)

  return jax.jit(jax.value_and_grad(total, argnums))(*args)


@pytest.mark.parametrize("name", list(_HEADS))
def test_chunked_equals_unchunked_value_and_grads(name):
  x, w, y = _data()
  fn = _HEADS[name]
  if name == "softmax":
    bias = np.random.default_rng(1).normal(size=C).astype(np.float32)

    def head(x, w, b, **kw):
      return fn(x, w, y, bias=b, **kw)

    args, argnums = (x, w, bias), (0, 1, 2)
  else:

    def head(x, w, **kw):
      return fn(x, w, y, **kw)

    args, argnums = (x, w), (0, 1)
  want = _value_and_grads(head, args, argnums, chunk_size=C)  # unchunked
  got = _value_and_grads(head, args, argnums, chunk_size=8)  # 5 blocks, the last overlapping
  _assert_close_tree(got, want)
  # Per-example values too (not only their weighted sum).
  np.testing.assert_allclose(head(*args, chunk_size=8), head(*args, chunk_size=C), rtol=1e-5)


@pytest.mark.parametrize("chunk", [1, 2, 36])
def test_block_sizes_from_one_to_c_minus_one(chunk):
  x, w, y = _data(seed=2)
  fn = _HEADS["am_softmax"]

  def head(x, w, **kw):
    return fn(x, w, y, **kw)

  _assert_close_tree(
    _value_and_grads(head, (x, w), (0, 1), chunk_size=chunk),
    _value_and_grads(head, (x, w), (0, 1), chunk_size=C),
  )


def test_chunked_matches_numpy_am_softmax():
  x, w, y = _data(seed=3)
  x[1] = 1.0
  s, m = 30.0, 0.35
  xn = x / np.linalg.norm(x, axis=1, keepdims=True)
  wn = w / np.linalg.norm(w, axis=1, keepdims=True)
  logits = s * (xn @ wn.T).astype(np.float64)
  logits[np.arange(len(y)), y] -= s * m
  mx = logits.max(axis=1)
  ref = np.log(np.exp(logits - mx[:, None]).sum(axis=1)) + mx - logits[np.arange(len(y)), y]
  got = L.am_softmax_loss(x, w, y, scale=s, margin=m, chunk_size=5)
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", ["softmax", "am_softmax", "a_softmax", "arcface"])
def test_chunked_where_mask(name):
  x, w, y = _data(seed=4)
  where = np.array([True, True, False, True, False, True, True])
  x_pad, y_pad = x.copy(), y.copy()
  x_pad[~where] = np.nan  # padding garbage must not leak
  y_pad[~where] = -1
  fn = _HEADS[name]

  def head(x, w, **kw):
    return fn(x, w, y_pad, where=where, **kw)

  got = _value_and_grads(head, (x_pad, w), (0, 1), chunk_size=6)
  want = _value_and_grads(head, (x_pad, w), (0, 1), chunk_size=C)
  _assert_close_tree(got, want)
  assert np.all(np.isfinite(got[1][0])) and np.all(got[1][0][~where] == 0)
  out = head(x_pad, w, chunk_size=6)
  np.testing.assert_array_equal(np.asarray(out)[~where], 0.0)
  np.testing.assert_allclose(np.asarray(out)[where], fn(x[where], w, y[where]), rtol=1e-5)


@pytest.mark.parametrize("bad_label", [-1, C, 10 * C])
def test_chunked_out_of_range_label_is_nan_row_under_jit(bad_label):
  x, w, y = _data(seed=5)
  y_bad = y.copy()
  y_bad[3] = bad_label
  fn = _HEADS["arcface"]
  out = jax.jit(lambda x, w, y: fn(x, w, y, chunk_size=8))(x, w, y_bad)
  assert np.isnan(out[3]) and np.all(np.isfinite(np.delete(np.asarray(out), 3)))
  ok = np.arange(len(y)) != 3
  np.testing.assert_allclose(np.asarray(out)[ok], fn(x[ok], w, y[ok], chunk_size=8), rtol=1e-5)
  grad = jax.grad(lambda x, w, y: jnp.nansum(fn(x, w, y, chunk_size=8)), argnums=(0, 1))
  gx, gw = jax.jit(grad)(x, w, y_bad)
  gx_ref, gw_ref = jax.grad(lambda x, w: jnp.sum(fn(x, w, y_bad, where=ok)), argnums=(0, 1))(x, w)
  np.testing.assert_allclose(gx, gx_ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(gw, gw_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
  "fn",
  [L.ir_am_softmax_loss, L.ir_arcface_loss, L.ir_a_softmax_loss],
  ids=["ir_am", "ir_arcface", "ir_a_softmax"],
)
def test_chunked_ir_losses(fn):
  x, c, y = _data(seed=6)
  x[0] = 1.0  # not at theta = pi, where the ArcFace derivative amplifies rounding ~1,600x
  got = jax.value_and_grad(lambda x: jnp.sum(fn(x, c, y, chunk_size=8)))(x)
  want = jax.value_and_grad(lambda x: jnp.sum(fn(x, c, y, chunk_size=C)))(x)
  _assert_close_tree(got, want)
  # No gradient flows into the centres.
  gc = jax.grad(lambda c: jnp.sum(fn(x, c, y, chunk_size=8)))(c)
  np.testing.assert_array_equal(gc, 0.0)


def _count_matmuls(fn, *args):
  from jax.extend.core import jaxprs_in_params

  count = 0

  def walk(jaxpr):
    nonlocal count
    for eqn in jaxpr.eqns:
      count += eqn.primitive.name == "dot_general"
      for sub in jaxprs_in_params(eqn.params):
        walk(sub)

  walk(jax.make_jaxpr(fn)(*args).jaxpr)
  return count


def test_chunked_backward_matmuls_and_no_dw_for_stop_gradient_weights():
  """Forward: one matmul per block; backward: recompute, dX, dW; IR (constant weights): no dW."""
  x, w, y = _data()
  loss = _HEADS["am_softmax"]
  grad_xw = jax.grad(lambda x, w: jnp.sum(loss(x, w, y, chunk_size=8)), (0, 1))
  assert _count_matmuls(grad_xw, x, w) == 4
  grad_ir = jax.grad(lambda x: jnp.sum(L.ir_am_softmax_loss(x, w, y, chunk_size=8)))
  assert _count_matmuls(grad_ir, x) == 3


def test_auto_chunk_size_rule_and_validation():
  assert _chunked.auto_chunk_size(512, 1_000_003) == 8192  # prime C: the target size
  assert _chunked.auto_chunk_size(512, 1_000_000) == 8000  # largest 8k divisor in [4096, 8192]
  assert _chunked.auto_chunk_size(512, 2 * 8192) is None  # small head: unchunked
  assert _chunked.auto_chunk_size(100_000, 10**6 + 3) == 512  # floor of the rule
  assert _chunked.resolve_chunk_size(50, 8, 40) is None  # >= C: unchunked
  assert _chunked.resolve_chunk_size(7, 8, 40) == 7
  x, w, y = _data()
  with pytest.raises(ValueError, match=r"chunk_size=0"):
    L.am_softmax_loss(x, w, y, chunk_size=0)
  with pytest.raises(TypeError, match=r"chunk_size=2.5"):
    L.arcface_loss(x, w, y, chunk_size=2.5)


def test_large_head_is_chunked_by_default_and_holds_no_logits():
  """Compiled only: XLA's temporaries of a default step are far below one [B, C] array."""
  b, c, d = 8, 4_000_000, 4  # auto chunk 524,288 at B = 8: 8 blocks
  x = jax.ShapeDtypeStruct((b, d), jnp.float32)
  w = jax.ShapeDtypeStruct((c, d), jnp.float32)
  y = jax.ShapeDtypeStruct((b,), jnp.int32)

  def temp_bytes(**kw):
    step = jax.jit(jax.value_and_grad(lambda x, w, y: jnp.mean(L.am_softmax_loss(x, w, y, **kw))))
    return step.lower(x, w, y).compile().memory_analysis().temp_size_in_bytes

  logits_bytes = b * c * 4
  chunked, unchunked = temp_bytes(), temp_bytes(chunk_size=c)
  assert unchunked >= logits_bytes, unchunked
  assert chunked < logits_bytes / 2, (chunked, logits_bytes)


# ------------------------------------------------------------------------- class-parallel ----


def _mesh(shape):
  return jax.make_mesh(shape, ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)


@pytest.mark.parametrize(
  "loss,kw",
  [("am_softmax", {"scale": 30.0, "margin": 0.35}), ("arcface", {"scale": 16.0, "margin": 0.5})],
)
def test_sharded_chunked_equals_dense_unchunked(num_devices, loss, kw):
  mesh = _mesh((2, 4))
  x, w, y = _data(b=8, c=40, seed=7)  # 10 classes per shard, blocks of 3 (the last overlaps)
  where = np.array([1, 1, 1, 0, 1, 1, 1, 1], bool)
  w_sh = jax.device_put(w, L.class_sharding(mesh))
  dense = getattr(L, f"{loss}_loss")

  def sharded(x, w):
    return L.class_parallel_loss(x, w, y, mesh=mesh, loss=loss, where=where, chunk_size=3, **kw)

  got = jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(sharded(x, w)), (0, 1)))(x, w_sh)
  want = jax.value_and_grad(
    lambda x, w: jnp.sum(dense(x, w, y, where=where, chunk_size=40, **kw)), (0, 1)
  )(x, w)
  _assert_close_tree(got, want)
  np.testing.assert_allclose(
    jax.jit(sharded)(x, w_sh), dense(x, w, y, where=where, **kw), rtol=1e-5, atol=1e-5
  )


def test_sharded_chunked_softmax_bias_and_bad_label(num_devices):
  mesh = _mesh((1, 8))
  x, w, y = _data(b=8, c=40, seed=8)
  bias = np.random.default_rng(8).normal(size=40).astype(np.float32)
  y_bad = y.copy()
  y_bad[2] = 40

  def sharded(x, w, b, y):
    return L.class_parallel_loss(x, w, y, mesh=mesh, loss="softmax", bias=b, chunk_size=2)

  out = jax.jit(sharded)(x, w, bias, y_bad)
  assert np.isnan(out[2])
  ok = np.arange(8) != 2
  np.testing.assert_allclose(
    np.asarray(out)[ok], L.softmax_loss(x, w, y, bias=bias)[ok], rtol=1e-5, atol=1e-5
  )
  g = jax.jit(jax.grad(lambda x, w, b: jnp.sum(sharded(x, w, b, y)), (0, 1, 2)))(x, w, bias)
  g_ref = jax.grad(lambda x, w, b: jnp.sum(L.softmax_loss(x, w, y, bias=b)), (0, 1, 2))(x, w, bias)
  _assert_close_tree(g, g_ref)
