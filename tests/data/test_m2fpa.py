"""Tests for the M2FPA path parser and builder on generated fixture trees."""

import math

import numpy as np
import PIL.Image
import pytest

import vision_jax.data as vd


def _jpeg(path, seed, size=(10, 8)):
  path.parent.mkdir(parents=True, exist_ok=True)
  arr = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
  PIL.Image.fromarray(arr).save(path, format="JPEG", quality=95)


FILES = [
  "Train/001/White/Neutral/a4-7.jpg",
  "Train/001/White/Neutral/a4-1.jpg",
  "Train/001/White/Smile/b3-7.jpg",
  "Train/002/Glasses/Neutral/4-7.jpg",
  "Train/002/Glasses/Neutral/light12-13.jpg",
  "Test/010/White/Neutral/a4-7.jpg",
  "Test/010/White/Neutral/a2-1.jpg",
]
# layer 4 = pitch 0, layer 3 = pitch 15, layer 2 = pitch 30; camera 7 = yaw 0. Not a product.
CAMERAS = "layer,camera,yaw,pitch\n4,7,0,0\n4,1,-90,0\n3,7,0,15\n12,13,45,-30\n2,1,-60,30\n"


@pytest.fixture()
def m2fpa_dir(tmp_path):
  d = tmp_path / "M2FPA"
  for k, f in enumerate(FILES):
    _jpeg(d / f, seed=k)
  (d / "Train" / "001" / "Thumbs.db").write_bytes(b"x")  # not an image: skipped
  return d


def test_parse_m2fpa_path():
  r = vd.parse_m2fpa_path("Train/001/White/Neutral/a4-7.jpg")
  assert r == vd.M2fpaRecord("Train/001/White/Neutral/a4-7.jpg", "Train", "001", "White",
                             "Neutral", "a", 4, 7)  # fmt: skip
  r = vd.parse_m2fpa_path("Test/x/y/z/light12-13.PNG")
  assert (r.illumination, r.layer, r.camera) == ("light", 12, 13)
  assert vd.parse_m2fpa_path("Train/1/W/E/4-7.jpg").illumination == ""
  with pytest.raises(ValueError, match=r"'a47\.jpg'"):
    vd.parse_m2fpa_path("Train/001/White/Neutral/a47.jpg")
  with pytest.raises(ValueError, match=r"'a4-7x\.jpg'"):
    vd.parse_m2fpa_path("Train/001/White/Neutral/a4-7x.jpg")
  with pytest.raises(ValueError, match="does not have the form"):
    vd.parse_m2fpa_path("Train/001/a4-7.jpg")


def test_list_and_pose_set(m2fpa_dir):
  recs = vd.list_m2fpa(str(m2fpa_dir))
  assert [r.path for r in recs] == sorted(FILES)
  (m2fpa_dir / "camera_poses.csv").write_text(CAMERAS)
  table = vd.read_camera_poses(str(m2fpa_dir / "camera_poses.csv"))
  assert table[(12, 13)] == (45.0, -30.0)
  poses = vd.m2fpa_poses(recs, table)
  np.testing.assert_array_equal(poses, [[-90, 0], [-60, 30], [0, 0], [0, 15], [45, -30]])
  del table[(3, 7)]
  with pytest.raises(ValueError, match=r"Train/001/White/Smile/b3-7\.jpg.*camera 3-7"):
    vd.m2fpa_poses(recs, table)


def test_read_camera_poses_errors(tmp_path):
  p = tmp_path / "c.csv"
  p.write_text("4,7,0,0\n4,7,15,0\n")
  with pytest.raises(ValueError, match=r"c\.csv:2: camera 4-7 is listed twice"):
    vd.read_camera_poses(str(p))
  p.write_text("# comment\n4,7,0,0\n4,8,0,0\n")
  with pytest.raises(ValueError, match=r"c\.csv:3: pose \(yaw=0.0, pitch=0.0\)"):
    vd.read_camera_poses(str(p))
  p.write_text("4,7,zero,0\n")
  with pytest.raises(ValueError, match=r"c\.csv:1: expected"):
    vd.read_camera_poses(str(p))


def test_m2fpa_builder(m2fpa_dir, tmp_path):
  (m2fpa_dir / "camera_poses.csv").write_text(CAMERAS)
  train = vd.load("vj_m2fpa", "train", data_dir=tmp_path / "s", manual_dir=m2fpa_dir)
  want = sorted(f for f in FILES if f.startswith("Train/"))
  assert [e["path"].decode() for e in train] == want
  assert [int(e["label"]) for e in train] == [0, 0, 0, 1, 1]  # subjects 001, 002 (sorted)
  e = train[want.index("Train/002/Glasses/Neutral/light12-13.jpg")]
  assert (e["subject"], e["attribute"], e["expression"], e["illumination"]) == (
    b"002",
    b"Glasses",
    b"Neutral",
    b"light",
  )
  assert (int(e["layer"]), int(e["camera"]), float(e["yaw"]), float(e["pitch"])) == (
    12,
    13,
    45,
    -30,
  )
  ref = np.asarray(PIL.Image.open(m2fpa_dir / "Train/002/Glasses/Neutral/light12-13.jpg"))
  np.testing.assert_array_equal(e["image"], ref)
  test = vd.load("vj_m2fpa", "test", data_dir=tmp_path / "s", manual_dir=m2fpa_dir)
  assert [int(e["label"]) for e in test] == [2, 2]  # subject labels shared across splits


def test_m2fpa_builder_without_pose_table_and_bad_names(m2fpa_dir, tmp_path):
  train = vd.load("vj_m2fpa", "train", data_dir=tmp_path / "s", manual_dir=m2fpa_dir)
  assert all(math.isnan(float(e["yaw"])) for e in train)
  _jpeg(m2fpa_dir / "Train/003/White/Neutral/frontal.jpg", seed=9)
  with pytest.raises(ValueError, match=r"'frontal\.jpg'"):
    vd.load("vj_m2fpa", "train", data_dir=tmp_path / "s2", manual_dir=m2fpa_dir)


def test_m2fpa_builder_empty(tmp_path):
  (tmp_path / "m").mkdir()
  with pytest.raises(FileNotFoundError, match="no images"):
    vd.load("vj_m2fpa", "train", data_dir=tmp_path / "s", manual_dir=tmp_path / "m")
