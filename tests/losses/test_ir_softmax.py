"""IR-Softmax: class-centre updates and IR losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax import losses as L


def _data(b=8, c=6, d=4, seed=0):
  rng = np.random.default_rng(seed)
  return (
    rng.normal(size=(b, d)).astype(np.float32),
    rng.normal(size=(c, d)).astype(np.float32),
    rng.integers(0, c, size=b).astype(np.int32),
  )


def _np_update(centers, x, y, mu, where=None):
  out = centers.astype(np.float64).copy()
  xn = x / np.linalg.norm(x, axis=1, keepdims=True)
  for j in range(len(centers)):
    idx = [i for i in range(len(y)) if y[i] == j and (where is None or where[i])]
    if idx:
      out[j] = mu * centers[j] + (1 - mu) * xn[idx].mean(axis=0)
  return out


@pytest.mark.parametrize("mu", [0.0, 0.5, 0.9, 1.0])
def test_update_matches_loop_and_absent_classes_keep_centre(mu):
  x, c, y = _data()
  y[:] = np.array([0, 0, 2, 2, 2, 5, 0, 2])  # classes 1, 3, 4 absent
  new = L.update_class_centers(c, x, y, momentum=mu)
  np.testing.assert_allclose(new, _np_update(c, x, y, mu), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(new)[[1, 3, 4]], c[[1, 3, 4]])
  assert new.dtype == jnp.float32


def test_update_with_mask_and_jit():
  x, c, y = _data(seed=1)
  where = np.array([1, 1, 0, 1, 0, 1, 1, 1], bool)
  y_pad = y.copy()
  y_pad[~where] = -1
  f = jax.jit(lambda c, x, y, w: L.update_class_centers(c, x, y, momentum=0.7, where=w))
  np.testing.assert_allclose(
    f(c, x, y_pad, where), _np_update(c, x, y, 0.7, where), rtol=1e-5, atol=1e-6
  )


def test_momentum_zero_sets_centre_to_mean_direction_and_ema_converges():
  rng = np.random.default_rng(2)
  direction = np.array([3.0, 4.0, 0.0, 0.0]) / 5.0
  c = L.init_class_centers(jax.random.PRNGKey(0), 2, 4)
  np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0, rtol=1e-6)
  update = jax.jit(
    lambda c, x: L.update_class_centers(c, x, jnp.zeros(16, jnp.int32), momentum=0.9)
  )
  for _ in range(100):
    c = update(c, (direction + 0.05 * rng.normal(size=(16, 4))).astype(np.float32))
  angle = L.weight_center_angles(np.asarray([direction, [0, 0, 0, 1.0]], np.float32), c)
  assert angle[0] < 1.0  # class 0's centre points along its features
  assert angle[1] > 0  # class 1 never seen: still its random init


def test_ir_weights_stop_gradient_and_losses_are_compositions():
  x, c, y = _data(seed=3)
  wn = c / np.linalg.norm(c, axis=1, keepdims=True)
  np.testing.assert_allclose(L.ir_weights(c), wn, rtol=1e-6)
  np.testing.assert_allclose(
    L.ir_am_softmax_loss(x, c, y, scale=30.0, margin=0.35),
    L.am_softmax_loss(x, wn, y, scale=30.0, margin=0.35),
    rtol=1e-6,
  )
  np.testing.assert_allclose(L.ir_arcface_loss(x, c, y), L.arcface_loss(x, wn, y), rtol=1e-6)
  np.testing.assert_allclose(
    L.ir_a_softmax_loss(x, c, y, lambda_=3.0), L.a_softmax_loss(x, wn, y, lambda_=3.0), rtol=1e-6
  )
  for fn in (L.ir_am_softmax_loss, L.ir_arcface_loss, L.ir_a_softmax_loss):
    gx, gc = jax.grad(lambda x, c, fn=fn: jnp.sum(fn(x, c, y)), argnums=(0, 1))(x, c)
    assert np.all(np.asarray(gc) == 0.0)  # centres are not trained by the loss
    assert np.abs(np.asarray(gx)).max() > 0
    # Centre scale is irrelevant (only the direction is used).
    np.testing.assert_allclose(fn(x, 7.0 * c, y), fn(x, c, y), rtol=1e-5)


def test_ir_center_momentum_warmup():
  np.testing.assert_allclose(L.ir_center_momentum(0, momentum=0.9, warmup_steps=100), 0.0)
  np.testing.assert_allclose(L.ir_center_momentum(50, momentum=0.9, warmup_steps=100), 0.45)
  np.testing.assert_allclose(
    L.ir_center_momentum(500, momentum=0.9, warmup_steps=100), 0.9, rtol=1e-6
  )
  np.testing.assert_allclose(L.ir_center_momentum(3, momentum=0.99), 0.99, rtol=1e-6)


def test_weight_center_angles():
  w = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], np.float32)
  c = np.array([[0.0, 1.0], [0.0, 0.5], [-1.0, -1.0]], np.float32)
  np.testing.assert_allclose(L.weight_center_angles(w, c), [90.0, 0.0, 180.0], atol=1e-3)
