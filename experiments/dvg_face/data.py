"""Embedded (offline) heterogeneous face data for the DVG-Face experiment.

**Photo ↔ sketch pseudo-identities.** Identities are those of the IR-Softmax experiment's
pseudo-identity set (`experiments.ir_softmax.data`): every real image of scikit-image's
``lfw_subset`` (100 LFW face crops + 100 non-face patches, 25x25) and every natural image of
``skimage.data`` is one *pseudo-identity*; a sample is a random view (crop, flip, photometric
jitter, noise). Modality ``b`` ("photo", the gallery side, the modality the identity network is
trained on) is the view itself; modality ``a`` ("sketch", the probe side) is an XDoG line drawing
of an independent view of the same picture (or, with ``modality="nir"``, an NIR-like tone curve,
blur and sensor noise). Identities are split subject-disjoint into train and test. This is NOT
CASIA NIR-VIS 2.0 or CUFSF: identities are image instances, and "same identity" means "views of
the same picture".

Protocol (CASIA NIR-VIS 2.0 View 2 shape): each of ``num_folds`` folds has a gallery of one photo
per test identity and a random half of the test sketches as probes.

Choice: the folds share one train/test split (only the gallery/probe draw changes), so the ± std
measures evaluation variance, not training-split variance as in CASIA's 10 folds.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from vision_jax import data as vdata


def xdog(
  img: np.ndarray,
  *,
  sigma: float = 1.0,
  k: float = 1.6,
  p: float = 10.0,
  eps: float = 0.5,
  phi: float = 8.0,
) -> np.ndarray:
  """eXtended difference of Gaussians line drawing of a grey image in ``[0, 1]``.

  .. math::

    S = (1 + p) G_\\sigma * I - p\\, G_{k\\sigma} * I, \\qquad
    T = \\begin{cases} 1 & S \\ge \\varepsilon \\\\ 1 + \\tanh(\\varphi (S - \\varepsilon)) &
    \\text{else} \\end{cases}

  References:
    H. Winnemöller, J. E. Kyprianidis, S. C. Olsen. "XDoG: An eXtended difference-of-Gaussians
    compendium including advanced image stylization." Computers & Graphics 36(6), 2012.
  """
  img = np.asarray(img, np.float64)
  s = (1 + p) * gaussian_filter(img, sigma) - p * gaussian_filter(img, k * sigma)
  return np.clip(np.where(s >= eps, 1.0, 1.0 + np.tanh(phi * (s - eps))), 0.0, 1.0)


def nir_like(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """An NIR-like rendering: flattened tones (gamma 0.5, lower contrast), blur, sensor noise."""
  img = np.asarray(img, np.float64)
  a = np.power(np.clip(img, 0, 1), 0.5)
  a = 0.3 + 0.6 * (a - a.min()) / max(a.max() - a.min(), 1e-6)
  a = gaussian_filter(a, 0.7) + rng.normal(0, 0.05, a.shape)
  return np.clip(a, 0.0, 1.0)


def _to_u8(a: np.ndarray) -> np.ndarray:
  return (np.clip(a, 0, 1) * 255).round().astype(np.uint8)


def _view(base, rng, size, modality):
  """One sample: ``"photo"`` = a random view; ``"sketch"``/``"nir"`` = that transform of one."""
  v = vdata.random_view(base, rng, size)[..., 0].astype(np.float64) / 255.0
  if modality == "photo":
    return _to_u8(v)[..., None]
  if modality == "sketch":
    return _to_u8(xdog(v))[..., None]
  if modality == "nir":
    return _to_u8(nir_like(v, rng))[..., None]
  raise ValueError(f"modality={modality!r}; expected 'sketch' or 'nir'")


def heterogeneous_pseudo_identities(
  *,
  image_size: int = 32,
  modality: str = "sketch",
  train_fraction: float = 0.6,
  train_views: int = 6,
  test_photos: int = 3,
  test_probes: int = 6,
  max_identities: int = 0,
  seed: int = 0,
) -> dict:
  """Paired-modality pseudo-identity data (see the module docstring).

  Returns:
    ``{"train": {"image" uint8 [N, S, S, 1], "label" [N], "modality" [N] (0 = a / probe side,
    1 = b / photo)}, "test": same with test-local labels, "num_train_ids": K}``; train has
    ``train_views`` images per modality and identity, test ``test_photos`` photos and
    ``test_probes`` modality-``a`` images per identity.

  Raises:
    ValueError: unknown modality or too few identities.
  """
  if modality not in ("sketch", "nir"):
    raise ValueError(f"data.modality={modality!r}; expected 'sketch' or 'nir'")
  rng = np.random.default_rng(seed)
  bases = vdata.pseudo_identity_bases()
  order = rng.permutation(len(bases))
  if max_identities:
    order = order[:max_identities]
  k_train = int(round(train_fraction * len(order)))
  if k_train < 2 or len(order) - k_train < 2:
    raise ValueError(f"{len(order)} identities and train_fraction={train_fraction}: need >= 2 each")

  def build(ids, n_b, n_a):
    xs, ys, ms = [], [], []
    for c, b in enumerate(ids):
      for m, n in ((1, n_b), (0, n_a)):
        for _ in range(n):
          xs.append(_view(bases[b], rng, image_size, "photo" if m == 1 else modality))
          ys.append(c)
          ms.append(m)
    return {
      "image": np.stack(xs),
      "label": np.asarray(ys, np.int32),
      "modality": np.asarray(ms, np.int32),
    }

  return {
    "train": build(order[:k_train], train_views, train_views),
    "test": build(order[k_train:], test_photos, test_probes),
    "num_train_ids": k_train,
  }


def eval_folds(
  labels, modality, *, num_folds: int = 10, probe_fraction: float = 0.5, seed: int = 0
):
  """``[(probe_rows, gallery_rows)] * num_folds``: one random photo per identity as the gallery,
  a random ``probe_fraction`` of the modality-``a`` images as probes."""
  rng = np.random.default_rng(seed + 1000)
  labels, modality = np.asarray(labels), np.asarray(modality)
  probes = np.flatnonzero(modality == 0)
  folds = []
  for _ in range(num_folds):
    gallery = np.asarray(
      [rng.choice(np.flatnonzero((labels == c) & (modality == 1))) for c in np.unique(labels)]
    )
    n = max(1, int(round(probe_fraction * len(probes))))
    folds.append((np.sort(rng.choice(probes, n, replace=False)), gallery))
  return folds


class PairStream:
  """``stream[t]``: ``{"a": [B, S, S, 1], "b": [B, S, S, 1]}`` random same-identity (sketch, photo)
  pairs of the train set (not pixel-aligned, as the official loader); a pure function of
  ``(seed, t)``, so resuming replays the same batches."""

  def __init__(self, train: dict, batch_size: int, seed: int = 0):
    lab, mod = train["label"], train["modality"]
    self.images = train["image"]
    ids = np.unique(lab)
    self.a = [np.flatnonzero((lab == c) & (mod == 0)) for c in ids]
    self.b = [np.flatnonzero((lab == c) & (mod == 1)) for c in ids]
    keep = [i for i in range(len(ids)) if len(self.a[i]) and len(self.b[i])]
    if not keep:
      raise ValueError("no identity has images of both modalities")
    self.keep, self.batch_size, self.seed = keep, batch_size, seed

  def __getitem__(self, t):
    rng = np.random.default_rng([self.seed, t])
    ids = rng.choice(self.keep, self.batch_size)
    ia = np.asarray([rng.choice(self.a[i]) for i in ids])
    ib = np.asarray([rng.choice(self.b[i]) for i in ids])
    return {"a": self.images[ia], "b": self.images[ib]}
