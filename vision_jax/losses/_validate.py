"""Input validation shared by the margin-softmax losses.

Two paths:

* **Eager** (``validate_head_inputs``): called by every public loss. Shape/dtype checks always run
  (shapes are static even under ``jit``); value checks (label range, finiteness, hyperparameter
  ranges) run only when the value is concrete, i.e. outside ``jit``. Raises ``ValueError`` /
  ``TypeError`` naming the argument, the value seen and the fix.
* **Traced** (``check_head_inputs_traced``): the same value checks as ``checkify.check`` calls, for
  use inside a function wrapped by ``jax.experimental.checkify.checkify`` (see ``checked``).
* **Poisoned** (``label_in_range`` / ``poison_bad_labels``): what the public losses do by default
  under ``jit``, where the eager label check cannot run: a row whose label is outside
  ``[0, C)`` (negative ones included; a plain gather would wrap ``-1`` to ``C - 1``) gets a NaN
  loss, so the train loop's non-finite guard stops and names the step. A ``[B]`` select, no
  host sync, no extra pass over ``[B, C]``; rows masked out by ``where`` are exempt.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from vision_jax.utils.arrays import is_concrete


def check_scalar(
  name: str,
  value: Any,
  *,
  low=None,
  high=None,
  low_inclusive=True,
  high_inclusive=True,
  fix: str = "",
) -> None:
  """Raises ValueError if a concrete scalar hyperparameter is non-finite or out of range."""
  if value is None or not is_concrete(value):
    return
  v = float(np.asarray(value))
  ok = math.isfinite(v)
  if ok and low is not None:
    ok = v >= low if low_inclusive else v > low
  if ok and high is not None:
    ok = v <= high if high_inclusive else v < high
  if not ok:
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    interval = f"{'[' if low_inclusive else '('}{lo}, {hi}{']' if high_inclusive else ')'}"
    raise ValueError(f"{name}={v!r} is out of range; expected a finite value in {interval}. {fix}")


def check_label_range(
  labels,
  num_classes: int,
  *,
  where=None,
  name: str = "labels",
  fix: str = "Remap ids to 0..C-1 or mask padded rows with where=.",
) -> None:
  """Raises ValueError naming ``name``, the first bad index (in the unmasked batch) and value if
  a concrete ``labels [B]`` has an id outside ``[0, num_classes)``; rows with ``where=False``
  are exempt. No-op on tracers (see ``safe_labels`` / ``poison_bad_labels`` for jit)."""
  if not is_concrete(labels) or (where is not None and not is_concrete(where)):
    return
  lab = np.asarray(labels)
  bad = (lab < 0) | (lab >= num_classes)
  if where is not None:
    bad &= np.asarray(where).astype(bool)
  if bad.any():
    i = int(np.flatnonzero(bad)[0])
    raise ValueError(
      f"{name} must lie in [0, num_classes={num_classes}); found {name}[{i}]={int(lab[i])} "
      f"({int(bad.sum())} bad in total). {fix}"
    )


def check_finite_rows(name: str, x, *, where=None, fix: str = "") -> None:
  """Raises ValueError naming ``name`` and the first row of a concrete ``x [B, ...]`` that holds
  NaN/Inf (rows with ``where=False`` are exempt). No-op on tracers (no host sync under jit)."""
  if not is_concrete(x) or (where is not None and not is_concrete(where)):
    return
  with jax.ensure_compile_time_eval():
    a = jnp.asarray(x)
    finite = np.asarray(jnp.all(jnp.isfinite(a.reshape(a.shape[0], -1)), axis=1))
  if where is not None:
    finite = finite | ~np.asarray(where).astype(bool)
  if not finite.all():
    i = int(np.flatnonzero(~finite)[0])
    raise ValueError(
      f"{name} contains non-finite values (NaN/Inf) in row {i} ({int((~finite).sum())} bad rows"
      f" of {finite.size}). {fix}".rstrip()
    )


def validate_head_inputs(embeddings, weights, labels, *, where=None, bias=None) -> None:
  """Eager checks of ``(embeddings [B, D], weights [C, D], labels [B])``.

  Shape and dtype checks always run. Label-range and finiteness checks run only on concrete
  (non-traced) arrays; under ``jit`` use ``checked`` / ``check_head_inputs_traced`` instead.

  Raises:
    TypeError: non-integer labels, non-float embeddings/weights.
    ValueError: wrong rank, mismatched batch or feature dimension, C = 0, labels outside
      ``[0, C)``, non-finite embeddings or weights.
  """
  e_shape, w_shape, l_shape = jnp.shape(embeddings), jnp.shape(weights), jnp.shape(labels)
  if len(e_shape) != 2:
    raise ValueError(f"embeddings must have shape [batch, dim]; got shape {e_shape}.")
  if len(w_shape) != 2:
    raise ValueError(f"weights must have shape [num_classes, dim]; got shape {w_shape}.")
  if len(l_shape) != 1:
    raise ValueError(
      f"labels must have shape [batch] (integer class ids, not one-hot); got shape {l_shape}."
    )
  if w_shape[0] == 0:
    raise ValueError(f"weights has num_classes C=0 (shape {w_shape}); a classifier needs C >= 1.")
  if e_shape[0] != l_shape[0]:
    raise ValueError(
      f"batch size mismatch: embeddings has B={e_shape[0]} rows but labels has {l_shape[0]}."
    )
  if e_shape[1] != w_shape[1]:
    raise ValueError(
      f"feature dim mismatch: embeddings has D={e_shape[1]} but weights has D={w_shape[1]} "
      f"(weights must be [num_classes, dim], transpose it if you pass [dim, num_classes])."
    )
  if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
    raise TypeError(f"labels must be integer class ids; got dtype {jnp.result_type(labels)}.")
  for name, arr in (("embeddings", embeddings), ("weights", weights)):
    if not jnp.issubdtype(jnp.result_type(arr), jnp.floating):
      raise TypeError(f"{name} must be floating point; got dtype {jnp.result_type(arr)}.")
  if where is not None and jnp.shape(where) != (e_shape[0],):
    raise ValueError(f"where must have shape [batch]=({e_shape[0]},); got {jnp.shape(where)}.")
  if bias is not None and jnp.shape(bias) != (w_shape[0],):
    raise ValueError(f"bias must have shape [num_classes]=({w_shape[0]},); got {jnp.shape(bias)}.")

  num_classes = w_shape[0]
  keep = None
  if where is not None:
    if not is_concrete(where):
      return  # Which rows are real is unknown; value checks need checkify under jit.
    keep = np.asarray(where).astype(bool)
  check_label_range(labels, num_classes, where=keep)
  # Finiteness is reduced on device (only a [B] / scalar bool reaches the host), so a sharded
  # 1M-class weight matrix is never gathered for validation.
  if is_concrete(embeddings):
    # ensure_compile_time_eval: a concrete array closed over by a jitted function must be reduced
    # now, not staged into the trace (which would hand a tracer to NumPy).
    with jax.ensure_compile_time_eval():
      finite = np.asarray(jnp.all(jnp.isfinite(jnp.asarray(embeddings)), axis=1))
    if keep is not None:
      finite = finite | ~keep
    if not finite.all():
      i = int(np.flatnonzero(~finite)[0])
      raise ValueError(
        f"embeddings contain non-finite values (NaN/Inf) in row {i} "
        f"({int((~finite).sum())} bad rows); check the backbone output / learning rate."
      )
  if is_concrete(weights):
    with jax.ensure_compile_time_eval():
      weights_finite = bool(jnp.all(jnp.isfinite(jnp.asarray(weights))))
    if not weights_finite:
      raise ValueError("weights (class weights / centres) contain non-finite values (NaN/Inf).")


def label_in_range(labels, num_classes: int) -> jax.Array:
  """``[B]`` bool: ``0 <= labels < num_classes`` (works on tracers; no host sync)."""
  labels = jnp.asarray(labels)
  return (labels >= 0) & (labels < num_classes)


def safe_labels(labels, num_classes: int) -> tuple[jax.Array, jax.Array]:
  """``(labels with out-of-range entries replaced by 0, in-range mask [B])``.

  The replaced labels keep the loss computation finite, so a bad row contributes a zero
  gradient and ``poison_bad_labels`` marks its loss NaN.
  """
  labels = jnp.asarray(labels)
  ok = label_in_range(labels, num_classes)
  return jnp.where(ok, labels, 0), ok


def poison_bad_labels(per_example, ok) -> jax.Array:
  """``per_example`` (``[B]`` or ``[B, ...]``) with NaN in the rows where ``ok [B]`` is False."""
  ok = jnp.reshape(ok, ok.shape + (1,) * (per_example.ndim - ok.ndim))
  return jnp.where(ok, per_example, jnp.nan)


def check_head_inputs_traced(embeddings, weights, labels, *, where=None) -> None:
  """Value checks as ``checkify.check``; call inside a ``checkify.checkify``-wrapped function."""
  num_classes = jnp.shape(weights)[0]
  keep = jnp.ones(jnp.shape(labels), bool) if where is None else jnp.asarray(where, bool)
  labels = jnp.asarray(labels)
  bad = keep & ((labels < 0) | (labels >= num_classes))
  first = jnp.argmax(bad)
  checkify.check(
    ~jnp.any(bad),
    "labels must lie in [0, num_classes={c}); found labels[{i}]={v}",
    c=jnp.asarray(num_classes),
    i=first,
    v=labels[first],
  )
  row_ok = jnp.all(jnp.isfinite(jnp.asarray(embeddings, jnp.float32)), axis=1) | ~keep
  checkify.check(
    jnp.all(row_ok), "embeddings contain non-finite values in row {i}", i=jnp.argmin(row_ok)
  )
  checkify.check(
    jnp.all(jnp.isfinite(jnp.asarray(weights, jnp.float32))),
    "weights contain non-finite values (NaN/Inf)",
  )


def checked(loss_fn, **hyperparameters):
  """Jitted ``loss_fn`` with in-graph input checks (``checkify``) that raise on the host.

  Use when the inputs are produced inside jit and cannot be checked eagerly::

    f = checked(arcface_loss, scale=64.0, margin=0.5)
    loss = f(embeddings, weights, labels)             # raises on labels >= C, NaN rows, ...
    loss = f(embeddings, weights, labels, where=mask)

  Inside your own jitted train step, call ``check_head_inputs_traced`` and wrap the step with
  ``jax.experimental.checkify.checkify`` instead (then ``err.throw()`` on the host).

  Args:
    loss_fn: one of the public losses, ``(embeddings, weights, labels, *, ...) -> [batch]``.
    **hyperparameters: keyword arguments bound (statically) to ``loss_fn``; validated eagerly now.

  Returns:
    ``f(embeddings, weights, labels, where=None) -> [batch]``.
  """

  def inner(embeddings, weights, labels, where):
    check_head_inputs_traced(embeddings, weights, labels, where=where)
    return loss_fn(embeddings, weights, labels, where=where, **hyperparameters)

  jitted = jax.jit(checkify.checkify(inner, errors=checkify.user_checks))

  @functools.wraps(loss_fn)
  def f(embeddings, weights, labels, where=None):
    err, out = jitted(embeddings, weights, labels, where)
    err.throw()
    return out

  return f
