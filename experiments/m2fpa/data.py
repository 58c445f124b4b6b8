"""Data of the M2FPA experiment: the embedded procedural faces and the M2FPA image tree, both as
the same dict of arrays.

Result of `embedded_data` / `m2fpa_tree_data` / `multipie_tree_data`::

  {"gan": {"image", "frontal": uint8 [N, S, S, C], "frontal_parsing": uint8 [N, S, S],
           "label": int32 [N] (train-local subject), "pose_index": int32 [N] (row of gan_poses)},
   "recog": {"image": uint8 [M, S, S, C], "label": int32 [M]},
   "probe": {"image", "frontal": uint8 [Q, S, S, C], "label": int32 [Q], "pose": float [Q, 2]},
   "gallery": {"image": uint8 [G, S, S, C], "label": int32 [G]},
   "poses": float [P, 2] (the probe pose set), "gan_poses": float [P', 2] (every pose of the
   train images, the frontal one included), "frontal_pose": the frontal row of gan_poses,
   "num_train_ids": K}

``gan`` pairs every train-subject image with its subject's frontal image (and that image's
parsing map); ``recog`` holds near-frontal train images with train-local labels; test subjects
give the gallery (their frontal image) and the probes (every other pose). ``label`` and
``pose_index`` are what the DR-GAN-style D classifies.
"""

from __future__ import annotations

import os

import numpy as np

from vision_jax.data import m2fpa as m2
from vision_jax.data import multipie as mpie
from vision_jax.data import synthetic_faces as sf
from vision_jax.metrics.pose_bins import check_poses, pose_index, subject_disjoint_split


def parse_pairs(text: str, *, key: str, width: int) -> np.ndarray:
  """``"a:b,c:d"`` -> float64 ``[n, width]``.

  Raises:
    ValueError: a malformed item (named, with the config key).
  """
  rows = []
  for item in [t for t in str(text).split(",") if t.strip()]:
    try:
      vals = [float(v) for v in item.split(":")]
    except ValueError:
      vals = []
    if len(vals) != width:
      raise ValueError(f"{key}: item {item!r} of {text!r} is not {width} ':'-separated numbers")
    rows.append(vals)
  if not rows:
    raise ValueError(f"{key}={text!r} is empty")
  return np.asarray(rows, np.float64)


def _u8(x: np.ndarray) -> np.ndarray:
  return np.clip(np.rint(np.asarray(x) * 255.0), 0, 255).astype(np.uint8)


def embedded_data(cfg) -> dict:
  """Procedural faces (`vision_jax.data.synthetic_faces`), grey, split subject-disjoint.

  Raises:
    ValueError: a bad ``data.poses`` / ``recog.views`` / ``recog.lights`` string (named with
      its config key), or ``data.num_test`` out of range.
  """
  d = cfg.data
  poses = (
    sf.DEFAULT_POSES if d.poses == "default" else parse_pairs(d.poses, key="data.poses", width=2)
  )
  poses = check_poses(poses, name="data.poses")
  ids = np.arange(int(d.num_identities))
  kw = dict(size=int(d.image_size), grayscale=True, supersample=int(d.supersample))
  test_mask = subject_disjoint_split(ids, num_test=int(d.num_test), seed=cfg.seed)
  train_ids, test_ids = ids[~test_mask], ids[test_mask]
  r = sf.render_identities(cfg.seed, ids, poses, **kw)
  image = _u8(r["image"])
  frontal, f_parsing = _u8(r["frontal"]), r["frontal_parsing"].astype(np.uint8)
  p = len(poses)
  rep = lambda a, sel: np.repeat(a[sel], p, axis=0)  # noqa: E731
  is_frontal = (poses[:, 0] == 0) & (poses[:, 1] == 0)
  gan = {
    "image": image[train_ids].reshape(-1, *image.shape[2:]),
    "frontal": rep(frontal, train_ids),
    "frontal_parsing": rep(f_parsing, train_ids),
    "label": np.repeat(np.arange(len(train_ids), dtype=np.int32), p),
    "pose_index": np.tile(np.arange(p, dtype=np.int32), len(train_ids)),
  }
  # the frontal pose of the DR-GAN pose head: its row, or one more class when it is not rendered
  frontal_pose = int(np.flatnonzero(is_frontal)[0]) if is_frontal.any() else p
  gan_poses = poses if is_frontal.any() else np.concatenate([poses, [[0.0, 0.0]]])
  probe_poses = poses[~is_frontal]
  n_test = len(test_ids)
  probe = {
    "image": image[test_ids][:, ~is_frontal].reshape(-1, *image.shape[2:]),
    "frontal": np.repeat(frontal[test_ids], len(probe_poses), axis=0),
    "label": np.repeat(np.arange(n_test, dtype=np.int32), len(probe_poses)),
    "pose": np.tile(probe_poses, (n_test, 1)),
  }
  gallery = {"image": frontal[test_ids], "label": np.arange(n_test, dtype=np.int32)}
  views = check_poses(parse_pairs(cfg.recog.views, key="recog.views", width=2), name="recog.views")
  lights = parse_pairs(cfg.recog.lights, key="recog.lights", width=3)
  rec_img, rec_lab = [], []
  for light in lights:
    v = sf.render_identities(cfg.seed, train_ids, views, light=tuple(light), **kw)
    rec_img.append(_u8(v["image"]).reshape(-1, *v["image"].shape[2:]))
    rec_lab.append(np.repeat(np.arange(len(train_ids), dtype=np.int32), len(views)))
  recog = {"image": np.concatenate(rec_img), "label": np.concatenate(rec_lab)}
  return {
    "gan": gan,
    "recog": recog,
    "probe": probe,
    "gallery": gallery,
    "poses": probe_poses,
    "gan_poses": gan_poses,
    "frontal_pose": frontal_pose,
    "num_train_ids": len(train_ids),
  }


