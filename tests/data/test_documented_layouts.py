"""Every builder builds from exactly the on-disk layout docs/data.md documents for it.

For each registered builder, a writer here puts a small dataset at paths that the documented
layout block allows (and nowhere else); the test checks each written path against the block's
patterns, checks that every required pattern is used, then builds the dataset from that tree and
checks the example counts. A layout changed in the code but not in the docs (or the reverse) fails.
"""

import gzip
import io
import os
import pathlib
import pickle
import re
import struct

import numpy as np
import PIL.Image
import pytest

import vision_jax.data as vd
from vision_jax.data.builders import ManualDirBuilder

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "data.md"


def _documented_layouts() -> dict[str, list[tuple[str, bool]]]:
  """``{builder: [(pattern, optional)]}`` from the ```` ```layout ```` blocks under ``### vj_*``."""
  text = DOC.read_text()
  out = {}
  for m in re.finditer(r"^### (vj_\w+)\n```layout\n(.*?)^```", text, re.M | re.S):
    rows = []
    for line in m.group(2).splitlines():
      pat, _, comment = line.partition("#")
      if pat.strip():
        rows.append((pat.strip(), comment.strip() == "optional"))
    out[m.group(1)] = rows
  return out


def _pattern_regex(pattern: str) -> re.Pattern:
  """``<x>`` one component (or part of one, possibly empty), ``{a,b}`` alternatives, ``{1..5}`` integers, ``*`` within a component,
  ``**/`` any folders."""
  out, i = "", 0
  while i < len(pattern):
    c = pattern[i]
    if c == "<":
      j = pattern.index(">", i)
      out, i = out + r"[^/]*?", j + 1
    elif c == "{":
      j = pattern.index("}", i)
      body = pattern[i + 1 : j]
      if re.fullmatch(r"\d+\.\.\d+", body):
        lo, hi = map(int, body.split(".."))
        alts = [str(k) for k in range(lo, hi + 1)]
      else:
        alts = body.split(",")
      out, i = out + "(?:" + "|".join(map(re.escape, alts)) + ")", j + 1
    elif pattern.startswith("**/", i):
      out, i = out + r"(?:[^/]+/)*", i + 3
    elif c == "*":
      out, i = out + r"[^/]*", i + 1
    else:
      out, i = out + re.escape(c), i + 1
  return re.compile(out + r"\Z")


def test_pattern_syntax():
  r = _pattern_regex("s{1..4}/{NIR,VIS}/<subject>/<image>.{bmp,jpg}")
  assert r.match("s3/NIR/20001/001.bmp") and r.match("s1/VIS/x/y.jpg")
  assert not r.match("s5/NIR/20001/001.bmp") and not r.match("s1/NIR/a/b/c.jpg")
  assert not r.match("s1/NIR/20001/001.png")
  assert _pattern_regex("character<nn>/*.png").match("character07/0001_01.png")
  assert _pattern_regex("**/<image>.jpg").match("a/b/c.jpg") and _pattern_regex("**/<i>.jpg").match(
    "c.jpg"
  )


# ------------------------------------------------------------------------------------ file makers


def _image(seed, size=(12, 10), mode="RGB", fmt="JPEG"):
  r = np.random.default_rng(seed)
  shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
  buf = io.BytesIO()
  PIL.Image.fromarray(r.integers(0, 256, shape, dtype=np.uint8), mode).save(buf, format=fmt)
  return buf.getvalue()


