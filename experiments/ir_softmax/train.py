"""Runs every (setting, method) of the IR-Softmax experiment through the shared train loop."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from experiments.ir_softmax import data as ird
from vision_jax import data as vdata
from vision_jax.losses import weight_center_angles
from vision_jax.models import backbone_from_config
from vision_jax.train import SweepRun, run_sweep, train_and_evaluate
from vision_jax.train.embedding import head_weights_and_centers, margin_softmax_task
from vision_jax.utils.plotting import pyplot, save_figure


def method_spec(method: str, cfg) -> tuple[str, bool, dict]:
  """``(base loss, ir, loss kwargs)`` for a method name such as ``ir_am_softmax``."""
  ir = method.startswith("ir_")
  base = method[3:] if ir else method
  lc = cfg.loss
  kw = {
    "softmax": {},
    "normface": dict(scale=lc.normface_scale),
    "a_softmax": dict(
      margin=int(lc.a_margin),
      lambda_schedule=dict(
        base=lc.a_lambda_base, gamma=lc.a_lambda_gamma, lambda_min=lc.a_lambda_min
      ),
    ),
    "am_softmax": dict(scale=lc.am_scale, margin=lc.am_margin),
    "arcface": dict(scale=lc.arc_scale, margin=lc.arc_margin),
  }
  if base not in kw:
    raise ValueError(f"unknown method {method!r}; valid: {', '.join(kw)} and ir_<name>")
  if ir and base in ("softmax", "normface"):
    raise ValueError(
      f"{method!r}: IR applies to the angular-margin losses (a_softmax, am_softmax, arcface)"
    )
  return base, ir, kw[base]


def _task(cfg, num_classes, method):
  base, ir, kw = method_spec(method, cfg)
  backbone = backbone_from_config(cfg.model)
  return margin_softmax_task(
    backbone,
    num_classes=num_classes,
    embed_dim=cfg.model.embed_dim,
    loss=base,
    ir=ir,
    loss_kwargs=kw,
    center_momentum=cfg.loss.center_momentum,
    center_warmup_steps=cfg.loss.center_warmup_steps,
  ), ir


def closed_set_summary(counts):
  groups = vdata.head_medium_tail_split(counts)

  def summarize(out):
    pred, label = out["pred"], out["label"]
    per_class = np.array(
      [np.mean(pred[label == c] == c) if np.any(label == c) else np.nan for c in range(len(counts))]
    )
    res = {"accuracy": float(np.mean(pred == label))}
    for g, ids in groups.items():
      res[f"{g}_accuracy"] = float(np.nanmean(per_class[ids]))
    return res

  return summarize


def open_set_summary(test_labels, cfg):
  from vision_jax.metrics import verification as V

  a, b, same = ird.verification_pairs(
    test_labels, num_folds=cfg.open.num_folds, pairs_per_fold=cfg.open.pairs_per_fold, seed=cfg.seed
  )
  fold = np.repeat(np.arange(cfg.open.num_folds), 2 * cfg.open.pairs_per_fold)

  def summarize(out):
    emb = out["embedding"]
    # Eval batches come back in source order (padding dropped), so rows index the test set.
    scores = np.sum(emb[a] * emb[b], axis=-1)
    acc = V.kfold_verification_accuracy(scores, same, folds=fold)
    tar = V.tar_at_far(scores, same, cfg.open.far)
    return {
      "verification_accuracy": float(acc.accuracy),
      "verification_std": float(acc.std),
      f"tar_at_far_{cfg.open.far:g}": float(tar),
    }

  return summarize


def _face_transform(size: int, train: bool):
  """Decoded photo -> ``size x size`` RGB uint8 (+ random flip when training); drops text fields."""

  def transform(ex, rng):
    out = {"image": vdata.resize_image(ex["image"], size), "label": np.int32(ex["label"])}
    return vdata.random_horizontal_flip(out, rng) if train else out

  return transform


def real_setting(setting: str, cfg):
  """Paper settings on real on-disk data: ``lfw`` (identity-folder train -> LFW pairs) and
  ``market`` (Market-1501 train -> query/gallery re-ID).

  Returns:
    ``(train_source, train_transform, eval_source, num_classes, summarize)``.
  """
  from vision_jax.metrics import kfold_verification_accuracy, reid_cmc_map, tar_at_far

  pc = cfg.paper
  size = int(pc.image_size)
  kw = dict(data_dir=pc.data_dir or None)
  if setting == "lfw":
    train = vdata.load("vj_identity_folder", "train", manual_dir=pc.train_dir or None, **kw)
    images = vdata.load("vj_lfw/images", "images", manual_dir=pc.lfw_dir or None, **kw)
    pairs = vdata.load("vj_lfw/pairs", "pairs", manual_dir=pc.lfw_dir or None, **kw)
    rows = pairs.__getitems__(list(range(len(pairs))))
    i1 = np.array([int(r["index1"]) for r in rows])
    i2 = np.array([int(r["index2"]) for r in rows])
    same = np.array([bool(r["is_same"]) for r in rows])
    fold = np.array([int(r["fold"]) for r in rows])
    num_classes = int(train[len(train) - 1]["label"]) + 1  # rows sorted by identity

    def summarize(out):
      emb = out["embedding"]
      scores = np.sum(emb[i1] * emb[i2], axis=-1)
      acc = kfold_verification_accuracy(scores, same, folds=fold)
      tars = tar_at_far(scores, same, [1e-3, 1e-2])
      return {
        "lfw_accuracy": float(acc.accuracy),
        "lfw_std": float(acc.std),
        "tar_at_far_0.001": float(tars[0]),
        "tar_at_far_0.01": float(tars[1]),
      }

    return (
      train,
      _face_transform(size, True),
      vdata.MappedSource(images, lambda ex: _face_transform(size, False)(ex, None)),
      num_classes,
      summarize,
    )
  if setting == "market":
    train = vdata.load("vj_market1501", "train", manual_dir=pc.market_dir or None, **kw)
    query = vdata.load("vj_market1501", "query", manual_dir=pc.market_dir or None, **kw)
    gallery = vdata.load("vj_market1501", "gallery", manual_dir=pc.market_dir or None, **kw)
    meta = lambda src: np.array(
      [(int(e["pid"]), int(e["camid"])) for e in src.__getitems__(list(range(len(src))))]
    ).reshape(-1, 2)
    qm, gm = meta(query), meta(gallery)
    num_classes = int(train[len(train) - 1]["label"]) + 1  # relabelled 0..K-1 in pid order
    nq = len(query)

    def summarize(out):
      emb = out["embedding"]
      dist = 1.0 - emb[:nq] @ emb[nq:].T
      res = reid_cmc_map(dist, qm[:, 0], gm[:, 0], qm[:, 1], gm[:, 1])
      return {
        "rank1": float(res.cmc[0]),
        "rank5": float(res.cmc[min(4, len(res.cmc) - 1)]),
        "mAP": float(res.mAP),
      }

    relabel = lambda ex: dict(ex, label=ex["pid"])
    eval_src = vdata.MappedSource(
      vdata.ConcatSource(query, gallery), lambda ex: _face_transform(size, False)(relabel(ex), None)
    )
    return train, _face_transform(size, True), eval_src, num_classes, summarize
  raise ValueError(f"unknown real-data setting {setting!r}; valid: lfw, market")


def setting_names(cfg) -> list[str]:
  """The runs' settings: ``closed`` expands to one ``closed_lt<ratio>`` per imbalance ratio."""
  settings = []
  for s in cfg.settings.split(","):
    if s == "closed":
      settings += [f"closed_lt{float(r):g}" for r in cfg.closed.imbalance_ratios]
    elif s in ("open", "lfw", "market"):
      settings.append(s)
    elif s:
      raise ValueError(f"unknown setting {s!r}; valid: closed, open, lfw, market")
  return settings


