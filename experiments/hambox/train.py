"""Runs standard matching and HAMBox mining through the shared trainer and sweep harness."""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np

from experiments.hambox.scenes import flip_transform, make_face_scenes
from vision_jax import data as vdata
from vision_jax.data.transforms import image_to_float
from vision_jax.detection import anchor_boxes
from vision_jax.detection.inference import detect, xyxy_to_xywh
from vision_jax.detection.model import build_detector
from vision_jax.detection.task import METHODS, DetectionConfig, detection_task
from vision_jax.metrics.wider_face import SETTINGS, wider_face_ap
from vision_jax.train import SweepRun, run_sweep, train_and_evaluate
from vision_jax.utils import save_json
from vision_jax.utils.plotting import pyplot, save_figure


def make_sources(cfg):
  """``(train_source, test_source, train_transform, image_size)``."""
  d = cfg.data
  if d.name == "scenes":
    kw = dict(
      canvas=int(d.canvas),
      faces_per_image=tuple(d.faces_per_image),
      distractors_per_image=tuple(d.distractors_per_image),
      face_size=tuple(d.face_size),
      easy_size=int(d.easy_size),
      medium_size=int(d.medium_size),
      max_faces=int(d.max_faces),
      contrast=tuple(d.contrast),
      face_blur=float(d.face_blur),
      noise=float(d.noise),
    )
    train = make_face_scenes(int(d.num_train), seed=cfg.seed, face_ids=range(80), **kw)
    test = make_face_scenes(int(d.num_test), seed=cfg.seed + 10_000, face_ids=range(80, 100), **kw)
    return train, test, flip_transform if d.flip else None, (int(d.canvas), int(d.canvas))
  if d.name == "wider_face":
    from experiments.hambox.wider import wider_sources

    train, test, tr = wider_sources(cfg)
    return train, test, tr, (int(d.eval_size), int(d.eval_size))
  raise ValueError(f"config.data.name={d.name!r}; valid: scenes, wider_face")


def detection_config(cfg, method: str) -> DetectionConfig:
  return DetectionConfig(method=method, **{k: cfg.detection[k] for k in cfg.detection})


def _forward(model, variables):
  apply = jax.jit(lambda x: model.apply(variables, image_to_float(x), train=False))
  return apply


def draw_detections(path, images, dets, gts, *, score=0.5, title=""):
  """Saves a PNG grid: faces in green, detections >= ``score`` in red."""
  import matplotlib.patches as patches

  plt = pyplot()

  n = len(images)
  fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.9), squeeze=False)
  for ax, img, d, g in zip(axes[0], images, dets, gts):
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
    for b in g:
      ax.add_patch(patches.Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, ec="lime", lw=1))
    for b in d[d[:, 4] >= score]:
      ax.add_patch(patches.Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, ec="red", lw=1))
    ax.axis("off")
  fig.suptitle(title, fontsize=9)
  save_figure(fig, path, dpi=100)


def _test_time(cfg, model, state, test, run_workdir, method):
  """Multi-scale / flip test (when configured) and the sample-detection PNG."""
  variables = {"params": state.params, **state.model_state}
  fwd = _forward(model, variables)
  m = cfg.model
  kw = dict(
    strides=tuple(m.strides), sizes=tuple(m.sizes), anchor_scale=float(m.anchor_scale),
    score_threshold=cfg.detection.score_threshold, nms_threshold=cfg.detection.nms_threshold,
    pre_nms_topk=cfg.detection.pre_nms_topk, max_detections=cfg.detection.max_detections,
  )  # fmt: skip
  n_draw = min(int(cfg.test.num_draw), len(test))
  if n_draw:
    items = [test[i] for i in range(n_draw)]
    imgs = np.stack([it["image"] for it in items])
    dets = detect(fwd, imgs, **kw)
    gts = [it["boxes"][it["box_mask"]] for it in items]
    draw_detections(os.path.join(run_workdir, "detections.png"), imgs, dets, gts,
                    score=cfg.detection.diagnostic_score, title=f"{method}: green faces, red "
                    f"detections >= {cfg.detection.diagnostic_score}")  # fmt: skip
  scales, flip = tuple(cfg.test.scales), bool(cfg.test.flip)
  if scales == (1.0,) and not flip:
    return
  preds, gts, keeps = [], [], {s: [] for s in SETTINGS}
  bs = int(cfg.data.eval_batch_size)
  for start in range(0, len(test), bs):
    items = [test[i] for i in range(start, min(start + bs, len(test)))]
    dets = detect(fwd, np.stack([it["image"] for it in items]), scales=scales, flip=flip, **kw)
    for it, d in zip(items, dets):
      sc = float(it.get("scale", 1.0))
      m_ = it["box_mask"]
      preds.append(xyxy_to_xywh(np.concatenate([d[:, :4] / sc, d[:, 4:]], 1)))
      gts.append(xyxy_to_xywh(it["boxes"][m_] / sc))
      for j, s in enumerate(SETTINGS):
        keeps[s].append(it["keep"][m_][:, j])
  tta = {f"ap_{s}": wider_face_ap(preds, gts, keeps[s]) for s in SETTINGS}
  tta.update(scales=list(scales), flip=flip)
  save_json(os.path.join(run_workdir, "test_time.json"), tta)


