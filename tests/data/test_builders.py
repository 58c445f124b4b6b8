"""Real-format builders on fixture files generated in each dataset's exact on-disk format."""

import os
import pickle

import numpy as np
import PIL.Image
import pytest

import vision_jax.data as vd


def _jpeg(path, seed, size=(12, 10), mode="RGB", fmt="JPEG"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rng = np.random.default_rng(seed)
  shape = (size[0], size[1], 3) if mode == "RGB" else size
  PIL.Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path, format=fmt)


def _pil(path):
  with PIL.Image.open(path) as img:
    return np.asarray(img.convert("RGB"))


# ----------------------------------------------------------------------------- LFW


@pytest.fixture(scope="module")
def lfw_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("lfw_raw")
  files = [("Aaron_A", 1), ("Aaron_A", 2), ("Bob_B", 1), ("Bob_B", 2), ("Bob_B", 3), ("Cy_C", 1)]
  for k, (name, num) in enumerate(files):
    _jpeg(str(d / "lfw" / name / f"{name}_{num:04d}.jpg"), seed=k, size=(10 + k, 9))
  (d / "pairs.txt").write_text(
    "2\t1\nAaron_A\t1\t2\nAaron_A\t1\tBob_B\t3\nBob_B\t1\t3\nCy_C\t1\tAaron_A\t2\n"
  )
  (d / "pairsDevTrain.txt").write_text("1\nBob_B\t2\t3\nAaron_A\t2\tCy_C\t1\n")
  return d, files


def test_read_lfw_pairs_formats(lfw_dir):
  d, _ = lfw_dir
  p = vd.read_lfw_pairs(d / "pairs.txt")
  assert p.name1 == ["Aaron_A", "Aaron_A", "Bob_B", "Cy_C"]
  assert p.name2 == ["Aaron_A", "Bob_B", "Bob_B", "Aaron_A"]
  np.testing.assert_array_equal(p.num1, [1, 1, 1, 1])
  np.testing.assert_array_equal(p.num2, [2, 3, 3, 2])
  np.testing.assert_array_equal(p.is_same, [True, False, True, False])
  np.testing.assert_array_equal(p.fold, [0, 0, 1, 1])
  dev = vd.read_lfw_pairs(d / "pairsDevTrain.txt")
  np.testing.assert_array_equal(dev.is_same, [True, False])


def test_read_lfw_pairs_rejects_bad_count(tmp_path):
  (tmp_path / "pairs.txt").write_text("10\t300\nA\t1\t2\n")
  with pytest.raises(ValueError, match="6000 lines, found 1"):
    vd.read_lfw_pairs(tmp_path / "pairs.txt")


def test_lfw_builder(lfw_dir, tmp_path):
  d, files = lfw_dir
  images = vd.load("vj_lfw/images", "images", data_dir=tmp_path, manual_dir=d)
  assert len(images) == 6
  for k, (name, num) in enumerate(files):  # fixture list is already in sorted order
    ex = images[k]
    np.testing.assert_array_equal(ex["image"], _pil(d / "lfw" / name / f"{name}_{num:04d}.jpg"))
    assert ex["name"].decode() == name and int(ex["num"]) == num
    assert int(ex["label"]) == ["Aaron_A", "Bob_B", "Cy_C"].index(name)
  pairs = vd.load("vj_lfw/pairs", "pairs", data_dir=tmp_path, manual_dir=d)
  got = [(int(e["index1"]), int(e["index2"]), bool(e["is_same"]), int(e["fold"])) for e in pairs]
  assert got == [(0, 1, True, 0), (0, 4, False, 0), (2, 4, True, 1), (5, 1, False, 1)]
  dev = vd.load("vj_lfw/pairs", "dev_train", data_dir=tmp_path, manual_dir=d)
  assert [(int(e["index1"]), int(e["index2"])) for e in dev] == [(3, 4), (1, 5)]


def test_lfw_missing_files(tmp_path):
  (tmp_path / "raw").mkdir()
  with pytest.raises(FileNotFoundError, match=str(tmp_path / "raw" / "pairs.txt")):
    vd.load("vj_lfw/images", "images", data_dir=tmp_path / "s", manual_dir=tmp_path / "raw")


# ----------------------------------------------------------------------------- re-ID


def test_parse_reid_name():
  assert vd.parse_reid_name("0002_c1s1_000451_03.jpg") == (2, 0, 1)
  assert vd.parse_reid_name("-1_c3s2_000001_00.jpg") == (-1, 2, 2)
  assert vd.parse_reid_name("0005_c8_f0046182.jpg") == (5, 7, -1)
  with pytest.raises(ValueError, match="pid"):
    vd.parse_reid_name("Thumbs.db")


