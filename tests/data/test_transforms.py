import numpy as np
import PIL.Image
import pytest

from vision_jax.data import transforms as T


def test_random_horizontal_flip_is_a_flip_half_the_time():
  img = np.arange(12).reshape(2, 3, 2)
  outs = [
    T.random_horizontal_flip({"image": img}, np.random.default_rng(s))["image"] for s in range(200)
  ]
  flipped = [np.array_equal(o, img[:, ::-1]) for o in outs]
  assert all(f or np.array_equal(o, img) for f, o in zip(flipped, outs))
  assert 70 < sum(flipped) < 130


def test_image_to_float_against_numpy():
  x = np.random.default_rng(0).integers(0, 256, (2, 3, 3, 1), dtype=np.uint8)
  want = (x.astype(np.float64) / 255.0 - 0.4) / 0.2
  np.testing.assert_allclose(T.image_to_float(x, 0.4, 0.2), want, rtol=1e-5, atol=1e-5)


def test_resize_image_grey_to_rgb_is_the_channel_replicated_resize():
  rng = np.random.default_rng(1)
  g = rng.integers(0, 256, (9, 13), dtype=np.uint8)
  one = np.asarray(PIL.Image.fromarray(g).resize((6, 6), PIL.Image.BILINEAR))
  out = T.resize_image(g, 6)
  assert out.shape == (6, 6, 3) and out.dtype == np.uint8
  for c in range(3):
    np.testing.assert_array_equal(out[..., c], one)
  # [H, W, 1] input, grey output; an image already at size comes back unchanged.
  np.testing.assert_array_equal(T.resize_image(g[..., None], 6, channels=1)[..., 0], one)
  rgb = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
  np.testing.assert_array_equal(T.resize_image(rgb, 6), rgb)


def test_resize_image_rgb_to_grey_is_itu_601_luma():
  rgb = np.zeros((4, 4, 3), np.uint8)
  rgb[..., 0] = 200
  out = T.resize_image(rgb, 4, channels=1)
  assert out.shape == (4, 4, 1)
  assert abs(int(out[0, 0, 0]) - round(0.299 * 200)) <= 1


def test_resize_image_rejects_bad_channels():
  with pytest.raises(ValueError, match="channels must be 1 or 3, got 2"):
    T.resize_image(np.zeros((4, 4), np.uint8), 4, channels=2)