def _read_image(path: str, size: int, *, mode: str) -> np.ndarray:
  from PIL import Image

  with Image.open(path) as im:
    im = im.convert(mode)
    if im.size != (size, size):
      im = im.resize((size, size), Image.BILINEAR)
    return np.asarray(im)


def read_parsing_map(parsing_dir: str, relpath: str, size: int) -> np.ndarray:
  """The label map of image ``relpath``: ``<parsing_dir>/<relpath without ext>.png``, nearest-
  resized to ``size``, uint8 ``[size, size]`` with `synthetic_faces.PARTS` labels.

  Raises:
    FileNotFoundError: the map is missing (named, with ``paper.parsing_dir``).
    ValueError: a label outside ``PARTS``.
  """
  from PIL import Image

  path = os.path.join(parsing_dir, os.path.splitext(relpath)[0] + ".png")
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f"missing parsing map {path!r} for image {relpath!r} (paper.parsing_dir={parsing_dir!r}); "
      "the parsing-guided discriminator needs one label PNG per frontal image, or run only "
      "--config.methods=baseline"
    )
  with Image.open(path) as im:
    lab = np.asarray(im.convert("L").resize((size, size), Image.NEAREST), np.uint8)
  if lab.max(initial=0) >= len(sf.PARTS):
    raise ValueError(
      f"parsing map {path!r} has label {int(lab.max())}; expected 0..{len(sf.PARTS) - 1}"
    )
  return lab


