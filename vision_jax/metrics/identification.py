"""Closed-set identification with distractors (MegaFace-style), host-side NumPy.

Similarities are cosines of L2-normalised features. Ranks count ties *against* the probe
(pessimistic): rank = 1 + number of wrong items scoring >= the best true match.
"""

from __future__ import annotations

import numpy as np

from vision_jax.metrics._checks import unit_rows


def _normalize(x, name):
  return unit_rows(x, name, np.float32)


def _mask(x, mask):
  return x if mask is None else x[np.asarray(mask, bool)]


def _check_ranks(ranks):
  ranks = tuple(int(r) for r in np.atleast_1d(ranks))
  if not ranks or min(ranks) < 1:
    raise ValueError(f"ranks must be positive integers; got {ranks}.")
  return ranks


def identification_cmc(
  probe_features,
  probe_labels,
  gallery_features,
  gallery_labels,
  *,
  distractor_features=None,
  ranks=(1, 5, 10),
  probe_mask=None,
  gallery_mask=None,
  distractor_mask=None,
  chunk: int = 1024,
) -> dict[int, float]:
  """Rank-k identification accuracy of probes against gallery ∪ distractors.

  A probe is correct at rank k when a gallery item with its label is among the k most similar
  items of gallery ∪ distractors (distractors never match).

  Args:
    probe_features: ``[P, D]``. probe_labels: ``[P]`` int.
    gallery_features: ``[G, D]``. gallery_labels: ``[G]`` int.
    distractor_features: optional ``[N, D]`` (MegaFace distractor set).
    ranks: which k to report.
    probe_mask, gallery_mask, distractor_mask: optional bool masks (False = padding).
    chunk: probes per block of the similarity matmul.

  Returns:
    ``{k: accuracy in [0, 1]}`` over probes whose label occurs in the gallery.

  Raises:
    ValueError: bad shapes, non-finite features, or no probe with a gallery mate.

  Choice: probes without a mate in the gallery are excluded (open-set rejection is a different
  protocol).
  """
  ranks = _check_ranks(ranks)
  p = _mask(_normalize(probe_features, "probe_features"), probe_mask)
  pl = _mask(np.asarray(probe_labels).reshape(-1), probe_mask)
  g = _mask(_normalize(gallery_features, "gallery_features"), gallery_mask)
  gl = _mask(np.asarray(gallery_labels).reshape(-1), gallery_mask)
  if len(p) != len(pl) or len(g) != len(gl) or p.shape[1] != g.shape[1]:
    raise ValueError(f"shapes disagree: probe {p.shape}/{pl.shape}, gallery {g.shape}/{gl.shape}.")
  d = None
  if distractor_features is not None:
    d = _mask(_normalize(distractor_features, "distractor_features"), distractor_mask)
    if d.shape[1] != p.shape[1]:
      raise ValueError(f"distractor dim {d.shape[1]} != probe dim {p.shape[1]}.")
  has_mate = np.isin(pl, gl)
  if not has_mate.any():
    raise ValueError("no probe label occurs in the gallery.")
  p, pl = p[has_mate], pl[has_mate]
  hits = np.zeros(len(ranks))
  for s in range(0, len(p), chunk):
    sim = p[s : s + chunk] @ g.T
    same = pl[s : s + chunk, None] == gl[None, :]
    best_true = np.where(same, sim, -np.inf).max(axis=1)
    rank = 1 + np.sum(np.where(same, False, sim >= best_true[:, None]), axis=1)
    if d is not None:
      rank += np.sum(p[s : s + chunk] @ d.T >= best_true[:, None], axis=1)
    hits += (rank[:, None] <= np.asarray(ranks)[None, :]).sum(axis=0)
  return {k: float(h / len(p)) for k, h in zip(ranks, hits)}


def megaface_identification(
  features,
  labels,
  distractor_features,
  *,
  ranks=(1,),
  mask=None,
  distractor_mask=None,
  chunk: int = 1024,
) -> dict[int, float]:
  """MegaFace Challenge 1 identification: each probe image against ONE mate plus distractors.

  For every ordered pair (p, g), p != g, of images of the same identity (FaceScrub), the
  gallery is {g} ∪ distractors and the rank of g is 1 + #{d : s(p, d) >= s(p, g)}.

  Args:
    features: ``[N, D]`` probe-set features. labels: ``[N]`` int identities.
    distractor_features: ``[M, D]`` (1M in MegaFace).
    ranks: which k to report. mask, distractor_mask: optional bool masks.
    chunk: probes per block of the distractor matmul.

  Returns:
    ``{k: accuracy over all same-identity ordered pairs}``.

  References:
    I. Kemelmacher-Shlizerman et al. The MegaFace Benchmark: 1 Million Faces for Recognition at
    Scale. CVPR 2016.
  """
  ranks = _check_ranks(ranks)
  f = _mask(_normalize(features, "features"), mask)
  lab = _mask(np.asarray(labels).reshape(-1), mask)
  d = _mask(_normalize(distractor_features, "distractor_features"), distractor_mask)
  if len(f) != len(lab) or f.shape[1] != d.shape[1]:
    raise ValueError(
      f"shapes disagree: features {f.shape}, labels {lab.shape}, distractors {d.shape}."
    )
  hits = np.zeros(len(ranks))
  pairs = 0
  for s in range(0, len(f), chunk):
    fs = f[s : s + chunk]
    dsim = np.sort(fs @ d.T, axis=1)  # ascending per probe
    msim = fs @ f.T
    mate = lab[s : s + chunk, None] == lab[None, :]
    mate[np.arange(len(fs)), np.arange(s, s + len(fs))] = False
    for i in range(len(fs)):
      sg = msim[i, mate[i]]
      # number of distractors with similarity >= s(p, g)
      n_above = d.shape[0] - np.searchsorted(dsim[i], sg, side="left")
      rank = 1 + n_above
      hits += (rank[:, None] <= np.asarray(ranks)[None, :]).sum(axis=0)
      pairs += len(sg)
  if pairs == 0:
    raise ValueError("no identity has two or more images; MegaFace needs probe/mate pairs.")
  return {k: float(h / pairs) for k, h in zip(ranks, hits)}
