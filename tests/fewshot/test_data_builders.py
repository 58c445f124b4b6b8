"""miniImageNet / CUB-200-2011 / Omniglot builders on fixture files in each on-disk format, and
the embedded few-shot set."""

import os

import numpy as np
import PIL.Image
import pytest

import vision_jax.data as vd


def _img(path, seed, size=(20, 16), mode="RGB", fmt="JPEG"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  r = np.random.default_rng(seed)
  shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
  PIL.Image.fromarray(r.integers(0, 256, shape, dtype=np.uint8), mode).save(path, format=fmt)


def _ravi(tmp_path):
  d = tmp_path / "mini"
  rows = {
    "train.csv": [("n02", 3), ("n01", 2)],
    "val.csv": [("n05", 2)],
    "test.csv": [("n09", 2), ("n07", 2)],
  }
  k = 0
  for csv_name, classes in rows.items():
    lines = ["filename,label"]
    for wnid, n in classes:
      for j in range(n):
        fn = f"{wnid}{j + 1:08d}.jpg"
        _img(str(d / "images" / fn), seed=k, size=(20 + k, 16))
        k += 1
        lines.append(f"{fn},{wnid}")
    (d / csv_name).write_text("\n".join(lines) + "\n")
  return d


def test_read_ravi_csv_and_bad_header(tmp_path):
  d = _ravi(tmp_path)
  names, labels = vd.read_ravi_csv(d / "train.csv")
  assert names[0] == "n0200000001.jpg" and labels == ["n02"] * 3 + ["n01"] * 2
  (tmp_path / "bad.csv").write_text("file,class\na.jpg,n1\n")
  with pytest.raises(ValueError, match=r"bad.csv:1: expected header 'filename,label'"):
    vd.read_ravi_csv(tmp_path / "bad.csv")
  (tmp_path / "bad2.csv").write_text("filename,label\na.jpg\n")
  with pytest.raises(ValueError, match=r"bad2.csv:2: expected"):
    vd.read_ravi_csv(tmp_path / "bad2.csv")


def test_miniimagenet_builder(tmp_path):
  d = _ravi(tmp_path)
  base = vd.load("vj_mini_imagenet", "base", data_dir=tmp_path / "tfds", manual_dir=d)
  novel = vd.load("vj_mini_imagenet", "novel", data_dir=tmp_path / "tfds", manual_dir=d)
  assert len(base) == 5 and len(novel) == 4
  ex = base[0]
  assert ex["image"].shape == (84, 84, 3) and ex["image"].dtype == np.uint8
  # Labels: 0-based in sorted wnid order within the split (n01 -> 0, n02 -> 1).
  assert [int(base[i]["label"]) for i in range(5)] == [1, 1, 1, 0, 0]
  assert base[3]["class_name"] in (b"n01", "n01")
  with PIL.Image.open(d / "images" / "n0200000001.jpg") as im:
    ref = np.asarray(im.convert("RGB").resize((84, 84), PIL.Image.BILINEAR))
  np.testing.assert_array_equal(ex["image"], ref)


def test_miniimagenet_missing_files(tmp_path):
  (tmp_path / "train.csv").write_text("filename,label\n")
  with pytest.raises(FileNotFoundError, match=r"val.csv.*test.csv"):
    vd.load("vj_mini_imagenet", "base", data_dir=tmp_path / "tfds", manual_dir=tmp_path)


def _cub(tmp_path):
  d = tmp_path / "CUB_200_2011"
  names = [f"{i + 1:03d}.Bird_{chr(65 + i)}" for i in range(8)]
  (d).mkdir()
  (d / "classes.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)))
  imgs, labs, k = [], [], 1
  for i, n in enumerate(names):
    for j in range(2):
      rel = f"{n}/{n}_{j}.jpg"
      _img(str(d / "images" / rel), seed=k, mode="L" if k == 3 else "RGB")
      imgs.append(f"{k} {rel}")
      labs.append(f"{k} {i + 1}")
      k += 1
  (d / "images.txt").write_text("\n".join(imgs) + "\n")
  (d / "image_class_labels.txt").write_text("\n".join(labs) + "\n")
  return d, names


def test_cub_closerlook_split_rule():
  got = [vd.cub_closerlook_split(i) for i in range(200)]
  assert got.count("base") == 100 and got.count("val") == 50 and got.count("novel") == 50
  assert got[:8] == ["base", "val", "base", "novel"] * 2


def test_cub_builder(tmp_path):
  d, names = _cub(tmp_path)
  paths, ids, cls = vd.read_cub_metadata(d)
  assert len(paths) == 16 and cls == names and list(ids[:4]) == [0, 0, 1, 1]
  expect = {"base": [0, 2, 4, 6], "val": [1, 5], "novel": [3, 7]}
  for split, classes in expect.items():
    src = vd.load("vj_cub_fewshot", split, data_dir=tmp_path / "tfds", manual_dir=d)
    assert len(src) == 2 * len(classes)
    got_names = sorted({src[i]["class_name"] for i in range(len(src))})
    got_names = [n.decode() if isinstance(n, bytes) else n for n in got_names]
    assert got_names == [names[c] for c in classes]
    labels = sorted({int(src[i]["label"]) for i in range(len(src))})
    assert labels == list(range(len(classes)))
  gray = vd.load("vj_cub_fewshot", "val", data_dir=tmp_path / "tfds", manual_dir=d)[0]
  assert gray["image"].shape == (16, 20, 3)  # the grayscale fixture (image 3) is stored as RGB


def test_cub_bad_metadata(tmp_path):
  d, _ = _cub(tmp_path)
  (d / "image_class_labels.txt").write_text("1 1\n2 x\n")
  with pytest.raises(ValueError, match=r"image_class_labels.txt:2: expected '<id> <class id>'"):
    vd.read_cub_metadata(d)


def test_omniglot_builder_rotations(tmp_path):
  d = tmp_path / "omniglot"
  k = 0
  for folder, chars in (
    ("images_background", [("Alpha", 2)]),
    ("images_evaluation", [("Beta", 1)]),
  ):
    for alpha, n in chars:
      for c in range(n):
        for j in range(2):
          p = d / folder / alpha / f"character{c + 1:02d}" / f"{k:04d}_{j + 1:02d}.png"
          _img(str(p), seed=k, size=(105, 105), mode="L", fmt="PNG")
          k += 1
  src = vd.load("vj_omniglot", "background", data_dir=tmp_path / "tfds", manual_dir=d)
  assert len(src) == 2 * 2 * 4
  labels = [int(src[i]["label"]) for i in range(len(src))]
  assert sorted(set(labels)) == list(range(8))  # 2 characters x 4 rotations
  first = d / "images_background" / "Alpha" / "character01" / "0000_01.png"
  with PIL.Image.open(first) as im:
    ref = np.asarray(im.convert("L"))
  for r in range(4):
    np.testing.assert_array_equal(src[r]["image"][..., 0], np.rot90(ref, r))
    assert labels[r] == r
  ev = vd.load("vj_omniglot", "evaluation", data_dir=tmp_path / "tfds", manual_dir=d)
  assert len(ev) == 8 and {int(ev[i]["label"]) for i in range(8)} == {0, 1, 2, 3}


def test_embedded_fewshot_split_and_determinism():
  a = vd.embedded_fewshot(num_glyph_classes=8, photo_grid=1, per_class=3, size=16, seed=0)
  b = vd.embedded_fewshot(num_glyph_classes=8, photo_grid=1, per_class=3, size=16, seed=0)
  np.testing.assert_array_equal(a.images, b.images)
  n = 8 + 16  # glyphs + one region per scikit-image photo
  assert a.images.shape == (n * 3, 16, 16, 1) and len(a.class_names) == n
  all_ids = sum((a.splits[s] for s in ("base", "val", "novel")), [])
  assert sorted(all_ids) == list(range(n))  # disjoint and complete
  for s in ("base", "val", "novel"):  # stratified: every split has both kinds
    kinds = {a.class_names[c].startswith("glyph") for c in a.splits[s]}
    assert kinds == {True, False}, s
  # Samples of a class differ (augmentation), images are not blank.
  assert not np.array_equal(a.images[0], a.images[1]) and a.images.std() > 10
  with pytest.raises(ValueError, match="fractions"):
    vd.embedded_fewshot(fractions=(0.5, 0.5, 0.5))
