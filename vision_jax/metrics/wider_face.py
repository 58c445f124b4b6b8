"""The WIDER FACE evaluation (``eval_tools``) with the semantics of its widely used Python port.

Per setting (easy / medium / hard) the toolbox

1. min–max normalises every detection score over the whole set (with the port's initial values:
   ``min = min(1, global min)``, ``max = max(0, global max)``);
2. per image, walks the detections in order; a detection whose best-IoU face (IoU with the
   ``+1`` pixel convention) reaches ``iou_thresh`` and is outside the keep-list is dropped
   (neither a true nor a false positive) and that face is marked ignored; if the face is in the
   keep-list and not yet recalled it becomes recalled; a second detection on a recalled face is
   still a proposal but adds no recall;
3. at each of ``num_thresholds`` thresholds ``1 - (t + 1) / T`` counts, per image, the
   proposals and recalled faces among the detections scoring at least the threshold, sums them
   over images, and divides: precision = recalled / proposals, recall = recalled / (number of
   keep-list faces over *all* images, including those skipped for having no ground truth or no
   detections);
4. AP is the VOC all-point interpolated area under that curve.

References:
  Yang, Luo, Loy, Tang. "WIDER FACE: A Face Detection Benchmark." CVPR 2016. arXiv:1511.06523.
  The MATLAB ``eval_tools/wider_eval.m`` and its Python port ``wondervictor/WiderFace-Evaluation``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

SETTINGS = ("easy", "medium", "hard")


def _as_list(name, x, width):
  out = []
  for i, a in enumerate(x):
    a = np.asarray(a, np.float64)
    if a.size == 0:
      a = a.reshape(0, width)
    if a.ndim != 2 or a.shape[1] != width:
      raise ValueError(f"{name}[{i}] must have shape [n, {width}]; got {a.shape}.")
    if not np.all(np.isfinite(a)):
      raise ValueError(f"{name}[{i}] holds non-finite values.")
    out.append(a)
  return out


def pixel_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
  """The toolbox's ``bbox_overlaps``: IoU of ``x1 y1 x2 y2`` boxes with ``+1`` in widths and
  heights (inclusive pixel convention). ``[n, 4] x [g, 4] -> [n, g]``."""
  pred = np.asarray(pred, np.float64)
  gt = np.asarray(gt, np.float64)
  iw = np.minimum(pred[:, None, 2], gt[None, :, 2]) - np.maximum(pred[:, None, 0], gt[None, :, 0])
  ih = np.minimum(pred[:, None, 3], gt[None, :, 3]) - np.maximum(pred[:, None, 1], gt[None, :, 1])
  iw, ih = iw + 1, ih + 1
  area_p = (pred[:, 2] - pred[:, 0] + 1) * (pred[:, 3] - pred[:, 1] + 1)
  area_g = (gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1)
  inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
  union = area_p[:, None] + area_g[None, :] - inter
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(inter > 0, inter / union, 0.0)


def _image_eval(pred, gt, keep, iou_thresh):
  """Per-detection cumulative recall count and proposal flag (1 counts, -1 dropped)."""
  p = pred[:, :4].copy()
  p[:, 2:] += p[:, :2]
  g = gt.copy()
  g[:, 2:] += g[:, :2]
  overlaps = pixel_iou(p, g)
  recall = np.zeros(len(g))
  proposal = np.ones(len(p))
  pred_recall = np.zeros(len(p))
  for h in range(len(p)):
    j = int(np.argmax(overlaps[h]))
    if overlaps[h, j] >= iou_thresh:
      if not keep[j]:
        recall[j] = -1
        proposal[h] = -1
      elif recall[j] == 0:
        recall[j] = 1
    pred_recall[h] = np.sum(recall == 1)
  return pred_recall, proposal


def wider_face_pr_curve(
  pred: Sequence[np.ndarray],
  gt: Sequence[np.ndarray],
  keep: Sequence[np.ndarray],
  *,
  iou_thresh: float = 0.5,
  num_thresholds: int = 1000,
) -> tuple[np.ndarray, np.ndarray]:
  """The toolbox's precision and recall at ``num_thresholds`` score thresholds.

  Args: as :func:`wider_face_ap`.

  Returns:
    ``(precision [T], recall [T])`` at thresholds ``1 - (t + 1) / T``, ``t = 0..T-1``.
    Precision is NaN where no proposal reaches the threshold (0/0, as in the port; it only
    happens at recall 0, where it does not affect AP).
  """
  n = len(pred)
  if len(gt) != n or len(keep) != n:
    raise ValueError(
      f"pred, gt and keep must have one entry per image; got {n}, {len(gt)}, {len(keep)}."
    )
  if not 0.0 <= iou_thresh <= 1.0:
    raise ValueError(f"iou_thresh={iou_thresh} must be in [0, 1].")
  if int(num_thresholds) < 1:
    raise ValueError(f"num_thresholds={num_thresholds} must be >= 1.")
  pred = _as_list("pred", pred, 5)
  gt = _as_list("gt", gt, 4)
  keeps = []
  for i, (k, g) in enumerate(zip(keep, gt)):
    k = np.asarray(k, bool).reshape(-1)
    if k.shape != (len(g),):
      raise ValueError(f"keep[{i}] must have shape [{len(g)}] (one flag per face); got {k.shape}.")
    keeps.append(k)
  scores = [p[:, 4] for p in pred if len(p)]
  lo, hi = 1.0, 0.0
  if scores:
    allp = np.concatenate(scores)
    lo, hi = min(1.0, float(allp.min())), max(0.0, float(allp.max()))
  if scores and hi - lo <= 0:
    raise ValueError(
      f"pred scores span no range (min-max normalisation divides by max - min = {hi - lo}); "
      "the toolbox would produce NaN. Pass scores that are not all equal."
    )
  thresh = 1.0 - (np.arange(num_thresholds) + 1) / num_thresholds
  pr = np.zeros((num_thresholds, 2))
  count_face = 0
  for p, g, k in zip(pred, gt, keeps):
    count_face += int(k.sum())
    if len(g) == 0 or len(p) == 0:
      continue
    # Choice: the port assumes each image's detections are sorted by descending score; we sort
    # (stable), so unsorted input is evaluated as the toolbox intends.
    p = p[np.argsort(-p[:, 4], kind="stable")].copy()
    p[:, 4] = (p[:, 4] - lo) / (hi - lo)
    pred_recall, proposal = _image_eval(p, g, k, iou_thresh)
    # Detections are sorted, so "the last index scoring >= thresh" is a count minus one.
    n_above = np.sum(p[:, 4][None, :] >= thresh[:, None], axis=1)
    has = n_above > 0
    last = np.maximum(n_above - 1, 0)
    cum_prop = np.cumsum(proposal == 1)
    pr[:, 0] += np.where(has, cum_prop[last], 0)
    pr[:, 1] += np.where(has, pred_recall[last], 0)
  with np.errstate(divide="ignore", invalid="ignore"):
    precision = pr[:, 1] / pr[:, 0]
    recall = pr[:, 1] / count_face
  return precision, recall


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
  """VOC all-point interpolated AP (the toolbox's ``voc_ap``), NaN-propagating like NumPy."""
  mrec = np.concatenate(([0.0], recall, [1.0]))
  mpre = np.concatenate(([0.0], precision, [0.0]))
  for i in range(mpre.size - 1, 0, -1):
    mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
  i = np.where(mrec[1:] != mrec[:-1])[0]
  return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def wider_face_ap(
  pred: Sequence[np.ndarray],
  gt: Sequence[np.ndarray],
  keep: Sequence[np.ndarray],
  iou_thresh: float = 0.5,
  num_thresholds: int = 1000,
) -> float:
  """WIDER FACE average precision for one setting, as the toolbox's Python port computes it.

  Args:
    pred: per image, ``[n, 5]`` detections ``x, y, w, h, score`` (the toolbox's detection
      files). Any order within an image (we sort by descending score).
    gt: per image, ``[g, 4]`` faces ``x, y, w, h`` (``wider_face_val_bbx_gt.txt``).
    keep: per image, ``[g]`` bool keep-list of the setting (faces outside it are ignored).
    iou_thresh: match threshold.
    num_thresholds: number of score thresholds.

  Returns:
    AP in [0, 1].

  Raises:
    ValueError: lists of different lengths, arrays of the wrong width, non-finite values,
      a keep-list whose length differs from its image's face count, or all scores equal.

  Choice: NaN precision where no detection reaches a threshold is kept as the port does; it
    only occurs at recall 0 and drops out of the AP sum. The AP is NaN only when there is no
    keep-list face at all (recall 0/0).
  """
  precision, recall = wider_face_pr_curve(
    pred, gt, keep, iou_thresh=iou_thresh, num_thresholds=num_thresholds
  )
  return voc_ap(recall, precision)


# --- toolbox files ---------------------------------------------------------------------------


def write_wider_predictions(
  root: str | os.PathLike, event: str, image_name: str, dets: np.ndarray
) -> str:
  """Writes one detection file ``root/<event>/<image stem>.txt`` in the toolbox's format.

  Line 1: the image name; line 2: the number of detections; then ``x y w h score`` per line.

  Returns:
    The path written.

  Raises:
    ValueError: ``dets`` not ``[n, 5]``.
  """
  dets = np.asarray(dets, np.float64).reshape(-1, 5) if np.size(dets) == 0 else np.asarray(dets)
  if dets.ndim != 2 or dets.shape[1] != 5:
    raise ValueError(f"dets for {event}/{image_name} must be [n, 5]; got {dets.shape}.")
  stem = os.path.splitext(os.path.basename(image_name))[0]
  d = os.path.join(os.fspath(root), event)
  os.makedirs(d, exist_ok=True)
  path = os.path.join(d, stem + ".txt")
  with open(path, "w") as f:
    f.write(f"{stem}\n{len(dets)}\n")
    for x, y, w, h, s in dets:
      f.write(f"{x:.3f} {y:.3f} {w:.3f} {h:.3f} {s:.6f}\n")
  return path


def read_wider_prediction_file(path: str | os.PathLike) -> tuple[str, np.ndarray]:
  """Reads one detection file: ``(image stem, [n, 5])``.

  Raises:
    ValueError: fewer than 2 lines, a count that disagrees with the box lines, or a line that
      does not parse (names file and line number).
  """
  with open(path) as f:
    lines = f.read().splitlines()
  if len(lines) < 2:
    raise ValueError(f"{path}: expected the image name and a count on lines 1-2.")
  name = os.path.splitext(lines[0].strip().split("/")[-1])[0]
  try:
    count = int(lines[1].strip())
  except ValueError:
    raise ValueError(f"{path}:2: expected the number of detections, got {lines[1]!r}.") from None
  rows = []
  for ln, line in enumerate(lines[2:], start=3):
    parts = line.split()
    if not parts:
      continue
    try:
      rows.append([float(v) for v in parts[:5]])
      if len(parts) < 5:
        raise ValueError
    except ValueError:
      raise ValueError(f"{path}:{ln}: expected 'x y w h score', got {line!r}.") from None
  if len(rows) != count:
    raise ValueError(f"{path}: line 2 says {count} detections, found {len(rows)}.")
  return name, np.asarray(rows, np.float64).reshape(-1, 5)


def read_wider_predictions(root: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
  """Reads a toolbox prediction tree ``root/<event>/<image>.txt`` -> ``{event: {stem: dets}}``.

  Raises:
    FileNotFoundError: ``root`` is not a directory.
  """
  root = os.fspath(root)
  if not os.path.isdir(root):
    raise FileNotFoundError(f"prediction directory {root} does not exist.")
  out = {}
  for event in sorted(os.listdir(root)):
    d = os.path.join(root, event)
    if not os.path.isdir(d):
      continue
    out[event] = dict(
      read_wider_prediction_file(os.path.join(d, fn)) for fn in sorted(os.listdir(d))
      if fn.endswith(".txt")
    )  # fmt: skip
  return out


def read_wider_face_mat(gt_dir: str | os.PathLike) -> dict:
  """Reads the toolbox's ground truth: ``wider_face_val.mat`` and the three keep-list files.

  Returns:
    ``{"events": [E] names, "files": [E] lists of image stems, "boxes": [E] lists of [g, 4]
    ``x, y, w, h``, "keep": {setting: [E] lists of [g] bool}}``; keep-lists come from
    ``wider_{easy,medium,hard}_val.mat`` ``gt_list`` (1-based face indices).

  Raises:
    FileNotFoundError: a ``.mat`` file is missing (names it).
    ValueError: a keep index outside ``1..g`` (names file, event and image).
  """
  from scipy.io import loadmat

  gt_dir = os.fspath(gt_dir)

  def load(name):
    path = os.path.join(gt_dir, name)
    if not os.path.exists(path):
      raise FileNotFoundError(
        f"{path} is missing; it ships in the WIDER FACE eval_tools/ground_truth folder."
      )
    return loadmat(path), path

  gt_mat, _ = load("wider_face_val.mat")
  events = [str(e[0][0]) for e in gt_mat["event_list"]]
  files, boxes = [], []
  for i in range(len(events)):
    files.append([str(f[0][0]) for f in gt_mat["file_list"][i][0]])
    boxes.append(
      [np.asarray(b[0], np.float64).reshape(-1, 4) for b in gt_mat["face_bbx_list"][i][0]]
    )
  keep = {}
  for setting in SETTINGS:
    mat, path = load(f"wider_{setting}_val.mat")
    per_event = []
    for i, ev in enumerate(events):
      lists = mat["gt_list"][i][0]
      per_img = []
      for j in range(len(files[i])):
        idx = np.asarray(lists[j][0]).reshape(-1).astype(np.int64)
        g = len(boxes[i][j])
        if idx.size and (idx.min() < 1 or idx.max() > g):
          raise ValueError(
            f"{path}: {ev}/{files[i][j]} keep index {idx.tolist()} outside 1..{g} (1-based)."
          )
        k = np.zeros(g, bool)
        k[idx - 1] = True
        per_img.append(k)
      per_event.append(per_img)
    keep[setting] = per_event
  return {"events": events, "files": files, "boxes": boxes, "keep": keep}


def wider_face_evaluation(
  pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, *, iou_thresh: float = 0.5
) -> dict[str, float]:
  """The toolbox end to end: prediction tree + ``.mat`` ground truth -> ``{setting: AP}``.

  Raises:
    FileNotFoundError: missing files; KeyError naming the event/image with no prediction file.
  """
  gt = read_wider_face_mat(gt_dir)
  preds = read_wider_predictions(pred_dir)
  p_list, g_list, idx = [], [], []
  for i, ev in enumerate(gt["events"]):
    if ev not in preds:
      raise KeyError(f"no prediction folder {os.path.join(os.fspath(pred_dir), ev)}")
    for j, f in enumerate(gt["files"][i]):
      if f not in preds[ev]:
        raise KeyError(f"no prediction file for {ev}/{f}.txt under {pred_dir}")
      p_list.append(preds[ev][f])
      g_list.append(gt["boxes"][i][j])
      idx.append((i, j))
  return {
    s: wider_face_ap(p_list, g_list, [gt["keep"][s][i][j] for i, j in idx], iou_thresh)
    for s in SETTINGS
  }
