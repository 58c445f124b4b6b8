"""Prototypical-network primitives: class prototypes, distance logits, episode accuracy with CI.

.. math::

  p_c = \\frac{1}{K} \\sum_{i: y_i = c} f(x_i), \\qquad
  \\mathrm{logit}_{qc} = -s\\, \\lVert f(x_q) - p_c \\rVert_2^2 \\;\\text{(sqeuclidean)}\\quad
  \\text{or}\\quad s \\cos(f(x_q), p_c) \\;\\text{(cosine)}.

References:
  Snell, Swersky, Zemel. "Prototypical Networks for Few-shot Learning." NeurIPS 2017,
  arXiv:1703.05175. Chen, Liu, Kira, Wang, Huang. "A Closer Look at Few-shot Classification."
  ICLR 2019, arXiv:1904.04232 (cosine classifier; 600-episode mean ± 1.96 std / sqrt(E)).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.utils.arrays import is_concrete

METRICS = ("sqeuclidean", "cosine")
COSINE_EPS = 1e-8


def prototypes(support_emb: jax.Array, support_labels: jax.Array, num_ways: int) -> jax.Array:
  """Class means of the support embeddings, ``p_c = mean_{i: y_i = c} z_i``.

  Args:
    support_emb: ``[N*K, D]`` float support embeddings (any order).
    support_labels: ``[N*K]`` int episode labels in ``[0, num_ways)``.
    num_ways: N (static).

  Returns:
    ``[N, D]`` float32 prototypes. A class with no support sample gets a zero prototype.

  Raises:
    ValueError: wrong ranks, mismatched lengths, ``num_ways < 1``, concrete labels outside
      ``[0, num_ways)``.
    TypeError: non-integer labels.
  """
  e, lab = jnp.shape(support_emb), jnp.shape(support_labels)
  if len(e) != 2:
    raise ValueError(f"support_emb must have shape [N*K, D]; got {e}.")
  if len(lab) != 1 or lab[0] != e[0]:
    raise ValueError(f"support_labels must have shape [N*K]=({e[0]},); got {lab}.")
  if not isinstance(num_ways, (int, np.integer)) or num_ways < 1:
    raise ValueError(f"num_ways={num_ways!r} must be a positive int (static).")
  if not jnp.issubdtype(jnp.result_type(support_labels), jnp.integer):
    raise TypeError(f"support_labels must be integer; got {jnp.result_type(support_labels)}.")
  if is_concrete(support_labels):
    v = np.asarray(support_labels)
    bad = (v < 0) | (v >= num_ways)
    if bad.any():
      i = int(np.flatnonzero(bad)[0])
      raise ValueError(
        f"support_labels must lie in [0, num_ways={num_ways}); found support_labels[{i}]={v[i]}."
      )
  onehot = jax.nn.one_hot(support_labels, num_ways, dtype=jnp.float32)  # [NK, N]
  sums = onehot.T @ support_emb.astype(jnp.float32)
  counts = jnp.sum(onehot, axis=0)[:, None]
  return sums / jnp.maximum(counts, 1.0)


def proto_logits(
  query_emb: jax.Array, protos: jax.Array, *, metric: str = "sqeuclidean", scale: float = 1.0
) -> jax.Array:
  """Logits of queries against prototypes.

  ``sqeuclidean``: ``-scale * ||q - p||^2`` (ProtoNet); ``cosine``: ``scale * cos(q, p)`` with
  an ``eps = 1e-8`` on the norms.

  Args:
    query_emb: ``[B, D]``.
    protos: ``[N, D]``.
    metric: ``"sqeuclidean"`` or ``"cosine"``.
    scale: positive multiplier (a temperature; may be a traced learnable scalar).

  Returns:
    ``[B, N]`` float32 logits.

  Raises:
    ValueError: unknown metric, wrong ranks, mismatched D, concrete ``scale <= 0``.
  """
  if metric not in METRICS:
    raise ValueError(f"metric={metric!r} is not supported; valid metrics: {', '.join(METRICS)}.")
  q, p = jnp.shape(query_emb), jnp.shape(protos)
  if len(q) != 2 or len(p) != 2:
    raise ValueError(f"query_emb must be [B, D] and protos [N, D]; got {q} and {p}.")
  if q[1] != p[1]:
    raise ValueError(f"feature dim mismatch: query_emb has D={q[1]}, protos has D={p[1]}.")
  if is_concrete(scale) and not float(np.asarray(scale)) > 0:
    raise ValueError(f"scale={scale!r} must be > 0.")
  x = query_emb.astype(jnp.float32)
  y = protos.astype(jnp.float32)
  if metric == "cosine":
    x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), COSINE_EPS)
    y = y / jnp.maximum(jnp.linalg.norm(y, axis=-1, keepdims=True), COSINE_EPS)
    return scale * (x @ y.T)
  # ||x - y||^2 expanded; clamped at 0 against cancellation.
  d2 = jnp.sum(x * x, -1)[:, None] - 2.0 * (x @ y.T) + jnp.sum(y * y, -1)[None, :]
  return -scale * jnp.maximum(d2, 0.0)


def _per_episode(name: str, correct) -> np.ndarray:
  c = np.asarray(correct)
  if c.ndim != 2 or c.shape[0] < 1 or c.shape[1] < 1:
    raise ValueError(f"{name} must have shape [episodes, N*Q] with both >= 1; got {c.shape}.")
  return c.astype(np.float64).mean(axis=1)


def fewshot_accuracy(correct) -> tuple[float, float]:
  """Mean episode accuracy and its 95 % confidence half-width, ``1.96 * std / sqrt(E)``.

  ``std`` is the population standard deviation (``ddof=0``) of the ``E`` per-episode accuracies,
  as CloserLookFewShot's ``np.std`` computes it.

  Args:
    correct: ``[E, N*Q]`` bool/0-1 per query, one row per episode.

  Returns:
    ``(mean, ci95)`` as fractions in ``[0, 1]``.

  Raises:
    ValueError: not 2-D or empty.
  """
  acc = _per_episode("correct", correct)
  return float(acc.mean()), float(1.96 * acc.std(ddof=0) / np.sqrt(len(acc)))


def paired_difference(correct_a, correct_b) -> tuple[float, float]:
  """Mean and 95 % CI half-width of ``acc_a - acc_b`` over the same episodes (paired).

  Args:
    correct_a: ``[E, N*Q]`` of method A.
    correct_b: ``[E, N*Q]`` of method B on the same episodes and queries.

  Returns:
    ``(mean difference, 1.96 * std(diff, ddof=0) / sqrt(E))``.

  Raises:
    ValueError: shapes differ or are not ``[E, N*Q]``.
  """
  a, b = _per_episode("correct_a", correct_a), _per_episode("correct_b", correct_b)
  if np.shape(correct_a) != np.shape(correct_b):
    raise ValueError(
      f"correct_a and correct_b must be the same episodes: shapes {np.shape(correct_a)} vs "
      f"{np.shape(correct_b)}."
    )
  d = a - b
  return float(d.mean()), float(1.96 * d.std(ddof=0) / np.sqrt(len(d)))
