"""tf_nas data.name='imagenet100': make_sources on a tiny tree in the TF-NAS list format yields
search and eval batches of the configured size (no search: the supernet compiles for minutes)."""

import io

import numpy as np
import PIL.Image
import pytest

import vision_jax.data as vd
from experiments.tf_nas import train
from experiments.tf_nas.config import get_config


def _tree(root, n_classes=3):
  r = np.random.default_rng(0)
  lines = {"train": [], "val": []}
  for c in range(n_classes):
    w = f"n{c:08d}"
    for j in range(3):
      for split, sub in (("train", "train"), ("val", "val")):
        if split == "val" and j:
          continue
        p = root / sub / w / f"{w}_{j}.JPEG"
        p.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        hw = (int(r.integers(30, 60)), int(r.integers(30, 60)), 3)
        PIL.Image.fromarray(r.integers(0, 256, hw, dtype=np.uint8)).save(buf, format="JPEG")
        p.write_bytes(buf.getvalue())
      lines["val" if j == 2 else "train"].append(f"{w}/{w}_{j}.JPEG {c}")
  for s, name in zip(("train", "val"), vd.TF_NAS_LISTS):
    (root / name).write_text("\n".join(lines[s]) + "\n")


def _cfg(tmp_path, **space):
  cfg = get_config("paper")
  cfg.data.imagenet100_dir = str(tmp_path / "imagenet")
  cfg.data.data_dir = str(tmp_path / "store")
  cfg.data.eval_resize = 36
  cfg.space.image_size = 32
  cfg.space.num_classes = space.get("num_classes", 3)
  return cfg


def test_imagenet100_sources_give_fixed_size_batches(tmp_path):
  _tree(tmp_path / "imagenet")
  cfg = _cfg(tmp_path)
  tr, va, te = train.make_sources(cfg)
  assert (len(tr), len(va), len(te)) == (6, 3, 3)
  aug = train.train_transform(cfg)
  batches = train.PairedBatches(
    vd.train_dataset(tr, global_batch_size=4, seed=0, transform=aug),
    vd.train_dataset(va, global_batch_size=4, seed=1, transform=aug),
  )
  b = batches[0]
  for key in ("train", "val"):
    x, y = b[key]["image"], b[key]["label"]
    assert x.shape == (4, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int32
    assert set(y.tolist()) <= {0, 1, 2}
  # the train labels are the list's labels of the examples the stream picked
  labels = sorted(int(e["label"]) for e in tr)
  assert labels == [0, 0, 1, 1, 2, 2]
  (ev,) = list(vd.eval_batches(te, global_batch_size=4))
  assert ev["image"].shape == (4, 32, 32, 3) and ev["mask"].tolist() == [True] * 3 + [False]
  np.testing.assert_array_equal(ev["label"][:3], [0, 1, 2])
  np.testing.assert_array_equal(
    ev["image"][0], vd.resize_center_crop(te.source[0]["image"], 32, 36)
  )


def test_imagenet100_bad_config(tmp_path):
  with pytest.raises(FileNotFoundError, match="data.imagenet100_dir="):
    train.make_sources(_cfg(tmp_path))
  _tree(tmp_path / "imagenet")
  with pytest.raises(ValueError, match="has 3 classes but space.num_classes=100"):
    train.make_sources(_cfg(tmp_path, num_classes=100))
