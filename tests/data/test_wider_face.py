"""WIDER FACE annotations and builder on fixture files written in the official layout."""

import io

import numpy as np
import PIL.Image
import pytest

import vision_jax.data as vd

ANN = """0--Parade/0_Parade_marchingband_1_5.jpg
2
10 12 20 24 0 0 0 0 0 0
40 5 8 9 2 1 0 0 1 2
1--Handshaking/1_Handshaking_1_7.jpg
0
0 0 0 0 0 0 0 0 0 0
1--Handshaking/1_Handshaking_1_9.jpg
1
60 50 10 0 1 0 1 1 2 0
"""


def _jpeg(h, w, seed):
  img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8)
  buf = io.BytesIO()
  PIL.Image.fromarray(img).save(buf, format="JPEG")
  return buf.getvalue()


@pytest.fixture()
def wider_dir(tmp_path):
  d = tmp_path / "wider"
  (d / "wider_face_split").mkdir(parents=True)
  (d / "wider_face_split" / "wider_face_val_bbx_gt.txt").write_text(ANN)
  for k, name in enumerate(
    ["0--Parade/0_Parade_marchingband_1_5.jpg", "1--Handshaking/1_Handshaking_1_7.jpg",
     "1--Handshaking/1_Handshaking_1_9.jpg"]
  ):  # fmt: skip
    p = d / "WIDER_val" / "images" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(_jpeg(48 + 8 * k, 64, k))
  return d


def test_read_annotations(wider_dir):
  ims = vd.read_wider_face_annotations(wider_dir / "wider_face_split/wider_face_val_bbx_gt.txt")
  assert [im.name for im in ims] == [
    "0--Parade/0_Parade_marchingband_1_5.jpg",
    "1--Handshaking/1_Handshaking_1_7.jpg",
    "1--Handshaking/1_Handshaking_1_9.jpg",
  ]
  np.testing.assert_array_equal(ims[0].boxes, [[10, 12, 20, 24], [40, 5, 8, 9]])
  np.testing.assert_array_equal(ims[0].flags[1], [2, 1, 0, 0, 1, 2])
  assert ims[1].boxes.shape == (0, 4) and ims[1].flags.shape == (0, 6)  # 0-face line consumed
  np.testing.assert_array_equal(ims[2].flags[0], [1, 0, 1, 1, 2, 0])


@pytest.mark.parametrize(
  "text,line",
  [
    ("0--Parade/a.jpg\ntwo\n", 2),
    ("0--Parade/a.jpg\n1\n1 2 x 4 0 0 0 0 0 0\n", 3),
    ("0--Parade/a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n", 4),
    ("no_image_here\n1\n", 1),
  ],
)
def test_bad_annotation_lines(tmp_path, text, line):
  p = tmp_path / "ann.txt"
  p.write_text(text)
  with pytest.raises(ValueError, match=f"ann.txt:{line}:"):
    vd.read_wider_face_annotations(p)


def test_builder(wider_dir, tmp_path, caplog):
  with caplog.at_level("WARNING"):
    val = vd.load("vj_wider_face", "validation", data_dir=tmp_path / "s", manual_dir=wider_dir)
  assert len(val) == 3
  ex = val[0]
  assert ex["image"].shape == (48, 64, 3)
  assert ex["event"] in (b"0--Parade", "0--Parade")
  np.testing.assert_array_equal(ex["boxes"], [[10, 12, 20, 24], [40, 5, 8, 9]])
  np.testing.assert_array_equal(ex["pose"], [0, 2])
  assert val[1]["boxes"].shape == (0, 4)
  np.testing.assert_array_equal(val[2]["invalid"], [1])
  assert "1 boxes with non-positive width or height" in caplog.text


def test_missing_image(wider_dir, tmp_path):
  (wider_dir / "WIDER_val/images/1--Handshaking/1_Handshaking_1_9.jpg").unlink()
  with pytest.raises(FileNotFoundError, match="1_Handshaking_1_9.jpg"):
    vd.load("vj_wider_face", "validation", data_dir=tmp_path / "s", manual_dir=wider_dir)


def test_sanitize_boxes():
  boxes = np.array([[10, 10, 20, 20], [-5, 40, 20, 30], [60, 60, 10, 0], [95, 5, 20, 10]])
  out, kept, counts = vd.sanitize_boxes(boxes, height=64, width=100)
  np.testing.assert_array_equal(kept, [True, True, False, True])
  np.testing.assert_array_equal(out, [[10, 10, 30, 30], [0, 40, 15, 64], [95, 5, 100, 15]])
  assert counts == {"clipped": 2, "dropped": 1}
