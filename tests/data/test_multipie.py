"""Multi-PIE: path parser, pose labels, the setting-2 protocol and the builder, on fixture trees
written in the release layout (``data/session<ss>/multiview/<subject>/<rec>/<cam>/<name>.png``)."""

import numpy as np
import PIL.Image
import pytest

import vision_jax.data as vd
from vision_jax.data import multipie as mp


def _rel(subj, ses, rec, cam, ill):
  name = f"{subj:03d}_{ses:02d}_{rec:02d}_{cam.replace('_', '')}_{ill:02d}.png"
  return f"data/session{ses:02d}/multiview/{subj:03d}/{rec:02d}/{cam}/{name}"


# subject 001, 200: train; 201, 346: test. 346 appears first in session 02 (its gallery).
SPEC = [
  (1, 1, 1, "05_1", 7), (1, 1, 1, "11_0", 7), (1, 1, 1, "24_0", 3), (1, 1, 2, "05_1", 7),
  (1, 1, 1, "19_1", 7), (200, 3, 1, "13_0", 19), (200, 3, 3, "13_0", 19),
  (201, 1, 1, "05_1", 7), (201, 1, 1, "05_1", 0), (201, 1, 1, "09_0", 7),
  (201, 4, 2, "05_1", 7), (201, 4, 2, "20_0", 12),
  (346, 2, 1, "04_1", 7), (346, 2, 1, "05_1", 7), (346, 3, 1, "05_1", 7), (346, 3, 1, "12_0", 1),
]  # fmt: skip


def _write(root, spec=SPEC):
  for k, s in enumerate(spec):
    p = root / _rel(*s)
    p.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(k).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    PIL.Image.fromarray(arr).save(p, format="PNG")
  return root


def test_parse_multipie_path():
  r = vd.parse_multipie_path("data/session01/multiview/001/01/05_1/001_01_01_051_07.png")
  assert r == vd.MultiPieRecord(
    "data/session01/multiview/001/01/05_1/001_01_01_051_07.png", 1, 1, 1, "05_1", 7, "neutral"
  )
  assert vd.parse_multipie_path(_rel(17, 2, 3, "08_1", 19)).expression == "squint"
  assert vd.parse_multipie_path(_rel(17, 4, 2, "24_0", 0)).expression == "neutral"
  assert vd.parse_multipie_path(_rel(17, 4, 3, "24_0", 0)).expression == "scream"
  bad = "data/session01/multiview/001/01/05_1/001_01_01_05_07.png"
  with pytest.raises(
    ValueError, match=r"file name '001_01_01_05_07\.png' \(in .*\) does not parse"
  ):
    vd.parse_multipie_path(bad)
  with pytest.raises(ValueError, match=r"says session01/001/01/14_0.*05_1"):
    vd.parse_multipie_path("data/session01/multiview/001/01/05_1/001_01_01_140_07.png")
  with pytest.raises(ValueError, match="session 01 has no recording 03"):
    vd.parse_multipie_path(_rel(1, 1, 3, "05_1", 7))
  with pytest.raises(ValueError, match="illumination 20 is outside 00..19"):
    vd.parse_multipie_path(_rel(1, 1, 1, "05_1", 20))
  with pytest.raises(ValueError, match="does not have the form"):
    vd.parse_multipie_path("session01/multiview/001/01/05_1/001_01_01_051_07.png")


def test_camera_table_is_15_degree_steps_with_two_raised_cameras():
  table = vd.MULTIPIE_CAMERA_POSES
  assert len(table) == 15
  head = sorted((y, c) for c, (y, p) in table.items() if p == 0)
  np.testing.assert_array_equal([y for y, _ in head], np.arange(-90, 91, 15))
  assert table["05_1"] == (0.0, 0.0) and table["11_0"] == (-90.0, 0.0) and table["24_0"][0] == 90
  assert {c for c, (_, p) in table.items() if p != 0} == {"08_1", "19_1"}
  assert len(set(table.values())) == 15  # an explicit set of distinct (yaw, pitch) pairs


def test_list_pose_labels_and_unknown_camera(tmp_path):
  root = _write(tmp_path / "mpie")
  recs = vd.list_multipie(str(root))
  assert [r.path for r in recs] == sorted(_rel(*s) for s in SPEC)
  # the manual dir may be the data/ folder itself
  assert vd.list_multipie(str(root / "data")) == recs
  poses = vd.multipie_poses(recs)
  want = sorted({(15.0 * (mp.HEAD_HEIGHT_CAMERAS.index(s[3]) - 6), 0.0) if s[3] != "19_1"
                 else (30.0, -15.0) for s in SPEC})  # fmt: skip
  np.testing.assert_array_equal(poses, want)
  assert vd.multipie_pose(recs[0]) == vd.MULTIPIE_CAMERA_POSES[recs[0].camera]
  odd = vd.parse_multipie_path(_rel(1, 1, 1, "99_9", 7))
  with pytest.raises(ValueError, match=r"001_01_01_999_07\.png'?: unknown camera '99_9'"):
    vd.multipie_poses([*recs, odd])
  with pytest.raises(FileNotFoundError, match="no data/ folder"):
    vd.list_multipie(str(tmp_path))


