"""vj_imagenet_list on a small tree in the TF-NAS list format, and the ImageNet crops vs PIL."""

import io

import numpy as np
import PIL.Image
import pytest

import vision_jax.data as vd

TRAIN_LIST, VAL_LIST = vd.TF_NAS_LISTS


def _jpeg(seed, size=(20, 14), mode="RGB"):
  r = np.random.default_rng(seed)
  channels = {"RGB": 3, "CMYK": 4}.get(mode)
  shape = (size[1], size[0]) + ((channels,) if channels else ())
  buf = io.BytesIO()
  PIL.Image.fromarray(r.integers(0, 256, shape, dtype=np.uint8), mode).save(buf, format="JPEG")
  return buf.getvalue()


def _tree(root, train_lines=None, val_lines=None, with_val=True):
  """3 classes x 3 train images; class c's folder is wnid ``n0<2-c>`` (labels not in folder order)."""
  wnids = ["n02", "n01", "n00"]
  rows = []
  for c, w in enumerate(wnids):
    for j in range(3):
      p = root / "train" / w / f"{w}_{j}.JPEG"
      p.parent.mkdir(parents=True, exist_ok=True)
      mode = "L" if (c, j) == (1, 0) else ("CMYK" if (c, j) == (2, 1) else "RGB")
      p.write_bytes(_jpeg(10 * c + j, mode=mode))
      rows.append((f"{w}/{w}_{j}.JPEG", c))
    if with_val:
      v = root / "val" / w / f"ILSVRC2012_val_{c:08d}.JPEG"
      v.parent.mkdir(parents=True, exist_ok=True)
      v.write_bytes(_jpeg(100 + c, size=(17, 23)))
  if train_lines is None:
    train_lines = [f"{p} {c}" for p, c in rows if not p.endswith("_2.JPEG")]
  if val_lines is None:
    val_lines = [f"./{p} {c}" for p, c in rows if p.endswith("_2.JPEG")]
  (root / TRAIN_LIST).write_text("\n".join(train_lines) + "\n")
  (root / VAL_LIST).write_text("\n".join(val_lines) + "\n\n")
  return wnids


def _rgb(path):
  return np.asarray(PIL.Image.open(path).convert("RGB"))


def test_splits_pixels_and_labels_match_pil_and_the_lists(tmp_path):
  raw = tmp_path / "raw"
  wnids = _tree(raw)
  store = tmp_path / "store"
  tr = vd.load("vj_imagenet_list", "search_train", data_dir=store, manual_dir=raw)
  va = vd.load("vj_imagenet_list", "search_val", data_dir=store)
  te = vd.load("vj_imagenet_list", "val", data_dir=store)
  assert (len(tr), len(va), len(te)) == (6, 3, 3)
  want_tr = [(f"train/{w}/{w}_{j}.JPEG", c) for c, w in enumerate(wnids) for j in (0, 1)]
  for i, (rel, c) in enumerate(want_tr):
    ex = tr[i]
    assert ex["path"].decode() == rel and int(ex["label"]) == c
    got = np.asarray(ex["image"])
    assert got.shape[-1] == 3
    np.testing.assert_array_equal(got, _rgb(raw / rel))  # grey and CMYK files come back as RGB
  for c, w in enumerate(wnids):
    assert int(va[c]["label"]) == c and va[c]["path"].decode() == f"train/{w}/{w}_2.JPEG"
    np.testing.assert_array_equal(va[c]["image"], _rgb(raw / "train" / w / f"{w}_2.JPEG"))
    rel = f"val/{w}/ILSVRC2012_val_{c:08d}.JPEG"
    assert int(te[c]["label"]) == c and te[c]["path"].decode() == rel
    np.testing.assert_array_equal(te[c]["image"], _rgb(raw / rel))


def test_other_list_paths_and_no_val_folder(tmp_path):
  raw = tmp_path / "raw"
  _tree(raw, with_val=False)
  lists = tmp_path / "lists"
  lists.mkdir()
  (lists / "a.txt").write_text("train/n01/n01_0.JPEG 1\nn02/n02_1.JPEG 0\n")
  (lists / "b.txt").write_text("n01/n01_2.JPEG 1\n")
  kw = dict(train_list=str(lists / "a.txt"), val_list=str(lists / "b.txt"))
  store = tmp_path / "store"
  tr = vd.load(
    "vj_imagenet_list", "search_train", data_dir=store, manual_dir=raw, builder_kwargs=kw
  )
  assert [int(e["label"]) for e in tr] == [1, 0]
  np.testing.assert_array_equal(tr[0]["image"], _rgb(raw / "train/n01/n01_0.JPEG"))
  with pytest.raises(ValueError, match=r"Unknown split 'val'"):  # no val/ folder, no split
    vd.load("vj_imagenet_list", "val", data_dir=store)


