"""Margin-softmax losses vs hand computation and independent NumPy references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from vision_jax import losses as L

# ------------------------------------------------------------------ independent NumPy refs ----


def _np_normalize(a):
  return a / np.linalg.norm(a, axis=1, keepdims=True)


def _np_ce(logits, labels):
  logits = logits.astype(np.float64)
  m = logits.max(axis=1, keepdims=True)
  lse = np.log(np.exp(logits - m).sum(axis=1)) + m[:, 0]
  return lse - logits[np.arange(len(labels)), labels]


def _np_cos(x, w):
  return _np_normalize(x.astype(np.float64)) @ _np_normalize(w.astype(np.float64)).T


def np_arcface_logits(x, w, y, s, m, easy=False):
  cos = _np_cos(x, w)
  out = s * cos
  for i, yi in enumerate(y):
    theta = math.acos(min(1.0, max(-1.0, cos[i, yi])))
    if easy:
      t = math.cos(theta + m) if cos[i, yi] > 0 else cos[i, yi]
    else:
      t = math.cos(theta + m) if theta + m <= math.pi else cos[i, yi] - m * math.sin(m)
    out[i, yi] = s * t
  return out


def np_am_logits(x, w, y, s, m):
  out = s * _np_cos(x, w)
  out[np.arange(len(y)), y] -= s * m
  return out


def np_a_softmax_logits(x, w, y, m, lam):
  cos = _np_cos(x, w)
  xn = np.linalg.norm(x.astype(np.float64), axis=1)
  out = xn[:, None] * cos
  for i, yi in enumerate(y):
    theta = math.acos(min(1.0, max(-1.0, cos[i, yi])))
    k = min(int(math.floor(theta * m / math.pi)), m - 1)
    psi = (-1) ** k * math.cos(m * theta) - 2 * k
    out[i, yi] = xn[i] * (lam * cos[i, yi] + psi) / (1 + lam)
  return out


def _data(b=6, c=9, d=5, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(b, d)).astype(np.float32) * 3
  w = rng.normal(size=(c, d)).astype(np.float32)
  y = rng.integers(0, c, size=b).astype(np.int32)
  return x, w, y


# ---------------------------------------------------------------------- hand-computed ----


def test_hand_computed_two_classes():
  # x along class 0, W = identity: cos(theta_0) = 1, cos(theta_1) = 0.
  x = np.array([[2.0, 0.0]], np.float32)
  w = np.eye(2, dtype=np.float32)
  y = np.array([0])
  s, m = 10.0, 0.35
  np.testing.assert_allclose(
    L.am_softmax_loss(x, w, y, scale=s, margin=m),
    [math.log1p(math.exp(-s * (1 - m)))],
    rtol=1e-5,
    atol=1e-6,
  )
  # ArcFace at theta_y = 0: target s*cos(m).
  np.testing.assert_allclose(
    L.arcface_loss(x, w, y, scale=s, margin=0.5),
    [math.log1p(math.exp(-s * math.cos(0.5)))],
    rtol=1e-5,
    atol=1e-6,
  )
  # A-Softmax at theta_y = 0, m=4: psi(0) = 1, scale ||x|| = 2.
  np.testing.assert_allclose(L.a_softmax_loss(x, w, y), [math.log1p(math.exp(-2.0))], rtol=1e-5)
  # Plain softmax with bias: logits [2 + 0.5, 0 - 1].
  np.testing.assert_allclose(
    L.softmax_loss(x, w, y, bias=np.array([0.5, -1.0], np.float32)),
    [math.log1p(math.exp(-3.5))],
    rtol=1e-5,
    atol=1e-6,
  )
  # Label 1 at theta = pi/2 with ArcFace: theta + m <= pi, target s*cos(pi/2 + 0.5) = -s sin .5
  t = -s * math.sin(0.5)
  np.testing.assert_allclose(
    L.arcface_loss(x, w, np.array([1]), scale=s, margin=0.5),
    [math.log(math.exp(t) + math.exp(s)) - t],
    rtol=1e-5,
  )


# --------------------------------------------------------------------- NumPy references ----


@pytest.mark.parametrize("easy", [False, True])
def test_arcface_matches_numpy_including_fallback(easy):
  x, w, y = _data()
  # Force some targets past pi - m: put x_0 opposite to its class weight.
  x[0] = -w[y[0]] * 2.0
  x[1] = w[y[1]] * 0.5  # theta = 0
  s, m = 8.0, 0.5
  got = L.arcface_logits(x, w, y, scale=s, margin=m, easy_margin=easy)
  np.testing.assert_allclose(got, np_arcface_logits(x, w, y, s, m, easy), rtol=1e-5, atol=2e-5)
  ref = _np_ce(np_arcface_logits(x, w, y, s, m, easy), y)
  np.testing.assert_allclose(
    L.arcface_loss(x, w, y, scale=s, margin=m, easy_margin=easy), ref, rtol=1e-5, atol=1e-5
  )


def test_am_softmax_and_normface_match_numpy():
  x, w, y = _data(seed=1)
  np.testing.assert_allclose(
    L.am_softmax_loss(x, w, y, scale=30.0, margin=0.35),
    _np_ce(np_am_logits(x, w, y, 30.0, 0.35), y),
    rtol=1e-5,
    atol=1e-4,
  )
  np.testing.assert_allclose(
    L.normface_loss(x, w, y, scale=16.0), _np_ce(16.0 * _np_cos(x, w), y), rtol=1e-5, atol=1e-5
  )
  np.testing.assert_allclose(L.softmax_logits(x, w, y), x @ w.T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m,lam", [(4, 0.0), (4, 5.0), (2, 0.0), (3, 1.5)])
def test_a_softmax_matches_numpy(m, lam):
  x, w, y = _data(b=8, seed=2)
  # theta in each of the m pieces [k pi/m, (k+1) pi/m] for some rows.
  for i in range(m):
    ang = (i + 0.5) * math.pi / m
    wy = w[y[i]] / np.linalg.norm(w[y[i]])
    perp = np.zeros_like(wy)
    perp[np.argmin(np.abs(wy))] = 1.0
    perp = perp - perp @ wy * wy
    perp /= np.linalg.norm(perp)
    x[i] = 1.7 * (math.cos(ang) * wy + math.sin(ang) * perp)
  got = L.a_softmax_logits(x, w, y, margin=m, lambda_=lam)
  np.testing.assert_allclose(got, np_a_softmax_logits(x, w, y, m, lam), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(
    L.a_softmax_loss(x, w, y, margin=m, lambda_=lam),
    _np_ce(np_a_softmax_logits(x, w, y, m, lam), y),
    rtol=1e-4,
    atol=1e-4,
  )


def test_a_softmax_psi_is_monotone_decreasing():
  theta = np.linspace(0.0, math.pi, 721)
  x = np.stack([np.cos(theta), np.sin(theta)], axis=1).astype(np.float32)
  w = np.array([[1.0, 0.0]], np.float32)
  psi = np.asarray(L.a_softmax_logits(x, w, np.zeros(len(theta), np.int32)))[:, 0]
  assert np.all(np.diff(psi) <= 1e-5)
  np.testing.assert_allclose(psi[[0, -1]], [1.0, -7.0], atol=1e-5)  # psi(0)=1, psi(pi)=-2m+1


# ------------------------------------------------------------------ reduction identities ----


def test_margin_zero_reduces_to_normalised_softmax():
  x, w, y = _data(seed=3)
  s = 12.0
  ref = L.normface_loss(x, w, y, scale=s)
  np.testing.assert_allclose(L.am_softmax_loss(x, w, y, scale=s, margin=0.0), ref, rtol=1e-6)
  np.testing.assert_allclose(L.arcface_loss(x, w, y, scale=s, margin=0.0), ref, rtol=1e-5)
  # NormFace == plain softmax on normalised inputs with logits scaled by s.
  xn, wn = _np_normalize(x) * s, _np_normalize(w)
  np.testing.assert_allclose(L.softmax_loss(xn, wn, y), ref, rtol=1e-5)


def test_a_softmax_m1_is_weight_normalised_softmax_times_norm():
  x, w, y = _data(seed=4)
  ref = L.softmax_loss(x, _np_normalize(w), y)  # logits ||x|| cos(theta) = x . W_hat
  np.testing.assert_allclose(L.a_softmax_loss(x, w, y, margin=1, lambda_=0.0), ref, rtol=1e-5)
  np.testing.assert_allclose(L.a_softmax_loss(x, w, y, margin=4, lambda_=1e9), ref, rtol=1e-4)


def test_sphereface_lambda():
  np.testing.assert_allclose(L.sphereface_lambda(0), 1000.0)
  np.testing.assert_allclose(L.sphereface_lambda(100), 1000.0 / 13.0, rtol=1e-6)
  np.testing.assert_allclose(L.sphereface_lambda(10_000), 5.0)
  np.testing.assert_allclose(
    L.sphereface_lambda(10, base=10.0, gamma=1.0, power=2.0, lambda_min=0.0),
    10.0 / 121.0,
    rtol=1e-6,
  )
  lam = jax.jit(L.sphereface_lambda)(jnp.asarray(100))
  np.testing.assert_allclose(
    L.a_softmax_loss(*_data(), lambda_=lam),
    L.a_softmax_loss(*_data(), lambda_=1000.0 / 13.0),
    rtol=1e-6,
  )


# ------------------------------------------------------------------------------ gradients ----

_LOSSES = {
  "softmax": lambda x, w, y, **kw: L.softmax_loss(x, w, y, **kw),
  "normface": lambda x, w, y, **kw: L.normface_loss(x, w, y, scale=4.0, **kw),
  "a_softmax": lambda x, w, y, **kw: L.a_softmax_loss(x, w, y, margin=4, lambda_=2.0, **kw),
  "am_softmax": lambda x, w, y, **kw: L.am_softmax_loss(x, w, y, scale=4.0, margin=0.35, **kw),
  "arcface": lambda x, w, y, **kw: L.arcface_loss(x, w, y, scale=4.0, margin=0.5, **kw),
  "arcface_easy": lambda x, w, y, **kw: L.arcface_loss(x, w, y, scale=4.0, easy_margin=True, **kw),
  "arcface_st": lambda x, w, y, **kw: L.arcface_loss(
    x, w, y, scale=4.0, gradient="straight_through", **kw
  ),
}


@pytest.mark.parametrize("name", [n for n in _LOSSES if n != "arcface_st"])
def test_check_grads(name):
  x, w, y = _data(b=4, c=5, d=4, seed=5)
  x = x / 3.0
  fn = _LOSSES[name]
  check_grads(
    lambda x, w: jnp.sum(fn(x, w, y)),
    (jnp.asarray(x), jnp.asarray(w)),
    order=1,
    modes=["fwd", "rev"],
    atol=2e-2,
    rtol=2e-2,
    eps=1e-3,
  )


_LOGITS = {
  "softmax": lambda x, w, y: L.softmax_logits(x, w, y),
  "normface": lambda x, w, y: L.normface_logits(x, w, y, scale=4.0),
  "a_softmax": lambda x, w, y: L.a_softmax_logits(x, w, y, margin=4, lambda_=2.0),
  "am_softmax": lambda x, w, y: L.am_softmax_logits(x, w, y, scale=4.0, margin=0.35),
  "arcface": lambda x, w, y: L.arcface_logits(x, w, y, scale=4.0, margin=0.5),
  "arcface_easy": lambda x, w, y: L.arcface_logits(x, w, y, scale=4.0, easy_margin=True),
}


def _plain_l2_normalize(a):
  return a * jax.lax.rsqrt(jnp.maximum(jnp.sum(a * a, axis=-1, keepdims=True), 1e-12))


@pytest.mark.parametrize("name", list(_LOGITS))
def test_written_out_derivative_equals_autodiff(name):
  """The loss's custom JVP (and its transpose) equals plain autodiff of logsumexp(logits) - l_y."""
  x, w, y = _data(b=7, c=11, d=6, seed=3)
  x[2] = 0.0  # a zero embedding: clamped norm branch of l2_normalize
  where = np.array([True] * 6 + [False])

  def ref(x, w):
    logits = _LOGITS[name](x, w, y)
    ce = jax.nn.logsumexp(logits, axis=1) - jnp.take_along_axis(logits, y[:, None], 1)[:, 0]
    return jnp.sum(jnp.where(where, ce, 0.0) * jnp.arange(1.0, 8.0))

  def ours(x, w):
    return jnp.sum(_LOSSES[name](x, w, y, where=where) * jnp.arange(1.0, 8.0))

  args = (jnp.asarray(x), jnp.asarray(w))
  np.testing.assert_allclose(ours(*args), ref(*args), rtol=1e-5)
  for got, want in zip(jax.grad(ours, (0, 1))(*args), jax.grad(ref, (0, 1))(*args)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  tangents = (
    jnp.asarray(np.random.default_rng(1).normal(size=x.shape), jnp.float32),
    0.5 * args[1],
  )
  np.testing.assert_allclose(
    jax.jvp(ours, args, tangents)[1], jax.jvp(ref, args, tangents)[1], rtol=1e-4, atol=1e-5
  )


def test_l2_normalize_derivative_equals_autodiff():
  a = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
  a[1] = 0.0
  a[3] = 1e-8  # below the norm floor
  t = np.random.default_rng(1).normal(size=a.shape).astype(np.float32)
  np.testing.assert_allclose(L.l2_normalize(a), _plain_l2_normalize(a), rtol=1e-6)
  _, got = jax.jvp(L.l2_normalize, (a,), (t,))
  _, want = jax.jvp(_plain_l2_normalize, (a,), (t,))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  g_got = jax.grad(lambda a: jnp.sum(L.l2_normalize(a) * t))(a)
  g_want = jax.grad(lambda a: jnp.sum(_plain_l2_normalize(a) * t))(a)
  np.testing.assert_allclose(g_got, g_want, rtol=1e-5, atol=1e-6)


def test_arcface_straight_through_gradient():
  x, w, y = _data(b=4, c=5, d=4, seed=6)
  s = 4.0
  g = jax.grad(lambda x: jnp.sum(L.arcface_loss(x, w, y, scale=s, gradient="straight_through")))(x)
  # Straight-through: dL/dcos = s (softmax(arcface logits) - onehot) for every column.
  p = jax.nn.softmax(L.arcface_logits(x, w, y, scale=s), axis=1)
  cot = s * (p - jax.nn.one_hot(y, w.shape[0]))
  _, vjp = jax.vjp(lambda x: L.l2_normalize(x) @ L.l2_normalize(jnp.asarray(w)).T, x)
  np.testing.assert_allclose(g, vjp(cot)[0], rtol=1e-4, atol=1e-5)
  same_value = L.arcface_loss(x, w, y, scale=s, gradient="straight_through")
  np.testing.assert_allclose(same_value, L.arcface_loss(x, w, y, scale=s), rtol=1e-6)


@pytest.mark.parametrize("name", list(_LOSSES))
def test_finite_grads_at_theta_zero_and_pi(name):
  _, w, _ = _data(b=4, c=5, d=4, seed=7)
  y = np.array([0, 1, 2, 3])
  x = np.stack([w[0], -w[1], 5 * w[2], -3 * w[3]]).astype(np.float32)  # theta = 0, pi, 0, pi
  fn = _LOSSES[name]
  val = fn(x, w, y)
  gx, gw = jax.grad(lambda x, w: jnp.sum(fn(x, w, y)), argnums=(0, 1))(x, w)
  assert np.all(np.isfinite(val))
  assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gw))
  # Also at x = 0 (zero feature vector).
  g0 = jax.grad(lambda x: jnp.sum(fn(x, w, y)))(np.zeros_like(x))
  assert np.all(np.isfinite(g0))


