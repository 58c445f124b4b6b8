"""Pose-binned closed-set identification (M2FPA / Multi-PIE protocol), host-side NumPy.

Protocol: subjects are split disjointly into train and test; among test subjects, the frontal
``(0, 0)`` image of each subject forms the gallery and every other image is a probe, binned by
its ``(yaw, pitch)`` pose. For bin ``b`` with probes ``P_b``,

.. math::
  \\text{Rank-1}_b = \\frac{1}{|P_b|} \\sum_{p \\in P_b}
    \\mathbb{1}\\big[\\operatorname{label}(\\arg\\max_{g} \\cos(f_p, f_g)) = \\operatorname{label}(p)\\big],

computed with :func:`vision_jax.metrics.identification_cmc` (ties count against the probe).
Poses are an explicit set of (yaw, pitch) pairs (M2FPA's 62 poses are not a full product); a
probe pose outside the set raises.

Choice: the M2FPA paper's split sizes were not retrieved; ``subject_disjoint_split`` draws
``num_test`` test subjects uniformly at random from ``seed``. Pooled bins (e.g. ``|yaw| >= 60``)
weight bins by their probe counts, i.e. they are the Rank-1 over the pooled probes.

References:
  Li, Wu, Hu, He, Sun. "M2FPA: A Multi-Yaw Multi-Pitch High-Quality Dataset and Benchmark for
  Facial Pose Analysis." ICCV 2019, arXiv:1904.00168.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from vision_jax.metrics.identification import identification_cmc


def check_poses(poses: Sequence[Sequence[float]], *, name: str = "poses") -> np.ndarray:
  """Validates an explicit pose set; returns it as float64 ``[P, 2]`` (yaw, pitch) degrees.

  Raises:
    ValueError: not ``[P, 2]``, empty, non-finite, a duplicate pose, or ``|yaw| > 180`` /
      ``|pitch| > 90``.
  """
  arr = np.asarray(poses, np.float64)
  if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
    raise ValueError(f"{name} must be a non-empty sequence of (yaw, pitch) pairs, got shape "
                     f"{arr.shape}.")  # fmt: skip
  if not np.all(np.isfinite(arr)):
    raise ValueError(f"{name} must be finite, got {arr.tolist()}.")
  bad = np.flatnonzero((np.abs(arr[:, 0]) > 180) | (np.abs(arr[:, 1]) > 90))
  if bad.size:
    raise ValueError(f"{name}[{bad[0]}] = {tuple(arr[bad[0]].tolist())} is out of range "
                     "(|yaw| <= 180, |pitch| <= 90).")  # fmt: skip
  _, first, counts = np.unique(arr, axis=0, return_index=True, return_counts=True)
  if np.any(counts > 1):
    dup = arr[first[np.argmax(counts > 1)]].tolist()
    raise ValueError(f"{name} holds the pose {tuple(dup)} more than once.")
  return arr


def pose_index(poses: Sequence[Sequence[float]], yaw: float, pitch: float) -> int:
  """Index of ``(yaw, pitch)`` in the explicit pose set ``poses``.

  Raises:
    ValueError: the pose is not in the set (the message names the pose and the set's size).
  """
  arr = np.asarray(poses, np.float64)
  hit = np.flatnonzero((arr[:, 0] == yaw) & (arr[:, 1] == pitch))
  if hit.size == 0:
    raise ValueError(
      f"pose (yaw={yaw}, pitch={pitch}) is not in the pose set of {len(arr)} poses "
      f"(yaws {sorted(set(arr[:, 0].tolist()))}, pitches {sorted(set(arr[:, 1].tolist()))})."
    )
  return int(hit[0])


def subject_disjoint_split(subjects, *, num_test: int, seed: int = 0) -> np.ndarray:
  """Bool ``[N]`` mask of test images: all images of ``num_test`` randomly drawn subjects.

  Args:
    subjects: ``[N]`` subject id of each image (any hashable dtype NumPy can ``unique``).
    num_test: number of test subjects, ``1 <= num_test < number of subjects``.
    seed: seed of the draw.

  Raises:
    ValueError: ``num_test`` out of range.
  """
  subjects = np.asarray(subjects).reshape(-1)
  uniq = np.unique(subjects)
  if not 1 <= int(num_test) < len(uniq):
    raise ValueError(
      f"subject_disjoint_split: num_test must be in [1, {len(uniq) - 1}] for {len(uniq)} "
      f"subjects, got {num_test!r}."
    )
  test = np.random.default_rng(seed).choice(uniq, size=int(num_test), replace=False)
  return np.isin(subjects, test)


class PoseRank1(NamedTuple):
  poses: np.ndarray  # float64 [P, 2] (yaw, pitch), the explicit pose set
  rank1: np.ndarray  # float64 [P]; NaN where a pose has no probe
  count: np.ndarray  # int64 [P] probes per pose


def rank1_per_pose(
  probe_features,
  probe_labels,
  probe_poses,
  gallery_features,
  gallery_labels,
  poses: Sequence[Sequence[float]],
) -> PoseRank1:
  """Rank-1 identification of probes against the gallery, per pose of the explicit set.

  Args:
    probe_features: ``[N, D]``. probe_labels: ``[N]`` int subject labels.
    probe_poses: ``[N, 2]`` (yaw, pitch) of each probe, each in ``poses``.
    gallery_features: ``[G, D]`` (e.g. one frontal image per test subject). gallery_labels: ``[G]``.
    poses: the explicit pose set (see :func:`check_poses`).

  Returns:
    ``PoseRank1(poses [P, 2], rank1 [P], count [P])``.

  Raises:
    ValueError: a probe pose outside ``poses`` (named with its row), a probe subject missing
      from the gallery, or bad shapes / non-finite features.
  """
  poses = check_poses(poses)
  probe_poses = np.asarray(probe_poses, np.float64)
  labels = np.asarray(probe_labels).reshape(-1)
  if probe_poses.shape != (len(labels), 2):
    raise ValueError(
      f"probe_poses must be [{len(labels)}, 2] (one (yaw, pitch) per probe), got "
      f"{probe_poses.shape}."
    )
  match = (probe_poses[:, None, :] == poses[None, :, :]).all(-1)  # [N, P]
  missing = np.flatnonzero(~match.any(1))
  if missing.size:
    i = int(missing[0])
    pose_index(poses, *probe_poses[i].tolist())  # raises naming the pose
  no_mate = np.flatnonzero(~np.isin(labels, np.asarray(gallery_labels).reshape(-1)))
  if no_mate.size:
    raise ValueError(
      f"probe {int(no_mate[0])} has subject {labels[no_mate[0]].item()!r}, which is not in the gallery "
      f"({no_mate.size} such probes); the gallery must hold every test subject."
    )
  which = match.argmax(1)
  rank1 = np.full(len(poses), np.nan)
  count = np.bincount(which, minlength=len(poses)).astype(np.int64)
  probe_features = np.asarray(probe_features)
  for k in np.flatnonzero(count):
    sel = which == k
    rank1[k] = identification_cmc(
      probe_features[sel], labels[sel], gallery_features, gallery_labels, ranks=(1,)
    )[1]
  return PoseRank1(poses, rank1, count)


def pooled_rank1(result: PoseRank1, where) -> float:
  """Rank-1 over the probes of all poses where ``where(yaw, pitch)`` holds (count-weighted).

  Raises:
    ValueError: no probe falls in the pooled bins.
  """
  sel = np.array([bool(where(y, p)) for y, p in result.poses]) & (result.count > 0)
  if not sel.any():
    raise ValueError("pooled_rank1: no probe in the selected poses.")
  return float(np.sum(result.rank1[sel] * result.count[sel]) / np.sum(result.count[sel]))


def rank1_table(result: PoseRank1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The benchmark table: ``(yaws [Y], pitches [Q] descending, rank1 [Q, Y])``, NaN off-set."""
  yaws = np.unique(result.poses[:, 0])
  pitches = np.unique(result.poses[:, 1])[::-1]
  table = np.full((len(pitches), len(yaws)), np.nan)
  for (y, p), r in zip(result.poses, result.rank1):
    table[np.searchsorted(-pitches, -p), np.searchsorted(yaws, y)] = r
  return yaws, pitches, table
