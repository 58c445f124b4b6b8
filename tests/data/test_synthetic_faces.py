"""Tests for the procedural multi-pose face renderer."""

import numpy as np
import pytest

from vision_jax.data import synthetic_faces as sf
from vision_jax.metrics.pose_bins import check_poses, pose_index


def _sphere(radius, albedo=(0.8, 0.6, 0.4)):
  return sf.FaceParams(
    centers=np.zeros((1, 3)),
    radii=np.full((1, 3), radius),
    labels=np.array([sf.SKIN]),
    albedo=np.array([albedo], np.float64),
    hairline=(0.0, 0.0),
    iris=np.zeros(3),
  )


def test_sphere_silhouette_and_lambertian_shading_match_closed_form():
  size, extent, r, ambient = 41, 1.3, 0.7, 0.25
  light = np.array([0.3, -0.2, 1.0])
  img, lab = sf.render_face(_sphere(r), 33.0, -12.0, size=size, supersample=1, extent=extent,
                            light=light, ambient=ambient, background=0.1)  # fmt: skip
  c = -extent + 2 * extent / size * (np.arange(size) + 0.5)
  u, v = np.meshgrid(c, -c)
  inside = u**2 + v**2 < r**2
  edge = np.abs(np.sqrt(u**2 + v**2) - r) < 1e-9
  np.testing.assert_array_equal((lab == sf.SKIN)[~edge], inside[~edge])
  # A sphere is rotation invariant: normal at (u, v) is (u, v, sqrt(r^2-u^2-v^2)) / r.
  n = np.stack([u, v, np.sqrt(np.clip(r**2 - u**2 - v**2, 0, None))], -1) / r
  ln = light / np.linalg.norm(light)
  shade = ambient + (1 - ambient) * np.clip(n @ ln, 0, None)
  expect = np.where(inside[..., None], np.array([0.8, 0.6, 0.4]) * shade[..., None], 0.1)
  np.testing.assert_allclose(img, expect, atol=1e-5)


def test_deterministic_in_seed_and_identity():
  a = sf.render_identities(3, [5, 7], [(0, 0), (45, 15)], size=16, supersample=1)
  b = sf.render_identities(3, [7, 5], [(0, 0), (45, 15)], size=16, supersample=1)
  np.testing.assert_allclose(a["image"][0], b["image"][1], atol=1e-6)
  np.testing.assert_array_equal(a["parsing"][1], b["parsing"][0])
  assert not np.allclose(a["image"][0], a["image"][1], atol=1e-2)  # identities differ
  c = sf.render_identities(4, [5], [(0, 0)], size=16, supersample=1)
  assert not np.allclose(a["frontal"][0], c["frontal"][0], atol=1e-2)  # seeds differ


def test_frontal_is_the_zero_pose_and_shapes():
  poses = [(-30, 0), (0, 0), (30, 15)]
  d = sf.render_identities(0, [1, 2, 3], poses, size=24, supersample=2)
  assert d["image"].shape == (3, 3, 24, 24, 3) and d["image"].dtype == np.float32
  assert d["parsing"].shape == (3, 3, 24, 24)
  assert d["frontal"].shape == (3, 24, 24, 3) and d["frontal_parsing"].shape == (3, 24, 24)
  k = pose_index(poses, 0, 0)
  np.testing.assert_allclose(d["frontal"], d["image"][:, k], atol=1e-6)
  np.testing.assert_array_equal(d["frontal_parsing"], d["parsing"][:, k])
  assert 0.0 <= d["image"].min() and d["image"].max() <= 1.0
  g = sf.render_identities(0, [1], poses, size=24, supersample=2, grayscale=True)
  assert g["image"].shape == (1, 3, 24, 24, 1)
  luma = d["image"][0] @ np.array([0.299, 0.587, 0.114])
  np.testing.assert_allclose(g["image"][0, ..., 0], luma, atol=1e-5)


@pytest.mark.parametrize("identity", [0, 1, 2, 3])
def test_frontal_parsing_covers_face_parts_in_anatomical_order(identity):
  _, lab = sf.render_face(sf.sample_identity(0, identity), 0, 0, size=48)
  assert set(np.unique(lab)) == set(range(len(sf.PARTS)))
  rows = {k: np.argwhere(lab == k)[:, 0].mean() for k in (sf.HAIR, sf.EYES_BROWS, sf.NOSE,
                                                          sf.MOUTH)}  # fmt: skip
  assert rows[sf.HAIR] < rows[sf.EYES_BROWS] < rows[sf.NOSE] < rows[sf.MOUTH]
  cols = np.argwhere(lab == sf.NOSE)[:, 1].mean()
  assert abs(cols - 23.5) < 1.5  # nose on the vertical midline
  eyes = np.argwhere(lab == sf.EYES_BROWS)[:, 1]
  assert (eyes < 23.5).sum() > 0 and (eyes > 23.5).sum() > 0  # two sides


def test_yaw_mirrors_parsing():
  p = sf.sample_identity(1, 9)
  _, a = sf.render_face(p, 60, 15, size=32)
  _, b = sf.render_face(p, -60, 15, size=32)
  assert (a == b[:, ::-1]).mean() > 0.99  # the face is left-right symmetric
  _, f = sf.render_face(p, 60, 0, size=32)
  nose = np.argwhere(f == sf.NOSE)[:, 1].mean()
  assert nose > 16  # positive yaw turns the face towards the image's right
  _, up = sf.render_face(p, 0, 30, size=32)
  _, fr = sf.render_face(p, 0, 0, size=32)
  assert np.argwhere(up == sf.MOUTH)[:, 0].mean() < np.argwhere(fr == sf.MOUTH)[:, 0].mean()


def test_default_poses_are_an_explicit_non_product_set():
  arr = check_poses(sf.DEFAULT_POSES)
  yaws, pitches = set(arr[:, 0]), set(arr[:, 1])
  assert len(arr) < len(yaws) * len(pitches)
  assert (0.0, 0.0) in set(map(tuple, arr))


def test_bad_poses_raise_naming_the_pose():
  with pytest.raises(ValueError, match=r"yaw=90, pitch=30"):
    pose_index(sf.DEFAULT_POSES, 90, 30)
  with pytest.raises(ValueError, match=r"\(15.0, 0.0\) more than once"):
    check_poses([(0, 0), (15, 0), (15, 0)])
  with pytest.raises(ValueError, match=r"poses\[1\] = \(200.0, 0.0\)"):
    check_poses([(0, 0), (200, 0)])
  with pytest.raises(ValueError, match="pairs"):
    sf.render_identities(0, [0], [0, 15])
  with pytest.raises(ValueError, match="identity must be a non-negative int"):
    sf.sample_identity(0, -1)
  with pytest.raises(ValueError, match="size"):
    sf.render_face(sf.sample_identity(0, 0), 0, 0, size=2)


def test_save_pose_grid(tmp_path):
  import PIL.Image

  path = tmp_path / "grid.png"
  sf.save_pose_grid(str(path), 0, 0, [(0, 0), (30, 0), (0, 15)], size=12, scale=1)
  assert PIL.Image.open(path).size == (24, 24)