def _build(tmp_path, **tree_kw):
  raw = tmp_path / "raw"
  _tree(raw, **tree_kw)
  return vd.load("vj_imagenet_list", "search_train", data_dir=tmp_path / "s", manual_dir=raw)


def test_missing_listed_file_names_list_and_line(tmp_path):
  lines = ["n02/n02_0.JPEG 0", "n01/n01_0.JPEG 1", "n01/n01_9.JPEG 1", "n00/n00_0.JPEG 2"]
  with pytest.raises(FileNotFoundError, match=rf"{TRAIN_LIST} line 3 lists .*n01_9\.JPEG"):
    _build(tmp_path, train_lines=lines)


@pytest.mark.parametrize(
  "lines, match",
  [
    (["n02/n02_0.JPEG 0", "n01/n01_0.JPEG"], r":2: expected '<relative/path> <non-negative"),
    (["n02/n02_0.JPEG 0", "n01/n01_0.JPEG -1"], r":2: expected"),
    (["n02/n02_0.JPEG 0", "n01/n01_0.JPEG one"], r":2: expected"),
    (["n02/n02_0.JPEG 0", "n00/n00_0.JPEG 2"], r"labels must be 0..C-1 .*first: \[1\]"),
    (["n02/n02_0.JPEG 0", "n02/n02_1.JPEG 1"], r"folder 'n02' is listed with labels 0 and 1"),
  ],
)
def test_bad_train_lists(tmp_path, lines, match):
  with pytest.raises(ValueError, match=match):
    _build(tmp_path, train_lines=lines)


def test_val_list_label_must_match_the_train_list(tmp_path):
  with pytest.raises(ValueError, match=rf"{VAL_LIST}:1: .* label 2, but the train list gives"):
    _build(tmp_path, val_lines=["n02/n02_2.JPEG 2"])


def test_val_folder_must_hold_every_class(tmp_path):
  raw = tmp_path / "raw"
  _tree(raw)
  for f in (raw / "val" / "n01").iterdir():
    f.unlink()
  (raw / "val" / "n01").rmdir()
  with pytest.raises(FileNotFoundError, match=r"val/n01 is missing"):
    vd.load("vj_imagenet_list", "val", data_dir=tmp_path / "s", manual_dir=raw)


# ------------------------------------------------------------------------------------ transforms
def test_random_resized_box_bounds_and_fallback():
  rng = np.random.default_rng(0)
  for _ in range(200):
    top, left, h, w = vd.random_resized_box(60, 90, rng)
    assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 90
    assert 0.08 * 5400 * 0.8 <= h * w <= 5400
    assert 3 / 4 * 0.8 <= w / h <= 4 / 3 * 1.25  # rounding slack
  # a 4 x 100 strip: no try fits, fallback = full height, width 4 * 4/3 = 5, centred.
  assert vd.random_resized_box(4, 100, rng) == (0, (100 - 5) // 2, 4, 5)
  assert vd.random_resized_box(100, 4, rng) == ((100 - 5) // 2, 0, 5, 4)  # h = round(4 / (3/4))


def test_random_resized_crop_is_pil_resize_of_the_box():
  img = np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)
  out = vd.random_resized_crop(img, np.random.default_rng(7), 32)
  top, left, h, w = vd.random_resized_box(50, 70, np.random.default_rng(7))
  want = PIL.Image.fromarray(img[top : top + h, left : left + w]).resize(
    (32, 32), PIL.Image.BILINEAR
  )
  assert out.shape == (32, 32, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out, np.asarray(want))
  grey = vd.random_resized_crop(img[..., :1], np.random.default_rng(7), 32)
  np.testing.assert_array_equal(grey[..., 0], grey[..., 2])


def test_resize_center_crop_against_pil_by_hand():
  img = np.random.default_rng(2).integers(0, 256, (30, 45, 3), dtype=np.uint8)  # H 30, W 45
  out = vd.resize_center_crop(img, size=16, resize=20)
  # shorter side (H) 30 -> 20, W -> int(20 * 45 / 30) = 30; crop rows 2..18, cols 7..23
  r = np.asarray(PIL.Image.fromarray(img).resize((30, 20), PIL.Image.BILINEAR))
  np.testing.assert_array_equal(out, r[2:18, 7:23])
  with pytest.raises(ValueError, match="size=32 must be <= resize=20"):
    vd.resize_center_crop(img, size=32, resize=20)