@pytest.mark.parametrize("name", list(_LOSSES))
def test_jit_equals_eager(name):
  x, w, y = _data(seed=8)
  fn = _LOSSES[name]
  np.testing.assert_allclose(jax.jit(fn)(x, w, y), fn(x, w, y), rtol=1e-5, atol=1e-5)


def test_bf16_inputs_are_upcast():
  x, w, y = _data(seed=9)
  xb, wb = jnp.asarray(x, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16)
  out = L.arcface_loss(xb, wb, y)
  assert out.dtype == jnp.float32
  ref = L.arcface_loss(np.asarray(xb.astype(jnp.float32)), np.asarray(wb.astype(jnp.float32)), y)
  np.testing.assert_allclose(out, ref, rtol=1e-6)
  assert L.am_softmax_logits(xb, wb, y).dtype == jnp.float32


# --------------------------------------------------------------------------------- masks ----


@pytest.mark.parametrize("name", ["softmax", "am_softmax", "arcface", "a_softmax"])
def test_where_mask_for_padded_rows(name):
  x, w, y = _data(b=6, seed=10)
  where = np.array([True, True, False, True, False, True])
  x_pad, y_pad = x.copy(), y.copy()
  x_pad[~where] = np.nan  # padding garbage must not leak
  y_pad[~where] = -1
  fn = getattr(L, f"{name}_loss")
  out = fn(x_pad, w, y_pad, where=where)
  np.testing.assert_allclose(out[where], fn(x[where], w, y[where]), rtol=1e-6)
  np.testing.assert_array_equal(out[~where], 0.0)
  gx, gw = jax.grad(lambda x, w: jnp.sum(fn(x, w, y_pad, where=where)), argnums=(0, 1))(x_pad, w)
  gw_ref = jax.grad(lambda w: jnp.sum(fn(x[where], w, y[where])))(w)
  assert np.all(np.isfinite(gx)) and np.all(gx[~where] == 0)
  np.testing.assert_allclose(gw, gw_ref, rtol=1e-5, atol=1e-6)


