"""Detection benchmark: jitted NMS and HAMBox assignment vs NumPy (and torchvision when installed).

Same boxes, same run, warm-up excluded, ``block_until_ready``::

    .venv/bin/python benchmarks/bench_detection.py --anchors=10000,30000,100000 --out=runs/bench_det

Part 1 (NMS): ``vision_jax.detection.nms`` (greedy, ``max_output`` slots, O(max_output * N)) vs
a NumPy greedy NMS (sort + vectorised IoU row per kept box) vs ``torchvision.ops.nms`` if
importable; outputs are checked to agree. Part 2 (assignment): ``hambox_assign`` vmapped over a
batch vs a NumPy restatement. Part 3: train-step images/s of the experiment's default detector.
Prints device kind and versions and each ratio to the NumPy baseline.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.detection import hambox_assign, nms
from vision_jax.utils import package_versions


def _boxes(rng, n, size=1024.0):
  c = rng.uniform(0, size, (n, 2))
  wh = rng.uniform(8, 96, (n, 2))
  return np.concatenate([c - wh / 2, c + wh / 2], 1).astype(np.float32)


def numpy_nms(boxes, scores, thr, max_out):
  order = np.argsort(-scores, kind="stable")
  area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  keep = []
  while order.size and len(keep) < max_out:
    i = order[0]
    keep.append(int(i))
    rest = order[1:]
    lt = np.maximum(boxes[i, :2], boxes[rest, :2])
    rb = np.minimum(boxes[i, 2:], boxes[rest, 2:])
    wh = np.maximum(rb - lt, 0)
    inter = wh[:, 0] * wh[:, 1]
    iou = inter / (area[i] + area[rest] - inter + 1e-9)
    order = rest[iou <= thr]
  return keep


def numpy_assign(anchors, reg, gt, t1=0.35, t2=0.5, k=5):
  def iou(a, b):
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.maximum(rb - lt, 0)
    inter = wh[..., 0] * wh[..., 1]
    ar = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
    return inter / (ar(a)[:, None] + ar(b)[None] - inter + 1e-9)

  o = iou(anchors, gt)
  labels = (o.max(1) >= t1).astype(np.int32)
  matched = o.argmax(1)
  best = o.argmax(0)
  labels[best] = 1
  matched[best] = np.arange(len(gt))
  m = np.bincount(matched[labels == 1], minlength=len(gt))
  r = iou(reg, gt)
  cand = (labels == 0) & (r.max(1) >= t2)
  bg = r.argmax(1)
  for j in range(len(gt)):
    idx = np.flatnonzero(cand & (bg == j))
    idx = idx[np.argsort(-r[idx, j], kind="stable")][: max(0, k - m[j])]
    labels[idx] = 2
  labels[cand & (labels == 0)] = -1
  return labels


def _run_jax(fn, *args):
  return jax.block_until_ready(fn(*args))


def _repeat(n, fn, *args):
  return [fn(*args) for _ in range(n)]


def _time(fn, repeats):
  fn()
  t = time.perf_counter()
  for _ in range(repeats):
    fn()
  return (time.perf_counter() - t) / repeats


def main(argv=None):
  p = argparse.ArgumentParser()
  p.add_argument("--anchors", default="10000,30000,100000")
  p.add_argument("--faces", type=int, default=50)
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--max_output", type=int, default=750)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--train_step", action=argparse.BooleanOptionalAction, default=True)
  p.add_argument("--out", default="")
  args = p.parse_args(argv)
  try:
    import torch
    import torchvision
  except ImportError:
    torch = torchvision = None
  dev = jax.devices()[0]
  print(f"device: {dev.device_kind} ({jax.default_backend()}), versions: "
        f"{ {k: v for k, v in package_versions().items() if k in ('jax', 'jaxlib', 'numpy')} }, "
        f"torchvision: {getattr(torchvision, '__version__', 'not installed')}")  # fmt: skip
  rng = np.random.default_rng(0)
  rows = []
  for n in [int(v) for v in args.anchors.split(",")]:
    boxes = _boxes(rng, n)
    scores = rng.uniform(size=n).astype(np.float32)
    jn = jax.jit(functools.partial(nms, iou_threshold=0.3, max_output=args.max_output))
    bj, sj = jnp.asarray(boxes), jnp.asarray(scores)
    t_jax = _time(functools.partial(_run_jax, jn, bj, sj), args.repeats)
    t_np = _time(functools.partial(numpy_nms, boxes, scores, 0.3, args.max_output), args.repeats)
    idx, valid = map(np.asarray, jn(bj, sj))
    agree = list(idx[valid]) == numpy_nms(boxes, scores, 0.3, args.max_output)
    row = {"part": "nms", "n": n, "jax_ms": 1e3 * t_jax, "numpy_ms": 1e3 * t_np,
           "numpy_over_jax": t_np / t_jax, "outputs_agree": agree}  # fmt: skip
    if torchvision is not None:
      tb, ts = torch.from_numpy(boxes), torch.from_numpy(scores)
      t_tv = _time(functools.partial(torchvision.ops.nms, tb, ts, 0.3), args.repeats)
      tv_keep = torchvision.ops.nms(tb, ts, 0.3).numpy()[: args.max_output]
      row.update(
        torchvision_ms=1e3 * t_tv,
        torchvision_over_jax=t_tv / t_jax,
        torchvision_agree=list(tv_keep) == list(idx[valid]),
        torch_threads=torch.get_num_threads(),
      )
    rows.append(row)
    print(row)
    # Assignment: a batch of images, anchors + regressed boxes near the faces.
    gt = _boxes(rng, args.faces)
    reg = boxes + rng.normal(0, 4, boxes.shape).astype(np.float32)
    ja = jax.jit(jax.vmap(hambox_assign, in_axes=(None, 0, 0, 0)))
    R = jnp.asarray(np.repeat(reg[None], args.batch, 0))
    G = jnp.asarray(np.repeat(gt[None], args.batch, 0))
    M = jnp.ones((args.batch, args.faces), bool)
    t_ja = _time(functools.partial(_run_jax, ja, bj, R, G, M), args.repeats)
    t_na = _time(functools.partial(_repeat, args.batch, numpy_assign, boxes, reg, gt), args.repeats)
    lab = np.asarray(ja(bj, R, G, M)[0][0])
    ref = numpy_assign(boxes, reg, gt)
    row = {"part": "assign", "n": n, "batch": args.batch, "faces": args.faces,
           "jax_ms": 1e3 * t_ja, "numpy_ms": 1e3 * t_na, "numpy_over_jax": t_na / t_ja,
           "label_agreement": float(np.mean(lab == ref))}  # fmt: skip
    rows.append(row)
    print(row)
  if args.train_step:
    rows.append(_train_step_rate(args))
    print(rows[-1])
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_detection.json"), "w") as f:
      json.dump({"device": dev.device_kind, "rows": rows}, f, indent=1)
  return rows


def _train_step_rate(args):
  import optax

  from experiments.hambox import config, train
  from vision_jax.detection import anchor_boxes
  from vision_jax.detection.model import build_detector
  from vision_jax.detection.task import detection_task
  from vision_jax.train import create_train_state, make_mesh, make_train_step, to_global_batch

  cfg = config.get_config("default")
  with cfg.unlocked():
    cfg.data.num_train, cfg.data.num_test = cfg.data.global_batch_size, 1
  tr, _, _, size = train.make_sources(cfg)
  m = cfg.model
  anchors = anchor_boxes(size, tuple(m.strides), tuple(m.sizes), scale=float(m.anchor_scale))
  task = detection_task(build_detector(m), anchors, train.detection_config(cfg, "hambox"),
                        image_size=size)  # fmt: skip
  mesh = make_mesh()
  b = cfg.data.global_batch_size
  batch = to_global_batch(
    {k: np.stack([tr[i][k] for i in range(b)]) for k in ("image", "boxes", "box_mask")}, mesh
  )
  tx = optax.adamw(1e-3)
  state, sh = create_train_state(task, tx, jax.random.PRNGKey(0), batch, mesh)
  step = make_train_step(task, tx, None, mesh, sh)
  holder = [state]

  def run():
    holder[0], met = step(holder[0], batch)
    jax.block_until_ready(met)

  t = _time(run, args.repeats)
  return {"part": "train_step", "batch": b, "images_per_s": b / t, "step_ms": 1e3 * t}


if __name__ == "__main__":
  main()
