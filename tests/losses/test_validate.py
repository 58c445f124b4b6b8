"""Bad input: eager errors naming the argument and value; checkify path under jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax import losses as L


def _ok():
  rng = np.random.default_rng(0)
  return (
    rng.normal(size=(4, 3)).astype(np.float32),
    rng.normal(size=(5, 3)).astype(np.float32),
    np.array([0, 1, 4, 2], np.int32),
  )


@pytest.mark.parametrize(
  "fn", [L.softmax_loss, L.am_softmax_loss, L.arcface_loss, L.a_softmax_loss, L.ir_am_softmax_loss]
)
@pytest.mark.parametrize(
  "bad,match",
  [
    ("label_high", r"labels\[2\]=5"),
    ("label_neg", r"labels\[0\]=-1"),
    ("batch", r"B=4 rows but labels has 3"),
    ("dim", r"D=3 but weights has D=2"),
    ("nan", r"non-finite values.*row 1"),
    ("c0", r"C=0"),
    ("float_labels", r"labels must be integer"),
    ("onehot", r"labels must have shape \[batch\]"),
  ],
)
def test_eager_errors_name_argument_and_value(fn, bad, match):
  x, w, y = _ok()
  if bad == "label_high":
    y[2] = 5
  elif bad == "label_neg":
    y[0] = -1
  elif bad == "batch":
    y = y[:3]
  elif bad == "dim":
    w = w[:, :2]
  elif bad == "nan":
    x[1, 0] = np.nan
  elif bad == "c0":
    w = w[:0]
  elif bad == "float_labels":
    y = y.astype(np.float32)
  elif bad == "onehot":
    y = np.eye(5, dtype=np.int32)[y]
  with pytest.raises((ValueError, TypeError), match=match):
    fn(x, w, y)


@pytest.mark.parametrize(
  "call,match",
  [
    (lambda x, w, y: L.am_softmax_loss(x, w, y, scale=0.0), r"scale=0.0"),
    (lambda x, w, y: L.am_softmax_loss(x, w, y, scale=float("nan")), r"scale=nan"),
    (lambda x, w, y: L.am_softmax_loss(x, w, y, margin=-0.1), r"margin=-0.1"),
    (lambda x, w, y: L.am_softmax_loss(x, w, y, margin=1.5), r"margin=1.5"),
    (lambda x, w, y: L.arcface_loss(x, w, y, margin=28.6), r"margin=28.6.*degrees"),
    (lambda x, w, y: L.arcface_loss(x, w, y, gradient="ste"), r"gradient='ste'"),
    (lambda x, w, y: L.a_softmax_loss(x, w, y, margin=2.5), r"margin=2.5"),
    (lambda x, w, y: L.a_softmax_loss(x, w, y, margin=0), r"margin=0"),
    (lambda x, w, y: L.a_softmax_loss(x, w, y, lambda_=-1.0), r"lambda_=-1.0"),
    (lambda x, w, y: L.normface_loss(x, w, y, scale=-3.0), r"scale=-3.0"),
    (lambda x, w, y: L.softmax_loss(x, w, y, bias=np.zeros(4, np.float32)), r"bias must have"),
    (lambda x, w, y: L.update_class_centers(w, x, y, momentum=1.5), r"momentum=1.5"),
  ],
)
def test_hyperparameter_errors(call, match):
  with pytest.raises(ValueError, match=match):
    call(*_ok())


def test_masked_rows_are_not_validated():
  x, w, y = _ok()
  x[1], y[1] = np.nan, -7
  where = np.array([True, False, True, True])
  assert np.all(np.isfinite(L.arcface_loss(x, w, y, where=where)))
  with pytest.raises(ValueError, match="labels"):
    L.arcface_loss(x, w, y)


def test_under_jit_shapes_checked_values_skipped():
  x, w, y = _ok()
  f = jax.jit(lambda x, w, y: L.am_softmax_loss(x, w, y))
  with pytest.raises(ValueError, match="feature dim mismatch"):
    f(x, w[:, :2], y)
  y_bad = y.copy()
  y_bad[0] = 99
  f(x, w, y_bad)  # no host-side value check under jit (documented): no exception


# Every public loss under jit: an out-of-range label (negative too) gives NaN for that row only.
_JIT_LOSSES = {
  "softmax": lambda x, w, y, m: L.softmax_loss(x, w, y, where=m),
  "normface": lambda x, w, y, m: L.normface_loss(x, w, y, scale=16.0, where=m),
  "a_softmax": lambda x, w, y, m: L.a_softmax_loss(x, w, y, where=m),
  "am_softmax": lambda x, w, y, m: L.am_softmax_loss(x, w, y, where=m),
  "arcface": lambda x, w, y, m: L.arcface_loss(x, w, y, where=m),
  "ir_arcface": lambda x, w, y, m: L.ir_arcface_loss(x, w, y, where=m),
}


@pytest.mark.parametrize("name", sorted(_JIT_LOSSES))
@pytest.mark.parametrize("bad_label", [-1, -5, 5, 99])
def test_jitted_loss_is_nan_for_out_of_range_label(name, bad_label):
  x, w, y = _ok()
  fn = _JIT_LOSSES[name]
  good = np.asarray(fn(x, w, y, None))
  y_bad = y.copy()
  y_bad[1] = bad_label
  out = np.asarray(jax.jit(fn)(x, w, y_bad, None))
  assert np.isnan(out[1])
  keep = np.array([0, 2, 3])
  np.testing.assert_allclose(out[keep], good[keep], rtol=1e-5, atol=1e-6)
  # The gradient stays finite (the bad row contributes nothing) and the mean is NaN, which the
  # train loop's non-finite guard catches.
  g = jax.jit(jax.grad(lambda x, w, y: jnp.nansum(fn(x, w, y, None)), argnums=(0, 1)))(x, w, y_bad)
  assert all(np.isfinite(np.asarray(t)).all() for t in g)
  assert np.isnan(float(jax.jit(lambda *a: jnp.mean(fn(*a)))(x, w, y_bad, None)))


@pytest.mark.parametrize("name", sorted(_JIT_LOSSES))
def test_jitted_loss_masked_bad_label_is_exempt(name):
  x, w, y = _ok()
  fn = _JIT_LOSSES[name]
  y_bad = y.copy()
  y_bad[1] = -1
  mask = np.array([True, False, True, True])
  out = np.asarray(jax.jit(fn)(x, w, y_bad, mask))
  assert out[1] == 0.0 and np.isfinite(out).all()


@pytest.mark.parametrize(
  "fn",
  [
    lambda x, w, y: L.softmax_logits(x, w, y),
    lambda x, w, y: L.arcface_logits(x, w, y),
    lambda x, w, y: L.a_softmax_logits(x, w, y),
  ],
)
def test_jitted_logits_nan_row_for_negative_label(fn):
  x, w, y = _ok()
  y_bad = y.copy()
  y_bad[2] = -1
  out = np.asarray(jax.jit(fn)(x, w, y_bad))
  assert np.isnan(out[2]).all()
  np.testing.assert_allclose(
    np.delete(out, 2, 0), np.delete(np.asarray(fn(x, w, y)), 2, 0), rtol=1e-5
  )


def test_class_parallel_jit_nan_for_bad_label(num_devices):
  mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
  rng = np.random.default_rng(1)
  x = rng.normal(size=(4, 3)).astype(np.float32)
  w = rng.normal(size=(8, 3)).astype(np.float32)
  y = np.array([0, -1, 7, 8], np.int32)
  f = jax.jit(lambda x, w, y: L.class_parallel_loss(x, w, y, mesh=mesh, loss="am_softmax"))
  out = np.asarray(f(x, jax.device_put(w, L.class_sharding(mesh)), y))
  assert np.isnan(out[[1, 3]]).all() and np.isfinite(out[[0, 2]]).all()
  dense = np.asarray(L.am_softmax_loss(x, w, np.array([0, 0, 7, 0], np.int32)))
  np.testing.assert_allclose(out[[0, 2]], dense[[0, 2]], rtol=1e-5)


def test_checked_raises_inside_jit():
  x, w, y = _ok()
  f = L.checked(L.arcface_loss, scale=16.0, margin=0.3)
  np.testing.assert_allclose(f(x, w, y), L.arcface_loss(x, w, y, scale=16.0, margin=0.3), rtol=1e-5)
  y_bad = y.copy()
  y_bad[3] = 5
  with pytest.raises(Exception, match=r"labels\[3\]=5"):
    f(x, w, y_bad)
  x_bad = x.copy()
  x_bad[2, 1] = np.inf
  with pytest.raises(Exception, match=r"non-finite values in row 2"):
    f(x_bad, w, y)
  # Masked rows are exempt.
  where = np.array([True, True, True, False])
  out = f(x, w, y_bad, where=where)
  assert np.all(np.isfinite(out)) and out[3] == 0
  with pytest.raises(ValueError, match=r"margin=2.0"):
    L.checked(L.arcface_loss, margin=2.0)(x, w, y)


def test_traced_checks_in_user_step():
  from jax.experimental import checkify

  x, w, y = _ok()

  def step(x, w, y):
    L.check_head_inputs_traced(x, w, y)
    return jnp.mean(L.am_softmax_loss(x, w, y))

  err, _ = jax.jit(checkify.checkify(step))(x, w, np.array([0, 1, 2, -3], np.int32))
  with pytest.raises(Exception, match=r"labels\[3\]=-3"):
    err.throw()


def test_nan_row_index_refers_to_unmasked_batch_and_weights_checked():
  x, w, y = _ok()
  x[3, 2] = np.nan
  where = np.array([True, False, True, True])
  with pytest.raises(ValueError, match=r"row 3 \(1 bad rows\)"):
    L.am_softmax_loss(x, w, y, where=where)
  x, w, y = _ok()
  w[4, 0] = np.inf
  with pytest.raises(ValueError, match=r"weights .* non-finite"):
    L.arcface_loss(x, w, y)


def test_label_error_index_refers_to_unmasked_batch():
  x, w, _ = _ok()
  y = np.array([0, 9, 1, 9], np.int32)
  with pytest.raises(ValueError, match=r"labels\[3\]=9 \(1 bad in total\)"):
    L.am_softmax_loss(x, w, y, where=np.array([True, False, True, True]))


class _BadLabelAt:
  """Toy batches whose label 0 is replaced by -1 at step ``at`` (a wrapping id under jit)."""

  def __init__(self, at):
    from tests.train.toy import ToyData

    self.data, self.at = ToyData(), at

  def __getitem__(self, t):
    batch = dict(self.data[t])
    if t == self.at:
      batch["label"] = batch["label"].copy()
      batch["label"][0] = -1
    return batch


def test_train_loop_guard_names_the_step_of_a_bad_label(tmp_path):
  # End to end: the jitted loss turns label -1 into NaN, the loop's non-finite guard stops.
  import flax.linen as nn

  from tests.train.toy import toy_config
  from vision_jax.train import NonFiniteError, train_and_evaluate
  from vision_jax.train.embedding import margin_softmax_task

  class Backbone(nn.Module):
    @nn.compact
    def __call__(self, x, *, train: bool):
      emb = nn.Dense(8)(x.reshape(x.shape[0], -1))
      return emb, {"embedding": emb}

  task = margin_softmax_task(Backbone(), num_classes=4, embed_dim=4, loss="arcface")
  with pytest.raises(NonFiniteError, match=r"non-finite loss at step 2 "):
    train_and_evaluate(toy_config(num_steps=3), str(tmp_path), task, _BadLabelAt(2), progress=False)