def m2fpa_tree_data(cfg, *, need_parsing: bool) -> dict:
  """M2FPA from its image tree (`vision_jax.data.m2fpa` layout) as the experiment's arrays.

  The frontal image of a probe is the image of camera ``paper.frontal_camera`` with the same
  subject, attribute, expression and illumination (one folder). Only images of split
  ``paper.split`` are used; its subjects are split into train / test by ``data.num_test``.

  Raises:
    FileNotFoundError: no root / no camera_poses.csv / a missing parsing map (named).
    ValueError: a file name that does not parse (named by `vision_jax.data.m2fpa`), a camera
      missing from the table, a pose outside ``data.poses`` (named with its file), or a folder
      without its frontal image.
  """
  p, d = cfg.paper, cfg.data
  size = int(d.image_size)
  if not p.root:
    raise ValueError("paper preset: set --config.paper.root=DIR (the M2FPA image tree)")
  table_path = os.path.join(p.root, m2.CAMERA_POSES_FILE)
  if not os.path.isfile(table_path):
    raise FileNotFoundError(
      f"paper.root={p.root!r} has no {m2.CAMERA_POSES_FILE} (layer,camera,yaw,pitch)"
    )
  table = m2.read_camera_poses(table_path)
  records = [r for r in m2.list_m2fpa(p.root) if r.split.lower() == str(p.split).lower()]
  if not records:
    raise FileNotFoundError(f"paper.root={p.root!r}: no images in split {p.split!r}")
  grid = m2.m2fpa_poses(records, table) if d.poses == "data" else check_poses(
    parse_pairs(d.poses, key="data.poses", width=2), name="data.poses")  # fmt: skip
  try:
    fl, fc = (int(v) for v in str(p.frontal_camera).split("-"))
  except ValueError:
    raise ValueError(
      f"paper.frontal_camera={p.frontal_camera!r}; expected '<layer>-<camera>'"
    ) from None
  folder = lambda r: (r.subject, r.attribute, r.expression, r.illumination)  # noqa: E731
  frontal_of = {folder(r): r for r in records if (r.layer, r.camera) == (fl, fc)}
  subjects = sorted({r.subject for r in records})
  test = set(
    np.asarray(subjects)[
      subject_disjoint_split(np.asarray(subjects), num_test=int(d.num_test), seed=cfg.seed)
    ]
  )
  train_ids = {s: i for i, s in enumerate(s for s in subjects if s not in test)}
  test_ids = {s: i for i, s in enumerate(s for s in subjects if s in test)}
  entries, in_gallery = [], set()
  for r in records:
    f = frontal_of.get(folder(r))
    if f is None:
      raise ValueError(
        f"M2FPA image {r.path!r}: its folder has no frontal image of camera {fl}-{fc} (paper.frontal_camera)"
      )
    is_frontal = f.path == r.path
    if r.subject in train_ids:
      entries.append((r.path, "train", train_ids[r.subject], table[(r.layer, r.camera)], f.path))
    elif is_frontal:
      if r.subject not in in_gallery:  # the first frontal image (by path) of a test subject
        in_gallery.add(r.subject)
        entries.append((r.path, "gallery", test_ids[r.subject], None, f.path))
    else:
      entries.append((r.path, "probe", test_ids[r.subject], table[(r.layer, r.camera)], f.path))
  root = p.root
  return _assemble(lambda rel: os.path.join(root, rel), entries, grid, table[(fl, fc)], size=size, need_parsing=need_parsing,
                   parsing_dir=p.parsing_dir, what="M2FPA", poses_key=f"data.poses={d.poses!r}",
                   num_train_ids=len(train_ids))  # fmt: skip


def _assemble(resolve, entries, grid, frontal, *, size, need_parsing, parsing_dir, what, poses_key,
              num_train_ids) -> dict:  # fmt: skip
  """The experiment's arrays from ``(relpath, role, label, pose, frontal relpath)`` entries
  (role ``train`` / ``gallery`` / ``probe``; ``resolve(relpath)`` the file); images grey, resized
  to ``size``.

  Raises:
    ValueError: a train / probe pose outside ``grid`` (names the file and ``poses_key``).
    FileNotFoundError: a missing parsing map (with ``need_parsing``).
  """
  read = lambda rel: _read_image(resolve(rel), size, mode="L")[..., None]  # noqa: E731
  gan, recog, probe, gallery = ({} for _ in range(4))
  add = lambda dct, **kv: [dct.setdefault(k, []).append(v) for k, v in kv.items()]  # noqa: E731
  for rel, role, label, pose, frel in entries:
    if role != "gallery":
      try:
        k = pose_index(grid, *pose)
      except ValueError as e:
        raise ValueError(f"{what} image {rel!r}: {e} ({poses_key})") from None
    if role == "train":
      if rel == frel:
        add(recog, image=read(rel), label=label)
      parsing = (
        read_parsing_map(parsing_dir, frel, size)
        if need_parsing
        else np.zeros((size, size), np.uint8)
      )
      add(gan, image=read(rel), frontal=read(frel), frontal_parsing=parsing, label=label,
          pose_index=k)  # fmt: skip
    elif role == "gallery":
      add(gallery, image=read(rel), label=label)
    else:
      add(probe, image=read(rel), frontal=read(frel), label=label, pose=np.asarray(pose))
  stack = lambda dct: {k: np.stack(v) for k, v in dct.items()}  # noqa: E731
  out = {k: stack(v) for k, v in (("gan", gan), ("recog", recog), ("probe", probe),
                                  ("gallery", gallery))}  # fmt: skip
  for part, key in (("gan", "label"), ("gan", "pose_index"), ("recog", "label"),
                    ("probe", "label"), ("gallery", "label")):  # fmt: skip
    out[part][key] = out[part][key].astype(np.int32)
  frontal = tuple(float(v) for v in frontal)
  out.update(
    poses=np.asarray([g for g in grid.tolist() if tuple(g) != frontal]),
    gan_poses=np.asarray(grid, np.float64),
    frontal_pose=pose_index(grid, *frontal),
    num_train_ids=num_train_ids,
  )
  return out