def test_traced_hyperparameters_under_jit():
  x, w, y = _data(seed=11)
  f = jax.jit(lambda s, m: L.arcface_loss(x, w, y, scale=s, margin=m))
  np.testing.assert_allclose(
    f(20.0, 0.3), L.arcface_loss(x, w, y, scale=20.0, margin=0.3), rtol=1e-5
  )
  g = jax.jit(lambda s, m: L.am_softmax_loss(x, w, y, scale=s, margin=m))
  np.testing.assert_allclose(
    g(20.0, 0.3), L.am_softmax_loss(x, w, y, scale=20.0, margin=0.3), rtol=1e-5
  )


def _count_matmuls(fn, *args):
  """Number of [B,D]x[D,C]-type dot_generals in the jaxpr of ``fn`` (sub-jaxprs included)."""
  from jax.extend.core import jaxprs_in_params

  count = 0

  def walk(jaxpr):
    nonlocal count
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "dot_general":
        count += 1
      for sub in jaxprs_in_params(eqn.params):
        walk(sub)

  walk(jax.make_jaxpr(fn)(*args).jaxpr)
  return count


@pytest.mark.parametrize("name", ["am_softmax", "arcface", "softmax"])
def test_backward_is_three_matmuls_and_two_with_constant_weights(name):
  """The floor of a margin head: forward, dX and dW matmuls; IR (stop-gradient weights) skips dW."""
  x, w, y = _data(b=8, c=11, d=6)
  loss = _LOSSES[name]
  assert _count_matmuls(jax.grad(lambda x, w: jnp.sum(loss(x, w, y)), (0, 1)), x, w) == 3
  assert _count_matmuls(jax.grad(lambda x: jnp.sum(loss(x, w, y))), x) == 2
  ir = jax.grad(lambda x: jnp.sum(L.ir_am_softmax_loss(x, w, y)))
  assert _count_matmuls(ir, x) == 2
