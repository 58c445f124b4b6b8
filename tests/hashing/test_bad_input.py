"""Hashing: bad input raises naming the argument (eager) or gives NaN rows (under jit)."""

import jax
import numpy as np
import pytest

from vision_jax import hashing as H


def _codes(b=4, bits=8, seed=0):
  return np.tanh(np.random.default_rng(seed).normal(size=(b, bits))).astype(np.float32)


def test_dpsh_nan_codes_raise_naming_h_and_row():
  h = _codes()
  h[2, 3] = np.nan
  with pytest.raises(ValueError, match=r"h contains non-finite values .* row 2"):
    H.dpsh_loss(h, np.array([0, 1, 0, 1]))


def test_dpsh_nan_in_masked_row_is_exempt():
  h = _codes()
  h[2, 3] = np.nan
  out = H.dpsh_loss(h, np.array([0, 1, 0, 1]), where=np.array([True, True, False, True]))
  assert np.isfinite(np.asarray(out)).all() and float(out[2]) == 0.0


def test_dpsh_bank_nan_raises_naming_bank_h():
  h, bank = _codes(), _codes(6, seed=1)
  bank[5, 0] = np.inf
  with pytest.raises(ValueError, match=r"bank_h contains non-finite values .* row 5"):
    H.dpsh_loss(h, np.arange(4), bank_h=bank, bank_labels=np.arange(6))


def test_dpsh_labels_of_other_batch_size():
  with pytest.raises(ValueError, match=r"labels must be int ids \[4\].*got shape \(3,\)"):
    H.dpsh_loss(_codes(), np.array([0, 1, 2]))
  with pytest.raises(ValueError, match=r"bank_labels must be int ids \[6\].*shape \(5,\)"):
    H.dpsh_loss(_codes(), np.arange(4), bank_h=_codes(6), bank_labels=np.arange(5))


def test_dpsh_negative_quantization_weight():
  with pytest.raises(ValueError, match=r"quantization_weight=-0.1 is out of range"):
    H.dpsh_loss(_codes(), np.arange(4), quantization_weight=-0.1)


def test_hashnet_labels_and_alpha():
  with pytest.raises(ValueError, match=r"labels must be int ids \[4\]"):
    H.hashnet_loss(_codes(), np.arange(5))
  with pytest.raises(ValueError, match=r"alpha=0.0 is out of range"):
    H.hashnet_loss(_codes(), np.arange(4), alpha=0.0)


def test_csq_codes_outside_unit_interval_raise():
  h = _codes()
  h[1, 4] = 1.5
  c = np.sign(_codes(seed=3))
  with pytest.raises(ValueError, match=r"h must hold relaxed codes in \[-1, 1\].*h\[1, 4\]=1.5"):
    H.csq_loss(h, c)


def test_csq_codes_outside_unit_interval_nan_under_jit():
  h = _codes()
  c = np.sign(_codes(seed=3))
  good = np.asarray(H.csq_loss(h, c))
  h[1, 4] = 1.5
  # Without the check this row's BCE has log(1 - 1.5) clamped and comes out negative.
  out = np.asarray(jax.jit(H.csq_loss)(h, c))
  assert np.isnan(out[1])
  np.testing.assert_allclose(np.delete(out, 1), np.delete(good, 1), rtol=1e-6)
  masked = np.asarray(jax.jit(H.csq_loss)(h, c, where=np.array([True, False, True, True])))
  assert masked[1] == 0.0 and np.isfinite(masked).all()


def test_csq_saturated_codes_are_valid():
  h = np.array([[1.0, -1.0, 1.0, -1.0]], np.float32)  # float32 tanh saturates to exactly ±1
  out = H.csq_loss(h, np.ones_like(h))
  assert np.isfinite(np.asarray(out)).all()


def test_label_centers_out_of_range_label():
  centers = H.hadamard_centers(8)[:5]
  with pytest.raises(ValueError, match=r"labels must lie in \[0, num_classes=5\).*labels\[2\]=5"):
    H.label_centers(np.array([0, 1, 5]), centers)
  with pytest.raises(ValueError, match=r"labels\[0\]=-1"):
    H.label_centers(np.array([-1, 1]), centers)
  with pytest.raises(TypeError, match="labels must be integer class ids"):
    H.label_centers(np.array([0.0, 1.0]), centers)


@pytest.mark.parametrize("bad", [5, 17, -1])
def test_label_centers_out_of_range_is_nan_under_jit(bad):
  centers = H.hadamard_centers(8)[:5]
  out = np.asarray(jax.jit(H.label_centers)(np.array([0, bad, 3]), centers))
  assert np.isnan(out[1]).all()  # a plain gather would return the last centre
  np.testing.assert_array_equal(out[[0, 2]], centers[[0, 3]])


def test_label_centers_multi_hot_class_mismatch():
  centers = H.hadamard_centers(8)[:5]
  with pytest.raises(ValueError, match=r"labels have 4 classes.*centers has 5 rows"):
    H.label_centers(np.zeros((2, 4)), centers, tie_breaker=np.ones(8))


def test_pack_codes_nan_raises():
  codes = np.sign(_codes(bits=8))
  codes[3, 2] = np.nan
  with pytest.raises(ValueError, match=r"codes contains non-finite values .* row 3"):
    H.pack_codes(codes, word_bits=8)


@pytest.mark.parametrize(
  "kw,match",
  [
    (dict(bit_weight=-1.0), r"bit_weight=-1.0 is out of range"),
    (dict(image_weight=-0.5), r"image_weight=-0.5 is out of range"),
    (dict(quantization_weight=-1.0), r"quantization_weight=-1.0 is out of range"),
  ],
)
def test_dmuh_negative_weights(kw, match):
  h = _codes()
  with pytest.raises(ValueError, match=match):
    H.dmuh_loss(h, h, targets=np.sign(h), **kw)


def test_dmuh_center_codes_outside_unit_interval():
  h = _codes()
  h[0, 0] = -2.0
  with pytest.raises(ValueError, match=r"h\[0, 0\]=-2.0"):
    H.dmuh_loss(h, _codes(seed=1), targets=np.ones_like(h))
  out = np.asarray(jax.jit(lambda a, b, c: H.dmuh_loss(a, b, targets=c))(h, _codes(seed=1), h))
  assert np.isnan(out[0]) and np.isfinite(out[1:]).all()


def test_dmuh_nan_ema_codes():
  h, e = _codes(), _codes(seed=1)
  e[3, 1] = np.nan
  with pytest.raises(ValueError, match=r"h_ema contains non-finite values .* row 3"):
    H.dmuh_loss(h, e, targets=np.sign(h))