@pytest.fixture(scope="module")
def market_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("market_raw")
  layout = {
    "bounding_box_train": [
      "0002_c1s1_000451_03.jpg",
      "0002_c2s1_000301_01.jpg",
      "0007_c3s1_000100_01.jpg",
    ],
    "query": ["0003_c1s1_000010_01.jpg"],
    "bounding_box_test": [
      "-1_c1s1_000001_00.jpg",
      "0000_c6s1_000002_00.jpg",
      "0003_c4s2_000020_02.jpg",
    ],
  }
  k = 0
  for sub, names in layout.items():
    for n in names:
      _jpeg(str(d / sub / n), seed=100 + k, size=(16, 8))
      k += 1
  (d / "bounding_box_test" / "Thumbs.db").write_bytes(b"x")  # ignored: not a .jpg
  return d


def test_market1501_builder(market_dir, tmp_path):
  d = market_dir
  train = vd.load("vj_market1501", "train", data_dir=tmp_path, manual_dir=d)
  assert [int(e["pid"]) for e in train] == [2, 2, 7]
  assert [int(e["label"]) for e in train] == [0, 0, 1]
  assert [int(e["camid"]) for e in train] == [0, 1, 2]
  np.testing.assert_array_equal(
    train[1]["image"], _pil(d / "bounding_box_train" / "0002_c2s1_000301_01.jpg")
  )
  gallery = vd.load("vj_market1501", "gallery", data_dir=tmp_path, manual_dir=d)
  assert [e["filename"].decode() for e in gallery] == [
    "0000_c6s1_000002_00.jpg",
    "0003_c4s2_000020_02.jpg",
  ]
  assert [(int(e["pid"]), int(e["camid"]), int(e["label"])) for e in gallery] == [
    (0, 5, 0),
    (3, 3, 3),
  ]
  query = vd.load("vj_market1501", "query", data_dir=tmp_path, manual_dir=d)
  assert len(query) == 1 and int(query[0]["pid"]) == 3


def test_duke_builder_and_camera_check(tmp_path):
  d = tmp_path / "duke"
  for sub, n in [("bounding_box_train", "0001_c2_f0046182.jpg"), ("query", "0005_c8_f0000001.jpg"),
                 ("bounding_box_test", "0005_c1_f0000002.jpg")]:  # fmt: skip
    _jpeg(str(d / sub / n), seed=1)
  q = vd.load("vj_dukemtmc_reid", "query", data_dir=tmp_path / "s", manual_dir=d)
  assert (int(q[0]["pid"]), int(q[0]["camid"])) == (5, 7)
  # Market has 6 cameras: a c8 file is rejected with its path.
  with pytest.raises(ValueError, match="0005_c8_f0000001.jpg"):
    vd.load("vj_market1501", "query", data_dir=tmp_path / "s2", manual_dir=d)


def test_reid_missing_folder(tmp_path):
  (tmp_path / "m").mkdir()
  with pytest.raises(FileNotFoundError, match=str(tmp_path / "m" / "bounding_box_train")):
    vd.load("vj_market1501", "train", data_dir=tmp_path / "s", manual_dir=tmp_path / "m")


# ----------------------------------------------------------------------------- identity folders


def test_identity_folder_builder(tmp_path):
  d = tmp_path / "CASIA-WebFace"
  _jpeg(str(d / "0000045" / "001.jpg"), 1)
  _jpeg(str(d / "0000045" / "002.jpg"), 2)
  _jpeg(str(d / "0000099" / "001.png"), 3, fmt="PNG")
  _jpeg(str(d / "0000100" / "001.jpg"), 4, mode="L")  # grayscale JPEG -> 3 channels
  (d / "0000100" / "notes.txt").write_text("ignored")
  src = vd.load("vj_identity_folder", "train", data_dir=tmp_path / "s", manual_dir=d)
  assert [int(e["label"]) for e in src] == [0, 0, 1, 2]
  assert [e["identity"].decode() for e in src] == ["0000045", "0000045", "0000099", "0000100"]
  np.testing.assert_array_equal(src[2]["image"], _pil(d / "0000099" / "001.png"))
  np.testing.assert_array_equal(src[3]["image"], _pil(d / "0000100" / "001.jpg"))
  assert src[3]["image"].shape == (12, 10, 3)


