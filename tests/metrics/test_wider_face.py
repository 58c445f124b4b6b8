"""WIDER FACE evaluation against an independent brute force, hand cases and toolbox files."""

import numpy as np
import pytest
from scipy.io import savemat

from vision_jax.metrics import (
  read_wider_face_mat,
  read_wider_predictions,
  wider_face_ap,
  wider_face_evaluation,
  write_wider_predictions,
)


def _overlap(d, g):
  """IoU of x,y,w,h boxes with inclusive pixels (x2 = x + w, then +1)."""
  ax1, ay1, ax2, ay2 = d[0], d[1], d[0] + d[2], d[1] + d[3]
  bx1, by1, bx2, by2 = g[0], g[1], g[0] + g[2], g[1] + g[3]
  iw = min(ax2, bx2) - max(ax1, bx1) + 1
  ih = min(ay2, by2) - max(ay1, by1) + 1
  if iw <= 0 or ih <= 0:
    return 0.0
  ua = (ax2 - ax1 + 1) * (ay2 - ay1 + 1) + (bx2 - bx1 + 1) * (by2 - by1 + 1) - iw * ih
  return iw * ih / ua


def _brute_ap(pred, gt, keep, iou_t=0.5, T=1000):
  """Threshold by threshold: re-run the greedy walk on the detections above each threshold."""
  allsc = [s for p in pred for s in np.asarray(p)[:, 4]]
  lo, hi = min(1.0, min(allsc)), max(0.0, max(allsc))
  n_faces = sum(int(np.sum(k)) for k in keep)
  prec, rec = [], []
  for t in range(T):
    thr = 1 - (t + 1) / T
    tp = props = 0
    for p, g, k in zip(pred, gt, keep):
      if len(p) == 0 or len(g) == 0:
        continue
      order = sorted(range(len(p)), key=lambda i: -p[i][4])
      state = [0] * len(g)  # 0 free, 1 recalled, -1 ignored
      for i in order:
        if (p[i][4] - lo) / (hi - lo) < thr:
          break
        ov = [_overlap(p[i], gj) for gj in g]
        j = int(np.argmax(ov))
        counted = True
        if ov[j] >= iou_t:
          if not k[j]:
            state[j], counted = -1, False
          elif state[j] == 0:
            state[j] = 1
        props += counted
      tp += sum(1 for s in state if s == 1)
    prec.append(tp / props if props else np.nan)
    rec.append(tp / n_faces)
  mrec = [0.0] + rec + [1.0]
  mpre = [0.0] + prec + [0.0]
  for i in range(len(mpre) - 1, 0, -1):
    mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
  return sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1)
             if mrec[i + 1] != mrec[i])  # fmt: skip


def _random_set(rng, n_img=12):
  pred, gt, keep = [], [], []
  for i in range(n_img):
    g = 0 if i == 3 else rng.integers(1, 6)
    xy = rng.uniform(0, 200, (g, 2))
    wh = rng.uniform(5, 60, (g, 2))
    faces = np.concatenate([xy, wh], 1).round()
    k = rng.uniform(size=g) < 0.7
    dets = []
    for f in faces:
      for _ in range(rng.integers(0, 3)):  # 0-2 detections per face, jittered (duplicates too)
        dets.append(list(f + rng.normal(0, 0.12 * f[2:].mean(), 4) * [1, 1, 1, 1]) + [0.0])
    for _ in range(rng.integers(0, 3)):  # false positives
      dets.append(list(rng.uniform(0, 200, 2)) + list(rng.uniform(5, 40, 2)) + [0.0])
    dets = np.asarray(dets, np.float64).reshape(-1, 5)
    dets[:, 4] = rng.uniform(0.02, 0.98, len(dets))
    if i == 5:
      dets = dets[:0]  # an image with faces and no detections
    pred.append(dets)
    gt.append(faces.reshape(-1, 4))
    keep.append(k)
  return pred, gt, keep


@pytest.mark.parametrize("seed", range(3))
def test_matches_brute_force(seed):
  pred, gt, keep = _random_set(np.random.default_rng(seed))
  got = wider_face_ap(pred, gt, keep, num_thresholds=200)
  want = _brute_ap(pred, gt, keep, T=200)
  assert 0.05 < want < 1.0
  assert got == pytest.approx(want, abs=1e-9)


def test_hand_case_ignore_duplicate_and_denominator():
  # Image 0: faces A (keep) and B (not kept). Detections: on A (0.9), duplicate on A (0.8),
  # on B (0.7; dropped), background (0.6; false positive).
  gt = [np.array([[0, 0, 20, 20], [50, 50, 20, 20]], float), np.array([[0, 0, 10, 10]], float)]
  keep = [np.array([True, False]), np.array([True])]  # image 1: a kept face, no detections
  pred = [np.array([[0, 0, 20, 20, 0.9], [1, 1, 20, 20, 0.8], [50, 50, 20, 20, 0.7],
                    [100, 100, 10, 10, 0.6]]), np.zeros((0, 5))]  # fmt: skip
  # Recall denominator = 2 (image 1 counts though skipped). Curve: (P=1, R=.5) up to the
  # duplicate, then P=1/2 ... P=1/3. AP = 0.5 * 1 = 0.5 (recall never passes 0.5).
  assert wider_face_ap(pred, gt, keep) == pytest.approx(0.5)
  # Unsorted input gives the same AP (we sort; the port assumes sorted).
  shuffled = [pred[0][[2, 0, 3, 1]], pred[1]]
  assert wider_face_ap(shuffled, gt, keep) == pytest.approx(0.5)
  # Keep B too: the 0.7 detection now recalls it -> two recall levels.
  keep2 = [np.array([True, True]), np.array([True])]
  # Denominator 3: R=1/3 at P=1 (0.9), P=2/3 at 0.8... at 0.7: TP=2 of 3 proposals, R=2/3.
  assert wider_face_ap(pred, gt, keep2) == pytest.approx(1 / 3 * 1.0 + 1 / 3 * 2 / 3)