def multipie_tree_data(cfg, *, need_parsing: bool) -> dict:
  """Multi-PIE from its release tree (`vision_jax.data.multipie` layout and protocol) as the
  experiment's arrays.

  The protocol is `MultiPieProtocol` with ``paper.train_max_subject`` and
  ``paper.gallery_illumination`` (default setting 2). The frontal ground truth of an image is the
  camera 05_1 image of the same subject, session, recording and illumination; parsing maps are
  ``<paper.parsing_dir>/data/session<ss>/.../<name>.png``. Choice: whole
  frames are resized to ``data.image_size`` (no face crop); point ``paper.root`` at a tree of
  aligned face crops in the same layout for a meaningful run.

  Raises:
    ValueError / FileNotFoundError: no root, a file name that does not parse or an unknown camera
      (named by `vision_jax.data.multipie`), a test subject without a gallery image, an image
      without its frontal counterpart (named), or a missing parsing map.
  """
  p, d = cfg.paper, cfg.data
  if not p.root:
    raise ValueError("paper preset: set --config.paper.root=DIR (the Multi-PIE tree with data/)")
  proto = mpie.MultiPieProtocol(train_max_subject=int(p.train_max_subject),
                                gallery_illumination=int(p.gallery_illumination))  # fmt: skip
  records = mpie.list_multipie(p.root)
  splits = mpie.multipie_protocol(records, proto)
  selected = splits["train"] + splits["gallery"] + splits["probe"]
  grid = mpie.multipie_poses(selected) if d.poses == "data" else check_poses(
    parse_pairs(d.poses, key="data.poses", width=2), name="data.poses")  # fmt: skip
  key = lambda r: (r.subject, r.session, r.recording, r.illumination)  # noqa: E731
  # a probe pairs with the frontal image under its own light (not the gallery image)
  frontal_of = {key(r): r for r in records if r.camera == proto.gallery_camera}
  train_ids = {s: i for i, s in enumerate(sorted({r.subject for r in splits["train"]}))}
  test_ids = {s: i for i, s in enumerate(sorted({r.subject for r in splits["gallery"]}))}
  entries = []
  for role in ("train", "gallery", "probe"):
    for r in splits[role]:
      f = frontal_of.get(key(r))
      if f is None:
        raise ValueError(
          f"Multi-PIE image {r.path!r}: no camera {proto.gallery_camera} image of subject "
          f"{r.subject:03d}, session {r.session:02d}, recording {r.recording:02d}, illumination "
          f"{r.illumination:02d} (its frontal ground truth)"
        )
      ids = train_ids if role == "train" else test_ids
      pose = mpie.multipie_pose(r) if role != "gallery" else None
      entries.append((r.path, role, ids[r.subject], pose, f.path))
  top = mpie.multipie_data_dir(p.root)
  return _assemble(lambda rel: os.path.join(top, rel.removeprefix("data/")), entries, grid, mpie.MULTIPIE_CAMERA_POSES[proto.gallery_camera],
                   size=int(d.image_size), need_parsing=need_parsing, parsing_dir=p.parsing_dir,
                   what="Multi-PIE", poses_key=f"data.poses={d.poses!r}",
                   num_train_ids=len(train_ids))  # fmt: skip