# ----------------------------------------------------------------------------- CIFAR-10 / hashing


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("cifar-10-batches-py")
  rng = np.random.default_rng(0)
  batches = {}
  for k, name in enumerate(__import__("vision_jax.data.hashing", fromlist=["x"]).CIFAR10_FILES):
    data = rng.integers(0, 256, (12, 3072), dtype=np.uint8)
    labels = [(k * 12 + i) % 3 for i in range(12)]
    batches[name] = (data, labels)
    with open(d / name, "wb") as f:  # python2-era pickle: bytes keys
      pickle.dump(
        {b"batch_label": name.encode(), b"labels": labels, b"data": data, b"filenames": []},
        f,
        protocol=2,
      )
  return d, batches


def test_read_cifar_batch_pixel_layout(cifar_dir):
  d, batches = cifar_dir
  data, labels = batches["data_batch_3"]
  images, y = vd.read_cifar10_batch(d / "data_batch_3")
  assert images.shape == (12, 32, 32, 3)
  np.testing.assert_array_equal(y, labels)
  for k, r, c, ch in [(0, 0, 0, 0), (5, 31, 2, 1), (11, 7, 30, 2)]:
    assert images[k, r, c, ch] == data[k, ch * 1024 + r * 32 + c]


def test_cifar10_builder_and_hashing_sources(cifar_dir, tmp_path):
  d, batches = cifar_dir
  train = vd.load("vj_cifar10", "train", data_dir=tmp_path, manual_dir=d)
  test = vd.load("vj_cifar10", "test", data_dir=tmp_path, manual_dir=d)
  assert len(train) == 60 and len(test) == 12
  img13, _ = vd.read_cifar10_batch(d / "data_batch_2")
  np.testing.assert_array_equal(train[13]["image"], img13[1])
  assert int(test[4]["label"]) == batches["test_batch"][1][4]
  src = vd.cifar10_hashing_sources(
    data_dir=tmp_path, manual_dir=d, num_query_per_class=2, num_train_per_class=3
  )
  assert (len(src["query"]), len(src["train"]), len(src["database"])) == (6, 9, 72 - 15)
  all_labels = np.concatenate([b[1] for b in batches.values()])
  q_labels = [int(e["label"]) for e in src["query"]]
  assert sorted(q_labels) == [0, 0, 1, 1, 2, 2]
  np.testing.assert_array_equal(q_labels, all_labels[src["query"].indices])


def test_hashing_split_variants():
  labels = np.repeat(np.arange(4), 10)[np.random.default_rng(1).permutation(40)]
  s = vd.hashing_split(labels, num_query_per_class=2, num_train_per_class=3, seed=0)
  assert [len(s[k]) for k in ("query", "train", "database")] == [8, 12, 20]
  for k in s:
    assert np.all(np.diff(s[k]) > 0)
  np.testing.assert_array_equal(np.bincount(labels[s["query"]]), [2, 2, 2, 2])
  np.testing.assert_array_equal(np.bincount(labels[s["train"]]), [3, 3, 3, 3])
  np.testing.assert_array_equal(np.sort(np.concatenate(list(s.values()))), np.arange(40))
  s1 = vd.hashing_split(
    labels, num_query_per_class=2, num_train_per_class=3, seed=0, variant="cifar10-1"
  )
  np.testing.assert_array_equal(
    s1["database"], np.sort(np.concatenate([s["train"], s["database"]]))
  )
  s2 = vd.hashing_split(
    labels, num_query_per_class=2, num_train_per_class=3, seed=0, variant="cifar10-2"
  )
  np.testing.assert_array_equal(s2["database"], s["train"])
  assert not np.array_equal(
    s["query"],
    vd.hashing_split(labels, num_query_per_class=2, num_train_per_class=3, seed=1)["query"],
  )
  with pytest.raises(ValueError, match="needs >= 11"):
    vd.hashing_split(labels, num_query_per_class=5, num_train_per_class=6)


def test_array_hashing_sources():
  labels = np.repeat(np.arange(3), 8)
  images = np.arange(24, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)
  s = vd.array_hashing_sources(images, labels, num_query_per_class=1, num_train_per_class=2, seed=0)
  assert [len(s[k]) for k in ("query", "train", "database")] == [3, 6, 15]
  ex = s["train"][0]
  assert (
    int(ex["image"][0, 0, 0]) == int(s["train"].indices[0])
    and int(ex["label"]) == labels[s["train"].indices[0]]
  )


@pytest.fixture(scope="module")
def nus_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("nuswide")
  rng = np.random.default_rng(0)
  rows = {}
  for split in ("train", "test", "database"):
    lines = []
    for i in range(3):
      rel = f"images/{split}_{i}.jpg"
      _jpeg(str(d / rel), seed=hash((split, i)) % 1000)
      y = rng.integers(0, 2, 21)
      rows.setdefault(split, []).append((rel, y))
      lines.append(("./" if i == 0 else "") + rel + " " + " ".join(map(str, y)))
    (d / f"{split}.txt").write_text("\n".join(lines) + "\n")
  return d, rows