def setting_data(setting: str, cfg) -> dict:
  """Train/test sources of one setting.

  Returns:
    dict with ``train_src``, ``test_src``, ``transform`` (None for in-memory arrays),
    ``num_classes``, ``summarize`` and ``counts`` (training examples per class).
  """
  transform = None
  if setting in ("lfw", "market"):
    train_src, transform, test_src, num_classes, summarize = real_setting(setting, cfg)
    counts = np.zeros(num_classes, np.int64)
  elif setting.startswith("closed"):
    ratio = float(setting[len("closed_lt") :])
    if cfg.preset == "smoke":
      src = vdata.synthetic_source(600, (28, 28, 1), 10, seed=1)
      y = src.arrays["label"]
      idx = vdata.long_tailed_indices(y, imbalance_ratio=ratio, seed=cfg.seed)
      train_src = vdata.ArraySource({k: v[idx] for k, v in src.arrays.items()})
      test_src = vdata.synthetic_source(cfg.closed.max_test, (28, 28, 1), 10, seed=2)
      counts = np.bincount(y[idx], minlength=10)
    else:
      train_src, test_src, counts = ird.long_tailed_fashion_mnist(
        ratio,
        seed=cfg.seed,
        data_dir=cfg.closed.data_dir,
        manual_dir=cfg.closed.manual_dir,
        max_test=cfg.closed.max_test,
      )
    summarize = closed_set_summary(counts)
    num_classes = 10
  else:
    oc = cfg.open
    train_src, test_src, counts = ird.pseudo_identities(
      image_size=oc.image_size,
      train_fraction=oc.train_fraction,
      n_max=oc.n_max,
      imbalance_ratio=oc.imbalance_ratio,
      test_samples=oc.test_samples,
      seed=cfg.seed,
    )
    summarize = open_set_summary(test_src.arrays["label"], cfg)
    num_classes = len(counts)
  if transform is not None and len(train_src) <= 200_000:
    counts = np.bincount(
      [int(e["label"]) for e in train_src.__getitems__(list(range(len(train_src))))],
      minlength=num_classes,
    )
  print(
    f"== {setting}: {len(train_src)} train examples over {num_classes} classes "
    f"(largest {int(max(counts))}, smallest {int(min(counts))}), {len(test_src)} test"
  )
  return dict(
    train_src=train_src,
    test_src=test_src,
    transform=transform,
    num_classes=num_classes,
    summarize=summarize,
    counts=np.asarray(counts),
  )


