"""Long-tailed subsets of balanced datasets and head / medium / tail class groups."""

from collections.abc import Sequence

import numpy as np


def long_tailed_counts(n_max: int, num_classes: int, imbalance_ratio: float) -> np.ndarray:
  """Per-class sizes of the exponential profile ``n_c = floor(n_max * (1/rho)^(c / (C - 1)))``.

  Args:
    n_max: size of the largest (head) class, class 0.
    num_classes: ``C >= 2``.
    imbalance_ratio: ``rho = n_0 / n_{C-1} >= 1``.

  Returns:
    int64 ``[C]``, non-increasing, ``n_0 = n_max``, ``n_{C-1} = floor(n_max / rho)``.

  Raises:
    ValueError: ``num_classes < 2``, ``n_max`` not an int >= 1, ``rho`` < 1 or NaN.

  References:
    Cao, Wei, Gaidon, Arechiga, Ma. "Learning Imbalanced Datasets with Label-Distribution-Aware
    Margin Loss." NeurIPS 2019, arXiv:1906.07413 (CIFAR-10-LT profile; ``int()`` truncation as
    in its ``IMBALANCECIFAR10.get_img_num_per_cls``).
  """
  if num_classes < 2:
    raise ValueError(f"num_classes={num_classes} must be >= 2 for a long-tailed profile.")
  if isinstance(n_max, bool) or not isinstance(n_max, int | np.integer) or n_max < 1:
    raise ValueError(f"n_max={n_max!r} must be an int >= 1 (size of the head class).")
  if not imbalance_ratio >= 1:
    raise ValueError(f"imbalance_ratio={imbalance_ratio} must be >= 1 (n_head / n_tail).")
  c = np.arange(num_classes, dtype=np.float64)
  counts = np.floor(n_max * (1.0 / imbalance_ratio) ** (c / (num_classes - 1)) + 1e-9)
  return np.maximum(counts, 1).astype(np.int64)


def long_tailed_indices(
  labels: Sequence[int] | np.ndarray,
  *,
  imbalance_ratio: float,
  seed: int,
  n_max: int | None = None,
) -> np.ndarray:
  """Indices of a long-tailed subset: class ``c`` keeps ``n_c`` random examples (see above).

  ``n_c = floor(n_max * (1/rho)^(c / (C - 1)))`` with classes ``0..C-1`` taken in label order
  (class 0 is the head, as in CIFAR-10-LT).

  Args:
    labels: int ``[N]`` class labels in ``[0, C)``; ``C = max(labels) + 1``.
    imbalance_ratio: ``rho``; 1 keeps a balanced subset.
    seed: which examples of each class are kept (a seeded permutation per class).
    n_max: head-class size; default the smallest class count, so every class can supply its
      quota (equals ``N / C`` on balanced sets, as in LDAM's code).

  Returns:
    int64 ``[sum_c n_c]`` indices into ``labels``, sorted ascending.

  Raises:
    TypeError: non-integer labels (e.g. float class ids).
    ValueError: empty/negative labels, ``imbalance_ratio < 1``, or a class smaller than its
      quota.
  """
  labels = np.asarray(labels)
  if labels.ndim != 1 or labels.size == 0:
    raise ValueError(
      f"labels must be a non-empty 1-D array of ints >= 0, got shape {labels.shape}."
    )
  if not np.issubdtype(labels.dtype, np.integer):
    raise TypeError(
      f"labels must be integer class ids, got dtype {labels.dtype} (e.g. {labels[:3].tolist()}); "
      "cast with labels.astype(np.int64) if they are whole numbers."
    )
  if labels.min() < 0:
    i = int(np.argmin(labels))
    raise ValueError(f"labels must be >= 0; found labels[{i}]={int(labels[i])}.")
  if not imbalance_ratio >= 1:
    raise ValueError(f"imbalance_ratio={imbalance_ratio} must be >= 1 (n_head / n_tail).")
  num_classes = int(labels.max()) + 1
  available = np.bincount(labels, minlength=num_classes)
  if available.min() == 0:
    c = int(np.argmin(available))
    raise ValueError(
      f"labels: class {c} has no examples (C = max(labels) + 1 = {num_classes}); remap the "
      "class ids to 0..C-1 without gaps."
    )
  if n_max is None:
    n_max = int(available.min())
  counts = long_tailed_counts(n_max, num_classes, imbalance_ratio)
  short = np.flatnonzero(available < counts)
  if short.size:
    c = int(short[0])
    raise ValueError(
      f"class {c} has {available[c]} examples but the profile needs {counts[c]}; "
      f"pass a smaller n_max (<= {int(available.min())})."
    )
  rng = np.random.default_rng(seed)
  keep = [rng.permutation(np.flatnonzero(labels == c))[: counts[c]] for c in range(num_classes)]
  return np.sort(np.concatenate(keep)).astype(np.int64)


def head_medium_tail_split(
  class_counts: Sequence[int] | np.ndarray,
  *,
  rule: str = "thirds",
) -> dict[str, np.ndarray]:
  """Groups classes into head / medium / tail by their training-set size.

  Rules:
    - ``"thirds"``: rank classes by count (descending; ties by class index); the top
      ``round(0.3 C)`` are head, the bottom ``round(0.3 C)`` are tail, the rest medium
      (3 / 4 / 3 for C = 10, the split commonly reported on CIFAR-10-LT).
    - ``"oltr"``: absolute shots as on ImageNet-LT (Liu et al., CVPR 2019, arXiv:1904.05160):
      head ("many-shot") > 100, medium 20..100, tail ("few-shot") < 20.

  Args:
    class_counts: int ``[C]`` training examples per class.
    rule: ``"thirds"`` or ``"oltr"``.

  Returns:
    ``{"head": int64 [.], "medium": int64 [.], "tail": int64 [.]}`` sorted class ids that
    partition ``range(C)``.

  Raises:
    TypeError: non-numeric counts. ValueError: empty, negative or non-finite counts, unknown
      ``rule``.

  Choice: ``"thirds"`` is the default because with 10 classes the OLTR thresholds put every
    class of CIFAR-10-LT / Fashion-MNIST-LT (rho <= 100) into one or two groups.
  """
  counts = np.asarray(class_counts)
  if counts.ndim != 1 or counts.size == 0:
    raise ValueError(f"class_counts must be a non-empty 1-D array, got shape {counts.shape}.")
  if not np.issubdtype(counts.dtype, np.number) or np.issubdtype(counts.dtype, np.complexfloating):
    raise TypeError(f"class_counts must be numeric counts, got dtype {counts.dtype}.")
  ok = np.isfinite(counts) & (counts >= 0)
  if not ok.all():
    i = int(np.flatnonzero(~ok)[0])
    raise ValueError(
      f"class_counts must be finite counts >= 0; found class_counts[{i}]={counts[i].item()!r}."
    )
  c = counts.size
  if rule == "thirds":
    order = np.lexsort((np.arange(c), -counts))  # primary: count desc; ties: class id asc
    k = int(round(0.3 * c))
    groups = {"head": order[:k], "medium": order[k : c - k], "tail": order[c - k :]}
  elif rule == "oltr":
    ids = np.arange(c)
    groups = {
      "head": ids[counts > 100],
      "medium": ids[(counts >= 20) & (counts <= 100)],
      "tail": ids[counts < 20],
    }
  else:
    raise ValueError(f"rule={rule!r}; valid: 'thirds', 'oltr'.")
  return {k: np.sort(v).astype(np.int64) for k, v in groups.items()}