def _idx_gz(array):
  header = (
    b"\x00\x00\x08" + bytes([array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
  )
  return gzip.compress(header + array.astype(np.uint8).tobytes())


def _fashion_mnist():
  r = np.random.default_rng(0)
  files = {}
  for name, n in (("train", 5), ("t10k", 3)):
    files[f"{name}-images-idx3-ubyte.gz"] = _idx_gz(r.integers(0, 256, (n, 28, 28)))
    files[f"{name}-labels-idx1-ubyte.gz"] = _idx_gz(r.integers(0, 10, n))
  return files, [("vj_fashion_mnist", "train", 5), ("vj_fashion_mnist", "test", 3)]


def _cifar10():
  r = np.random.default_rng(0)
  files = {}
  for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    d = {b"labels": [0, 1], b"data": r.integers(0, 256, (2, 3072), dtype=np.uint8)}
    files[f"cifar-10-batches-py/{name}"] = pickle.dumps(d, protocol=2)
  return files, [("vj_cifar10", "train", 10), ("vj_cifar10", "test", 2)]


def _lfw():
  files = {f"lfw/{n}/{n}_{k:04d}.jpg": _image(i) for i, (n, k) in enumerate(
    [("Ann_A", 1), ("Ann_A", 2), ("Bo_B", 1), ("Bo_B", 2)])}  # fmt: skip
  files["pairs.txt"] = b"1\t1\nAnn_A\t1\t2\nAnn_A\t1\tBo_B\t2\n"
  files["pairsDevTrain.txt"] = b"1\nBo_B\t1\t2\nAnn_A\t2\tBo_B\t1\n"
  return files, [("vj_lfw/images", "images", 4), ("vj_lfw/pairs", "pairs", 2),
                 ("vj_lfw/pairs", "dev_train", 2)]  # fmt: skip


def _market1501():
  names = {"bounding_box_train": ["0002_c1s1_000451_03.jpg", "0007_c3s1_000100_01.jpg"],
           "query": ["0003_c1s1_000010_01.jpg"], "bounding_box_test": ["0003_c4s2_000020_02.jpg"]}  # fmt: skip
  files = {
    f"{d}/{n}": _image(k) for k, (d, n) in enumerate((d, n) for d in names for n in names[d])
  }
  b = "vj_market1501"
  return files, [(b, "train", 2), (b, "query", 1), (b, "gallery", 1)]


def _dukemtmc_reid():
  names = {"bounding_box_train": ["0005_c2_f0046985.jpg", "0005_c3_f0047100.jpg"],
           "query": ["0008_c1_f0000100.jpg"], "bounding_box_test": ["0008_c5_f0000999.jpg"]}  # fmt: skip
  files = {
    f"{d}/{n}": _image(k) for k, (d, n) in enumerate((d, n) for d in names for n in names[d])
  }
  b = "vj_dukemtmc_reid"
  return files, [(b, "train", 2), (b, "query", 1), (b, "gallery", 1)]


def _identity_folder():
  files = {
    "0001/a.jpg": _image(0),
    "0001/b.png": _image(1, fmt="PNG"),
    "0002/c.bmp": _image(2, fmt="BMP"),
  }
  return files, [("vj_identity_folder", "train", 3)]


def _hashing_image_list():
  files, rows = {}, {}
  for split in ("train", "test", "database"):
    for i in range(2):
      rel = f"img/{split}{i}.jpg"
      files[rel] = _image(len(files))
      rows.setdefault(split, []).append(
        rel + " " + " ".join("1" if c == i else "0" for c in range(21))
      )
    files[f"{split}.txt"] = ("\n".join(rows[split]) + "\n").encode()
  b = "vj_hashing_image_list/nuswide_21"
  return files, [(b, "train", 2), (b, "query", 2), (b, "database", 2)]


def _imagenet_list():
  files = {}
  for k, w in enumerate(("n02", "n01")):  # labels need not follow folder order
    for j in range(3):
      files[f"train/{w}/{w}_{j}.JPEG"] = _image(len(files))
    files[f"val/{w}/ILSVRC2012_val_{k:08d}.JPEG"] = _image(len(files))
  lines = {"train": [], "val": []}
  for rel in (r for r in files if r.startswith("train/")):
    _, w, name = rel.split("/")
    lines["train" if not name.endswith("_2.JPEG") else "val"].append(
      f"{w}/{name} {int(w == 'n01')}"
    )
  for s in ("train", "val"):
    files[f"ImageNet-100-effb0_{s}_cls_ratio0.8.txt"] = ("\n".join(lines[s]) + "\n").encode()
  b = "vj_imagenet_list"
  return files, [(b, "search_train", 4), (b, "search_val", 2), (b, "val", 2)]


def _mini_imagenet():
  files = {}
  for csv, wnids in (("train", ["n01", "n02"]), ("val", ["n03"]), ("test", ["n04"])):
    lines = ["filename,label"]
    for w in wnids:
      for j in range(2):
        fn = f"{w}{j:08d}.jpg"
        files[f"images/{fn}"] = _image(len(files))
        lines.append(f"{fn},{w}")
    files[f"{csv}.csv"] = ("\n".join(lines) + "\n").encode()
  b = "vj_mini_imagenet"
  return files, [(b, "base", 4), (b, "val", 2), (b, "novel", 2)]


def _cub_fewshot():
  files, imgs, labs = {}, [], []
  names = [f"{i + 1:03d}.Bird_{i}" for i in range(4)]  # classes 0..3: base, val, base, novel
  for i, n in enumerate(names):
    rel = f"{n}/{n}_0.jpg"
    files[f"images/{rel}"] = _image(i)
    imgs.append(f"{i + 1} {rel}")
    labs.append(f"{i + 1} {i + 1}")
  files["images.txt"] = ("\n".join(imgs) + "\n").encode()
  files["image_class_labels.txt"] = ("\n".join(labs) + "\n").encode()
  files["classes.txt"] = "".join(f"{i + 1} {n}\n" for i, n in enumerate(names)).encode()
  b = "vj_cub_fewshot"
  return files, [(b, "base", 2), (b, "val", 1), (b, "novel", 1)]


def _omniglot():
  files = {}
  for folder, n_chars in (("images_background", 2), ("images_evaluation", 1)):
    for c in range(n_chars):
      p = f"{folder}/Alpha/character{c + 1:02d}/{c:04d}_01.png"
      files[p] = _image(len(files), size=(105, 105), mode="L", fmt="PNG")
  b = "vj_omniglot"
  return files, [(b, "background", 2 * 4), (b, "evaluation", 4)]


def _hfr():
  files = {}
  subjects = ["20001", "20002", "20003"]
  for i, s in enumerate(subjects):
    files[f"s1/NIR/{s}/001.bmp"] = _image(i, mode="L", fmt="BMP")
    files[f"s2/VIS/{s}/001.jpg"] = _image(10 + i)
  win = lambda rels: ("\r\n".join(r.replace("/", "\\") for r in rels) + "\r\n").encode()  # noqa: E731
  files["protocols/nir_train_1.txt"] = win([f"s1/NIR/{subjects[2]}/001.bmp"])
  files["protocols/vis_train_1.txt"] = win([f"s2/VIS/{subjects[2]}/001.jpg"])
  files["protocols/vis_gallery_1.txt"] = win([f"s2/VIS/{s}/001.jpg" for s in subjects[:2]])
  files["protocols/nir_probe_1.txt"] = win([f"s1/NIR/{s}/001.bmp" for s in subjects[:2]])
  b = "vj_hfr/casia_nir_vis_2"
  return files, [(b, "train_1", 2), (b, "gallery_1", 2), (b, "probe_1", 2)]


def _wider_face():
  ann = {"train": "0--Parade/0_Parade_1.jpg\n1\n2 3 6 7 0 0 0 0 0 0\n",
         "val": "1--Handshaking/1_Handshaking_2.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n"}  # fmt: skip
  files = {}
  for split, text in ann.items():
    files[f"wider_face_split/wider_face_{split}_bbx_gt.txt"] = text.encode()
    files[f"WIDER_{split}/images/{text.splitlines()[0]}"] = _image(len(files), size=(16, 12))
  b = "vj_wider_face"
  return files, [(b, "train", 1), (b, "validation", 1)]


def _m2fpa():
  rels = ["Train/001/White/Neutral/a4-7.jpg", "Train/001/White/Neutral/a4-1.png",
          "Test/002/Glasses/Smile/4-7.jpeg"]  # fmt: skip
  files = {r: _image(i, fmt="PNG" if r.endswith("png") else "JPEG") for i, r in enumerate(rels)}
  files["camera_poses.csv"] = b"layer,camera,yaw,pitch\n4,7,0,0\n4,1,-90,0\n"
  return files, [("vj_m2fpa", "train", 2), ("vj_m2fpa", "test", 1)]


def _multipie():
  files = {}
  for subj, ses, rec, cam, ill in [(1, 1, 1, "05_1", 7), (1, 1, 1, "05_1", 0), (1, 1, 1, "14_0", 7),
                                   (1, 1, 2, "05_1", 7), (1, 1, 1, "08_1", 7), (201, 1, 1, "05_1", 7),
                                   (201, 1, 1, "14_0", 0), (201, 1, 1, "05_1", 0)]:  # fmt: skip
    name = f"{subj:03d}_{ses:02d}_{rec:02d}_{cam.replace('_', '')}_{ill:02d}.png"
    rel = f"data/session{ses:02d}/multiview/{subj:03d}/{rec:02d}/{cam}/{name}"
    files[rel] = _image(len(files), fmt="PNG")
  # protocol: neutral (rec 01), head-height cameras; 201's 05_1 / 07 is its gallery image
  b = "vj_multipie/setting2"
  return files, [(b, "train", 3), (b, "gallery", 1), (b, "probe", 1)]


WRITERS = {
  "vj_fashion_mnist": _fashion_mnist,
  "vj_cifar10": _cifar10,
  "vj_lfw": _lfw,
  "vj_market1501": _market1501,
  "vj_dukemtmc_reid": _dukemtmc_reid,
  "vj_identity_folder": _identity_folder,
  "vj_hashing_image_list": _hashing_image_list,
  "vj_imagenet_list": _imagenet_list,
  "vj_mini_imagenet": _mini_imagenet,
  "vj_cub_fewshot": _cub_fewshot,
  "vj_omniglot": _omniglot,
  "vj_hfr": _hfr,
  "vj_wider_face": _wider_face,
  "vj_m2fpa": _m2fpa,
  "vj_multipie": _multipie,
}


def _registered_builders() -> set[str]:
  out, todo = set(), list(ManualDirBuilder.__subclasses__())
  while todo:
    cls = todo.pop()
    todo.extend(cls.__subclasses__())
    if not cls.__name__.startswith("_"):
      out.add(cls.name)
  return out


def test_every_registered_builder_has_a_documented_layout_and_a_writer():
  documented, registered = set(_documented_layouts()), _registered_builders()
  assert registered <= documented, f"no layout block in docs/data.md for {registered - documented}"
  assert documented <= registered, (
    f"docs/data.md documents unknown builders {documented - registered}"
  )
  assert set(WRITERS) == registered


@pytest.mark.parametrize("builder", sorted(WRITERS))
def test_builds_from_exactly_the_documented_layout(builder, tmp_path):
  layout = _documented_layouts()[builder]
  regexes = [(p, _pattern_regex(p), opt) for p, opt in layout]
  files, expect = WRITERS[builder]()
  for rel in files:
    assert any(r.match(rel) for _, r, _ in regexes), (
      f"{builder}: fixture path {rel!r} is not in its docs/data.md layout {[p for p, _ in layout]}"
    )
  for p, r, opt in regexes:
    assert opt or any(r.match(rel) for rel in files), f"{builder}: nothing written for {p!r}"
  raw = tmp_path / "raw"
  for rel, data in files.items():
    (raw / rel).parent.mkdir(parents=True, exist_ok=True)
    (raw / rel).write_bytes(data)
  for name, split, n in expect:
    src = vd.load(name, split, data_dir=tmp_path / "store", manual_dir=raw)
    assert len(src) == n, (name, split, len(src))
    ex = src[0]
    assert any(np.asarray(v).size for v in ex.values())
  assert sorted(
    os.path.relpath(os.path.join(dp, f), raw) for dp, _, fs in os.walk(raw) for f in fs
  ) == sorted(files)  # fmt: skip  (building wrote nothing into the manual dir)