def run(cfg, workdir, *, progress=True):
  """All methods on one data setting; returns ``{setting: {method: summary}}``."""
  methods = [m for m in cfg.methods.split(",") if m]
  bad = [m for m in methods if m not in METHODS]
  if bad:
    raise ValueError(f"config.methods: unknown {bad}; valid: {', '.join(METHODS)}")
  train_src, test_src, transform, image_size = make_sources(cfg)
  n_faces = int(sum(np.sum(test_src[i]["box_mask"]) for i in range(len(test_src))))
  print(f"hambox: {len(train_src)} train / {len(test_src)} test images ({n_faces} test faces)")
  m = cfg.model
  train_size = image_size if cfg.data.name == "scenes" else (cfg.data.train_size,) * 2
  train_anchors = anchor_boxes(tuple(train_size), tuple(m.strides), tuple(m.sizes),
                               scale=float(m.anchor_scale))  # fmt: skip
  test_anchors = anchor_boxes(image_size, tuple(m.strides), tuple(m.sizes),
                              scale=float(m.anchor_scale))  # fmt: skip
  train_ds = vdata.train_dataset(
    train_src, global_batch_size=int(cfg.data.global_batch_size), seed=cfg.seed,
    transform=transform,
  )  # fmt: skip
  eval_data = lambda: vdata.eval_batches(test_src, global_batch_size=int(cfg.data.eval_batch_size))
  setting = cfg.data.name

  def make_fn(method):
    def fn(run_workdir):
      model = build_detector(cfg.model)
      dcfg = detection_config(cfg, method)
      task = detection_task(model, train_anchors, dcfg, image_size=tuple(train_size))
      if tuple(train_size) != tuple(image_size):
        eval_task = detection_task(model, test_anchors, dcfg, image_size=tuple(image_size))
        task = dataclasses.replace(task, eval_fn=eval_task.eval_fn)
      run_cfg = cfg.copy_and_resolve_references()
      with run_cfg.unlocked():
        run_cfg.method = method
      summary, state = train_and_evaluate(
        run_cfg, run_workdir, task, train_ds, eval_data, progress=progress, return_state=True
      )
      if not summary.get("preempted"):
        _test_time(cfg, model, state, test_src, run_workdir, method)
      return summary

    return fn

  return run_sweep(
    workdir, [SweepRun(key=(setting, method), fn=make_fn(method)) for method in methods]
  )


def format_table(results) -> str:
  lines = [
    "| setting | method | AP easy | AP medium | AP hard | unmatched share | compensated/img "
    "(last log) | train s |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for setting, runs in results.items():
    for method, s in runs.items():
      ev = s.get("eval", {})
      comp = s.get("final_train", {}).get("compensated", float("nan"))
      lines.append(
        f"| {setting} | {method} | {ev.get('ap_easy', float('nan')):.4f} | "
        f"{ev.get('ap_medium', float('nan')):.4f} | {ev.get('ap_hard', float('nan')):.4f} | "
        f"{ev.get('unmatched_share', float('nan')):.3f} | {comp:.2f} | "
        f"{s.get('seconds', float('nan')):.0f} |"
      )
  return "\n".join(lines)