def test_read_image_list(nus_dir, tmp_path):
  d, rows = nus_dir
  paths, labels = vd.read_image_list(d / "test.txt")
  assert paths[1] == rows["test"][1][0] and paths[0] == "./" + rows["test"][0][0]
  np.testing.assert_array_equal(labels, np.stack([y for _, y in rows["test"]]))
  (tmp_path / "bad.txt").write_text("a.jpg 0 1\nb.jpg 0 2\n")
  with pytest.raises(ValueError, match="bad.txt:2"):
    vd.read_image_list(tmp_path / "bad.txt")


def test_hashing_image_list_builder(nus_dir, tmp_path):
  d, rows = nus_dir
  q = vd.load("vj_hashing_image_list/nuswide_21", "query", data_dir=tmp_path, manual_dir=d)
  assert len(q) == 3
  for ex, (rel, y) in zip(q, rows["test"]):
    assert ex["path"].decode() == rel
    assert ex["labels"].dtype == np.bool_ and ex["labels"].shape == (21,)
    np.testing.assert_array_equal(ex["labels"], y.astype(bool))
    np.testing.assert_array_equal(ex["image"], _pil(d / rel))
  with pytest.raises(ValueError, match="21 labels per line, expected 80"):
    vd.load("vj_hashing_image_list/coco", "train", data_dir=tmp_path / "c", manual_dir=d)


# ----------------------------------------------------------------------------- offline sources


def test_offline_sources():
  skdata = pytest.importorskip("skimage.data")
  sk_datasets = pytest.importorskip("sklearn.datasets")
  lfw = vd.lfw_subset_source()
  raw = skdata.lfw_subset()
  assert len(lfw) == 100 and lfw[7]["image"].shape == (25, 25, 1)
  np.testing.assert_array_equal(lfw[7]["image"][..., 0], np.round(raw[7] * 255).astype(np.uint8))
  assert int(lfw[7]["label"]) == 7
  both = vd.lfw_subset_source(include_non_faces=True)
  assert len(both) == 200 and int(both[99]["label"]) == 1 and int(both[100]["label"]) == 0
  digits = vd.digits_source()
  ref = sk_datasets.load_digits()
  assert len(digits) == 1797
  np.testing.assert_array_equal(
    digits[5]["image"][..., 0], np.round(ref.images[5] * 255 / 16).astype(np.uint8)
  )
  assert int(digits[5]["label"]) == ref.target[5]
  imgs = vd.skimage_natural_images(("camera.png", "coffee.png"))
  assert imgs["camera.png"].shape == (512, 512, 3) and imgs["coffee.png"].dtype == np.uint8


def test_cifar10_accepts_the_tarball_layout_and_the_batches_folder(cifar_dir, tmp_path):
  """docs/data.md: the manual dir holds ``cifar-10-batches-py/`` as the official tarball
  unpacks; the folder itself works too, and both build the same dataset."""
  import shutil

  src, _ = cifar_dir
  d = tmp_path / "download" / "cifar-10-batches-py"
  shutil.copytree(src, d)
  outer = vd.load("vj_cifar10", "train", data_dir=tmp_path / "a", manual_dir=d.parent)
  inner = vd.load("vj_cifar10", "train", data_dir=tmp_path / "b", manual_dir=d)
  assert len(outer) == len(inner) == 60
  np.testing.assert_array_equal(outer[7]["image"], inner[7]["image"])
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match=r"data_batch_1.*cifar-10-batches-py"):
    vd.load("vj_cifar10", "train", data_dir=tmp_path / "c", manual_dir=empty)


def test_building_prints_our_lines_not_tfds_download_lines(cifar_dir, tmp_path, capsys):
  d, _ = cifar_dir
  vd.load("vj_cifar10", "test", data_dir=tmp_path, manual_dir=d)
  out = capsys.readouterr().out
  assert f"building vj_cifar10 from {d}" in out
  assert "built vj_cifar10 (test: 12, train: 60 examples)" in out
  assert "Downloading" not in out and "download" not in out.lower()
  vd.load("vj_cifar10", "test", data_dir=tmp_path, manual_dir=d)  # built: silent
  assert capsys.readouterr().out == ""


@pytest.mark.parametrize("name", ["vj_m2fpa", "vj_multipie", "vj_identity_folder"])
def test_manual_dir_that_does_not_exist_is_named(tmp_path, name):
  missing = tmp_path / "nowhere"
  with pytest.raises(FileNotFoundError, match=rf"{name}: manual dir {missing} does not exist"):
    vd.load(name, "train", data_dir=tmp_path / "s", manual_dir=missing)
