"""CASIA NIR-VIS 2.0 / CUFSF-style protocol lists and the vj_hfr builder on generated fixtures."""

import os

import numpy as np
import PIL.Image
import pytest

from vision_jax import data as vd


def _img(path, seed, size=(10, 12), mode="L"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  r = np.random.default_rng(seed)
  arr = r.integers(0, 255, (size[1], size[0]) + ((3,) if mode == "RGB" else ()), dtype=np.uint8)
  PIL.Image.fromarray(arr).save(path)
  return np.asarray(PIL.Image.fromarray(arr).convert("L"))


def _casia(root, folds=(1, 2)):
  """s1/{NIR,VIS}/<subject>/NNN.{bmp,jpg}; fold k tests subjects {k, k+1}, trains the others."""
  subjects = [f"{10001 + i}" for i in range(4)]
  pixels = {}
  for i, s in enumerate(subjects):
    for j in range(2):
      pixels[f"s1/NIR/{s}/{j:03d}.bmp"] = _img(f"{root}/s1/NIR/{s}/{j:03d}.bmp", 10 * i + j)
      pixels[f"s1/VIS/{s}/{j:03d}.jpg"] = _img(f"{root}/s1/VIS/{s}/{j:03d}.jpg", 50 + i, mode="RGB")
  os.makedirs(f"{root}/protocols", exist_ok=True)
  for k in folds:
    test = subjects[k - 1 : k + 1]
    train = [s for s in subjects if s not in test]

    def w(name, lines):
      with open(f"{root}/protocols/{name}_{k}.txt", "w", newline="\r\n") as f:
        f.write("\n".join(lines) + "\n")

    w(
      "nir_train", [f"s1\\NIR\\{s}\\{j:03d}.jpg" for s in train for j in range(2)]
    )  # .jpg: bmp on disk
    w("vis_train", [f"s1\\VIS\\{s}\\{j:03d}.jpg" for s in train for j in range(2)])
    w("vis_gallery", [f"s1\\VIS\\{s}\\000.jpg" for s in test])
    w("nir_probe", [f"s1\\NIR\\{s}\\{j:03d}.bmp" for s in test for j in range(2)])
  return subjects, pixels


def test_read_fold_casia_layout(tmp_path):
  subjects, _ = _casia(str(tmp_path))
  fold = vd.read_hfr_fold(str(tmp_path), 1)
  assert [r.subject for r in fold["gallery"]] == subjects[:2]
  assert [r.subject for r in fold["probe"]] == [subjects[0]] * 2 + [subjects[1]] * 2
  assert {r.modality for r in fold["probe"]} == {0} and {r.modality for r in fold["gallery"]} == {1}
  assert len(fold["train"]) == 8 and {r.subject for r in fold["train"]} == set(subjects[2:])
  assert fold["train"][0].path.endswith("s1/NIR/10003/000.bmp")  # extension fallback


def test_missing_file_names_list_and_line(tmp_path):
  _casia(str(tmp_path))
  with open(tmp_path / "protocols" / "nir_probe_1.txt", "a") as f:
    f.write("s1\\NIR\\10001\\077.bmp\n")
  with pytest.raises(FileNotFoundError, match=r"nir_probe_1.txt:5: names 's1/NIR/10001/077.bmp'"):
    vd.read_hfr_fold(str(tmp_path), 1)


def test_protocol_errors(tmp_path):
  _casia(str(tmp_path))
  with open(tmp_path / "protocols" / "nir_probe_1.txt", "a") as f:
    f.write("s1\\NIR\\10004\\000.bmp\n")
  with pytest.raises(ValueError, match=r"nir_probe_1.txt:5: probe subject '10004' is not in"):
    vd.read_hfr_fold(str(tmp_path), 1)
  with pytest.raises(ValueError, match="folds 1..10"):
    vd.protocol_files("casia_nir_vis_2", 11)
  with pytest.raises(ValueError, match="unknown HFR protocol"):
    vd.protocol_files("oulu", 1)
  with pytest.raises(FileNotFoundError, match="nir_train_3.txt does not exist"):
    vd.read_hfr_fold(str(tmp_path), 3)


def test_cufsf_lists_with_labels(tmp_path):
  root = str(tmp_path)
  for i, s in enumerate(("a", "b", "c")):
    _img(f"{root}/photos/{s}.png", i)
    _img(f"{root}/sketches/{s}.png", 10 + i)
  os.makedirs(f"{root}/protocols")
  for name, lines in {
    "sketch_train_1": ["sketches/c.png 7"],
    "photo_train_1": ["photos/c.png 7"],
    "photo_gallery_1": ["photos/a.png 1", "photos/b.png 2"],
    "sketch_probe_1": ["sketches/a.png 1", "sketches/b.png 2"],
  }.items():
    with open(f"{root}/protocols/{name}.txt", "w") as f:
      f.write("\n".join(lines) + "\n")
  fold = vd.read_hfr_fold(root, 1, name="cufsf")
  assert [r.subject for r in fold["probe"]] == ["1", "2"]
  src = vd.load("vj_hfr/cufsf", "probe_1", data_dir=tmp_path / "store", manual_dir=root)
  assert len(src) == 2 and src[0]["image"].shape == (12, 10, 1)


def test_builder_matches_files(tmp_path):
  subjects, pixels = _casia(str(tmp_path / "raw"))
  store = tmp_path / "store"
  probe = vd.load("vj_hfr/casia_nir_vis_2", "probe_2", data_dir=store, manual_dir=tmp_path / "raw")
  assert len(probe) == 4
  ex = probe[0]
  assert ex["modality"] == 0 and ex["path"] == b"s1/NIR/10002/000.bmp"
  np.testing.assert_array_equal(ex["image"][..., 0], pixels["s1/NIR/10002/000.bmp"])
  gallery = vd.load("vj_hfr/casia_nir_vis_2", "gallery_2", data_dir=store)
  train = vd.load("vj_hfr/casia_nir_vis_2", "train_1", data_dir=store)
  assert len(gallery) == 2 and len(train) == 8
  # labels index the sorted subjects of all lists, consistent across splits
  assert [int(gallery[i]["label"]) for i in range(2)] == [1, 2]


def test_builder_missing_lists(tmp_path):
  os.makedirs(tmp_path / "raw" / "protocols")
  with pytest.raises(FileNotFoundError, match="missing protocol list"):
    vd.load(
      "vj_hfr/casia_nir_vis_2", "probe_1", data_dir=tmp_path / "s", manual_dir=tmp_path / "raw"
    )
