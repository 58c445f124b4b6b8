"""Class-parallel margin-softmax heads: the class axis sharded over a ``model`` mesh axis.

Weights (plain FC weights or IR class centres) are ``[C, D]`` arrays sharded as
``P("model", None)``: each device holds ``C / n_model`` classes, so a head of ≥ 1M classes fits.
Per device (``jax.shard_map``) the class-chunked kernel of the dense heads
(``_chunked.nontarget_lse``) gives the local non-target log-sum-exp :math:`L_k` and target
score (nonzero only on the shard that owns the label, then ``psum``-ed); the softmax normaliser
is a cross-shard log-sum-exp with the target logit :math:`t`

.. math::
  \\log\\Big(e^{t} + \\sum_{\\text{shards } k} e^{L_k}\\Big)
  = M + \\log\\Big(e^{t - M} + \\sum_k e^{L_k - M}\\Big), \\qquad
  M = \\max(t, \\operatorname{pmax}_k L_k),

so no device ever holds the full ``[B, C]`` logits, nor (chunked) even its own ``[B, C/n]``.
Gradients flow through ``psum`` (JAX transposes it) into the kernel's ``custom_vjp``, so
``jax.grad`` of the sharded loss equals that of the dense one.
Centre updates (``class_parallel_update_centers``) touch only the local shard.

References:
  X. An et al. Partial FC: Training 10 Million Identities on a Single Machine. ICCVW 2021.
  arXiv:2010.05222 (the same model-parallel softmax, here without class sampling).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from vision_jax.losses import _chunked
from vision_jax.losses import ir_softmax as _ir
from vision_jax.losses import margin as _m
from vision_jax.losses._validate import check_scalar, poison_bad_labels, validate_head_inputs

Array = jax.Array


def class_sharding(mesh, *, model_axis: str = "model") -> NamedSharding:
  """``NamedSharding`` of a ``[C, D]`` (or ``[C]``) class array over ``model_axis``."""
  return NamedSharding(mesh, P(model_axis, None))


def _axis_size(mesh, axis):
  return 1 if axis is None else mesh.shape[axis]


def _check_mesh(mesh, batch, num_classes, model_axis, data_axis):
  for ax in (model_axis, data_axis):
    if ax is not None and ax not in mesh.shape:
      raise ValueError(f"mesh has axes {tuple(mesh.shape)}; axis {ax!r} not found.")
  n_model, n_data = _axis_size(mesh, model_axis), _axis_size(mesh, data_axis)
  if num_classes % n_model:
    raise ValueError(
      f"num_classes={num_classes} is not divisible by the '{model_axis}' axis size {n_model}; "
      "pad the class count (padded classes need where= on their logits; not supported) or "
      "choose a mesh whose model axis divides C."
    )
  if batch % n_data:
    raise ValueError(
      f"batch={batch} is not divisible by the '{data_axis}' axis size {n_data}; pad the batch "
      "and pass where=."
    )


def class_parallel_loss(
  embeddings,
  weights,
  labels,
  *,
  mesh,
  loss: str = "am_softmax",
  bias=None,
  where=None,
  model_axis: str = "model",
  data_axis: str | None = "data",
  chunk_size: int | None = None,
  **hyperparameters,
) -> Array:
  """Per-example margin-softmax loss with the classes sharded over ``model_axis``.

  Equal (to float32 rounding) to the dense loss of the same name, e.g.
  ``class_parallel_loss(x, w, y, mesh=mesh, loss="arcface", scale=64., margin=.5)`` equals
  ``arcface_loss(x, w, y, scale=64., margin=.5)``, and so do the gradients.

  Args:
    embeddings: ``[batch, dim]``; sharded (or resharded) over ``data_axis`` on the batch axis.
    weights: ``[num_classes, dim]``; sharded ``P(model_axis, None)`` (resharded if not). For
      IR-Softmax pass ``ir_weights(centers)``.
    labels: ``[batch]`` int in ``[0, num_classes)``.
    mesh: a ``jax.sharding.Mesh`` with ``model_axis`` (and ``data_axis`` unless None).
    loss: ``"softmax"``, ``"normface"``, ``"a_softmax"``, ``"am_softmax"`` or ``"arcface"``.
    bias: optional ``[num_classes]`` bias (``loss="softmax"`` only), sharded like the classes.
    where: optional ``[batch]`` bool padding mask.
    model_axis: mesh axis that shards the classes. data_axis: mesh axis that shards the batch
      (None: batch replicated).
    chunk_size: class block size of each shard's kernel (``_chunked.nontarget_lse``), None for
      ``_chunked.auto_chunk_size(B / n_data, C / n_model)``; unchunked, a shard's kernel is one
      block of ``C / n_model`` classes.
    **hyperparameters: keyword arguments of that loss (``scale``, ``margin``, ``lambda_``, ...).

  Returns:
    ``[batch]`` float32 losses, sharded over ``data_axis``.

  Raises:
    ValueError: as the dense losses, plus C or B not divisible by the mesh axis sizes. Under
      ``jit``, out-of-range labels give NaN rows, as the dense losses.
  """
  if bias is not None and loss != "softmax":
    raise ValueError(f"bias is only supported for loss='softmax', got loss={loss!r}.")
  head = _m.make_head(loss, **hyperparameters)
  x, w, labels, where, label_ok = _m._prepare(embeddings, weights, labels, where, bias)
  _check_mesh(mesh, x.shape[0], w.shape[0], model_axis, data_axis)
  has_where = where is not None
  if where is None:
    where = jnp.ones(x.shape[:1], bool)
  if bias is None:
    bias = jnp.zeros(w.shape[:1], jnp.float32)
  bias = jnp.asarray(bias, jnp.float32)

  n_model = _axis_size(mesh, model_axis)
  c_local = w.shape[0] // n_model
  chunk = _chunked.resolve_chunk_size(
    chunk_size, x.shape[0] // _axis_size(mesh, data_axis), c_local
  )

  def per_shard(x, w, labels, where, bias):
    offset = lax.axis_index(model_axis) * c_local
    xnorm = jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=1), _m.NORM_EPS))
    xh = _m.l2_normalize(x) if head.normalize else x
    lse, z_y_local = _chunked.nontarget_lse(
      xh,
      w,
      bias,
      labels,
      head.scale_fn(xnorm),
      offset,
      normalize=head.normalize,
      chunk=c_local if chunk is None else chunk,
    )
    z_y = lax.psum(z_y_local, model_axis)
    target = head.target_fn(z_y, xnorm)
    m = jnp.maximum(lax.stop_gradient(target), lax.pmax(lax.stop_gradient(lse), model_axis))
    sum_exp = lax.psum(jnp.exp(lse - m), model_axis) + jnp.exp(target - m)
    out = jnp.log(sum_exp) + m - target
    if has_where:
      out = jnp.where(where, out, 0.0)
    return out

  batch_spec = P(data_axis)
  fn = jax.shard_map(
    per_shard,
    mesh=mesh,
    in_specs=(P(data_axis, None), P(model_axis, None), batch_spec, batch_spec, P(model_axis)),
    out_specs=batch_spec,
  )
  # Out-of-range labels (possible only under jit): NaN, as the dense losses.
  return poison_bad_labels(fn(x, w, labels, where, bias), label_ok)


def class_parallel_update_centers(
  centers,
  embeddings,
  labels,
  *,
  mesh,
  momentum,
  where=None,
  model_axis: str = "model",
  data_axis: str | None = "data",
) -> Array:
  """``update_class_centers`` with the centres sharded over ``model_axis``.

  Each device gathers the batch (``all_gather`` over ``data_axis`` when it is sharded), sums
  the (normalised) features of the rows whose label falls in its own class range and rewrites
  only those rows of its local ``[C / n_model, D]`` block; the result keeps the
  ``P(model_axis, None)`` sharding.

  Args:
    centers: ``[num_classes, dim]`` sharded ``P(model_axis, None)``.
    embeddings: ``[batch, dim]``. labels: ``[batch]`` int. momentum: EMA keep fraction in [0, 1].
    mesh, model_axis, data_axis, where: as in ``class_parallel_loss``.

  Returns:
    ``[num_classes, dim]`` centres, sharded ``P(model_axis, None)``.
  """
  validate_head_inputs(embeddings, centers, labels, where=where)
  check_scalar("momentum", momentum, low=0.0, high=1.0)
  _check_mesh(mesh, jnp.shape(embeddings)[0], jnp.shape(centers)[0], model_axis, data_axis)
  x = jnp.asarray(embeddings, jnp.float32)
  where = jnp.ones(x.shape[:1], bool) if where is None else jnp.asarray(where, bool)
  mu = jnp.asarray(momentum, jnp.float32)

  def per_shard(c, x, labels, where, mu):
    c_local = c.shape[0]
    offset = lax.axis_index(model_axis) * c_local
    if data_axis is not None:  # the whole batch ([B, D], small) instead of psum-ing [C/n, D]
      x, labels, where = lax.all_gather((x, labels, where), data_axis, tiled=True, to="invarying")
    ids, sums, counts = _ir.batch_class_sums(x, labels, c_local, where=where, class_offset=offset)
    return _ir.scatter_ema_centers(c, ids, sums, counts, mu)

  fn = jax.shard_map(
    per_shard,
    mesh=mesh,
    in_specs=(P(model_axis, None), P(data_axis, None), P(data_axis), P(data_axis), P()),
    out_specs=P(model_axis, None),
  )
  return fn(centers, x, jnp.asarray(labels), where, mu)