def test_setting2_protocol_is_subject_disjoint_with_first_session_gallery(tmp_path):
  recs = vd.list_multipie(str(_write(tmp_path / "mpie")))
  s = vd.multipie_protocol(recs)
  key = lambda rs: sorted((r.subject, r.session, r.recording, r.camera, r.illumination) for r in rs)  # noqa: E731
  # brute force: neutral, head-height cameras, subjects <= 200
  neutral = {(1, 1), (2, 1), (3, 1), (4, 1), (4, 2)}
  sel = [t for t in SPEC if (t[1], t[2]) in neutral and t[3] in mp.HEAD_HEIGHT_CAMERAS]
  assert key(s["train"]) == sorted(t for t in sel if t[0] <= 200)
  assert key(s["gallery"]) == [(201, 1, 1, "05_1", 7), (346, 2, 1, "05_1", 7)]
  assert key(s["probe"]) == [(201, 1, 1, "09_0", 7), (201, 4, 2, "20_0", 12),
                             (346, 2, 1, "04_1", 7), (346, 3, 1, "12_0", 1)]  # fmt: skip
  train_subj = {r.subject for r in s["train"]}
  assert train_subj.isdisjoint({r.subject for r in s["gallery"] + s["probe"]})
  assert {r.subject for r in s["probe"]} <= {r.subject for r in s["gallery"]}
  wide = vd.multipie_protocol(recs, vd.MultiPieProtocol(frontal_probes=True))
  assert key(wide["probe"]) == sorted(key(s["probe"]) + [(201, 1, 1, "05_1", 0),
                                      (201, 4, 2, "05_1", 7), (346, 3, 1, "05_1", 7)])  # fmt: skip
  assert (201, 1, 1, "05_1", 7) not in key(wide["probe"])
  with pytest.raises(ValueError, match=r"test subject\(s\) \['346'\] have no gallery image"):
    vd.multipie_protocol(recs, vd.MultiPieProtocol(gallery_illumination=0))
  with pytest.raises(ValueError, match="gallery_camera='05_1' must be one of"):
    vd.MultiPieProtocol(cameras=("11_0",))
  with pytest.raises(ValueError, match="expressions"):
    vd.MultiPieProtocol(expressions=("happy",))


def test_multipie_builder(tmp_path):
  root = _write(tmp_path / "mpie")
  kw = dict(data_dir=tmp_path / "s", manual_dir=root)
  train = vd.load("vj_multipie", "train", **kw)
  assert [e["path"].decode() for e in train] == sorted(
    _rel(*t) for t in [SPEC[0], SPEC[1], SPEC[2], SPEC[5]]
  )
  assert [int(e["label"]) for e in train] == [0, 0, 0, 1]
  e = train[1]
  assert (int(e["subject"]), int(e["session"]), int(e["recording"]), int(e["illumination"])) == (
    1, 1, 1, 7)  # fmt: skip
  assert (e["camera"], e["expression"], float(e["yaw"]), float(e["pitch"])) == (
    b"11_0", b"neutral", -90.0, 0.0)  # fmt: skip
  ref = np.asarray(PIL.Image.open(root / _rel(*SPEC[1])))
  np.testing.assert_array_equal(e["image"], ref)
  gallery = vd.load("vj_multipie", "gallery", **kw)
  probe = vd.load("vj_multipie", "probe", **kw)
  assert [int(e["label"]) for e in gallery] == [0, 1]  # test subjects 201, 346
  assert sorted((int(e["subject"]), int(e["label"])) for e in probe) == [
    (201, 0), (201, 0), (346, 1), (346, 1)]  # fmt: skip
  assert sorted(float(e["yaw"]) for e in probe) == [-75.0, -60.0, 30.0, 60.0]


def test_multipie_builder_bad_file_names_the_file(tmp_path):
  root = _write(tmp_path / "mpie", SPEC[:8])
  bad = root / "data/session01/multiview/001/01/05_1/001_01_01_051_7.png"
  PIL.Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(bad)
  with pytest.raises(ValueError, match=r"'001_01_01_051_7\.png'.*does not parse"):
    vd.load("vj_multipie", "train", data_dir=tmp_path / "s", manual_dir=root)
  bad.unlink()
  odd = root / _rel(1, 1, 1, "31_0", 7)
  odd.parent.mkdir(parents=True)
  PIL.Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(odd)
  with pytest.raises(ValueError, match=r"001_01_01_310_07\.png'?: unknown camera '31_0'"):
    vd.load("vj_multipie", "train", data_dir=tmp_path / "s2", manual_dir=root)