def test_pixel_convention():
  # x,y,w,h = 0,0,9,9 and 5,0,9,9: inclusive pixels 10x10 each, overlap 5x10 -> 50/150.
  gt = [np.array([[0, 0, 9, 9]], float)]
  keep = [np.array([True])]
  hit = [np.array([[3, 0, 9, 9, 0.9], [50, 50, 5, 5, 0.1]])]  # IoU 70/130 = 0.538 >= 0.5
  miss = [np.array([[5, 0, 9, 9, 0.9], [50, 50, 5, 5, 0.1]])]  # IoU 1/3
  assert wider_face_ap(hit, gt, keep) == pytest.approx(1.0)
  assert wider_face_ap(miss, gt, keep) == pytest.approx(0.0)


def test_bad_input():
  with pytest.raises(ValueError, match="one entry per image"):
    wider_face_ap([np.zeros((0, 5))], [], [])
  with pytest.raises(ValueError, match=r"pred\[0\] must have shape \[n, 5\]"):
    wider_face_ap([np.zeros((2, 4))], [np.zeros((1, 4))], [np.ones(1, bool)])
  with pytest.raises(ValueError, match=r"keep\[0\]"):
    wider_face_ap([np.zeros((0, 5))], [np.zeros((2, 4))], [np.ones(1, bool)])
  with pytest.raises(ValueError, match="span no range"):
    wider_face_ap([np.array([[0, 0, 5, 5, 1.0]])], [np.zeros((1, 4))], [np.ones(1, bool)])


def _cell(items):
  out = np.empty((len(items), 1), dtype=object)
  for i, x in enumerate(items):
    out[i, 0] = x
  return out


def _write_toolbox_mats(d, events, files, boxes, keeps):
  """Writes wider_face_val.mat + wider_{easy,medium,hard}_val.mat in eval_tools' layout."""
  savemat(
    d / "wider_face_val.mat",
    {
      "event_list": _cell([np.array([e]) for e in events]),
      "file_list": _cell([_cell([np.array([f]) for f in fs]) for fs in files]),
      "face_bbx_list": _cell([_cell([np.asarray(b, np.float64) for b in bs]) for bs in boxes]),
    },
  )
  for s in ("easy", "medium", "hard"):
    lists = [
      _cell([(np.flatnonzero(k) + 1).reshape(-1, 1).astype(np.float64) for k in ks])
      for ks in keeps[s]
    ]
    savemat(d / f"wider_{s}_val.mat", {"gt_list": _cell(lists)})


def test_mat_files_and_prediction_tree(tmp_path):
  rng = np.random.default_rng(7)
  pred, gt, _ = _random_set(rng, n_img=6)
  events = ["0--Parade", "1--Handshaking"]
  files = [[f"0_Parade_{i}" for i in range(3)], [f"1_Handshaking_{i}" for i in range(3, 6)]]
  sizes = [g[:, 2] for g in gt]
  keeps = {
    "hard": [[np.ones(len(g), bool) for g in gt[:3]], [np.ones(len(g), bool) for g in gt[3:]]],
    "medium": [[s >= 20 for s in sizes[:3]], [s >= 20 for s in sizes[3:]]],
    "easy": [[s >= 40 for s in sizes[:3]], [s >= 40 for s in sizes[3:]]],
  }
  _write_toolbox_mats(tmp_path, events, files, [gt[:3], gt[3:]], keeps)
  mat = read_wider_face_mat(tmp_path)
  assert mat["events"] == events and mat["files"] == files
  for s in ("easy", "medium", "hard"):
    flat = [k for ks in mat["keep"][s] for k in ks]
    want = [k for ks in keeps[s] for k in ks]
    assert all(np.array_equal(a, b) for a, b in zip(flat, want))
  assert mat["boxes"][0][0].shape == gt[0].shape and mat["boxes"][1][0].shape == (0, 4)
  pdir = tmp_path / "pred"
  for i in range(6):
    write_wider_predictions(pdir, events[i // 3], files[i // 3][i % 3] + ".jpg", pred[i])
  back = read_wider_predictions(pdir)
  np.testing.assert_allclose(back["0--Parade"]["0_Parade_1"], pred[1], atol=1e-3)
  aps = wider_face_evaluation(pdir, tmp_path)
  for s in ("easy", "medium", "hard"):
    keep_flat = [k for ks in keeps[s] for k in ks]
    assert aps[s] == pytest.approx(wider_face_ap(pred, gt, keep_flat), abs=1e-4)
  # Keep indices outside 1..g are reported with the image.
  bad = {s: keeps["hard"] for s in keeps}
  bad_lists = [_cell([np.array([[99.0]]) for _ in range(3)]) for _ in range(2)]
  _write_toolbox_mats(tmp_path, events, files, [gt[:3], gt[3:]], bad)
  savemat(tmp_path / "wider_easy_val.mat", {"gt_list": _cell(bad_lists)})
  with pytest.raises(ValueError, match="keep index"):
    read_wider_face_mat(tmp_path)
  with pytest.raises(FileNotFoundError, match="wider_face_val.mat"):
    read_wider_face_mat(tmp_path / "nowhere")