def run_one(cfg, workdir, setting, method, data, progress=True):
  """Trains one (setting, method) in ``workdir``; returns the loop's summary, whose
  ``finalize`` part holds ``weight_center_angle_deg`` (per class, degrees) and the
  ``class_counts`` they refer to."""
  task, ir = _task(cfg, data["num_classes"], method)
  counts = data["counts"].tolist()

  def finalize(state):
    w, c = head_weights_and_centers(state, ir=ir)
    return {"weight_center_angle_deg": weight_center_angles(w, c), "class_counts": counts}

  task = dataclasses.replace(task, summarize=data["summarize"], finalize=finalize)
  steps = {"closed": cfg.closed.num_steps, "open": cfg.open.num_steps}.get(
    setting.split("_")[0], cfg.paper.num_steps
  )
  run_cfg = cfg.copy_and_resolve_references()
  with run_cfg.unlocked():
    run_cfg.train.num_steps = int(steps)
    run_cfg.method = method
    run_cfg.setting = setting
  train_ds = vdata.train_dataset(
    data["train_src"],
    global_batch_size=cfg.data.global_batch_size,
    seed=cfg.seed,
    transform=data["transform"],
  )
  test_src = data["test_src"]
  eval_data = lambda: vdata.eval_batches(test_src, global_batch_size=cfg.data.eval_batch_size)
  return train_and_evaluate(run_cfg, workdir, task, train_ds, eval_data, progress=progress)


def run(cfg, workdir, *, progress=True):
  """Runs all settings x methods through :func:`vision_jax.train.run_sweep` (finished runs are
  skipped, a preempted one resumes).

  Returns:
    ``results[setting][method]`` = that run's summary (``eval``, ``weight_center_angle_deg``,
    ``class_counts``, ...); also in ``workdir/results.json``.
  """
  methods = [m for m in cfg.methods.split(",") if m]
  for m in methods:
    method_spec(m, cfg)  # validate names before any training
  settings = setting_names(cfg)
  loaded: dict[str, dict] = {}

  def data_of(setting):  # loads a setting's data once, when its first unfinished run starts
    if setting not in loaded:
      loaded.clear()  # one setting in memory at a time
      loaded[setting] = setting_data(setting, cfg)
    return loaded[setting]

  runs = [
    SweepRun(
      key=(setting, method),
      fn=lambda wd, s=setting, m=method: run_one(cfg, wd, s, m, data_of(s), progress),
    )
    for setting in settings
    for method in methods
  ]
  results = run_sweep(workdir, runs)
  plot_angles(results, os.path.join(workdir, "weight_center_angle.png"))
  return results


def format_table(results) -> str:
  lines = []
  for setting, ms in results.items():
    if not ms:
      continue
    keys = [k for k in next(iter(ms.values()))["eval"]]
    head = "| method | " + " | ".join(keys) + " | mean W–centre angle (deg) |"
    lines += [f"### {setting}", head, "|" + "---|" * (len(keys) + 2)]
    for m, s in ms.items():
      vals = " | ".join(
        f"{100 * s['eval'][k]:.2f} %" if "std" not in k else f"{100 * s['eval'][k]:.2f}"
        for k in keys
      )
      lines.append(f"| {m} | {vals} | {np.mean(s['weight_center_angle_deg']):.1f} |")
    lines.append("")
  return "\n".join(lines)


def plot_angles(results, path):
  plt = pyplot()

  settings = [s for s in results if results[s]]
  if not settings:
    return
  fig, axes = plt.subplots(1, len(settings), figsize=(5.5 * len(settings), 4), squeeze=False)
  for ax, s in zip(axes[0], settings):
    for m, summ in results[s].items():
      counts = np.asarray(summ["class_counts"])
      ang = np.asarray(summ["weight_center_angle_deg"])
      ax.scatter(counts, ang, s=12, label=m, alpha=0.8, marker="x" if m.startswith("ir_") else "o")
    ax.set_xscale("log")
    ax.set_xlabel("training samples of the class")
    ax.set_ylabel("angle(W_j, centre_j) [deg]")
    ax.set_title(s)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  save_figure(fig, path)
