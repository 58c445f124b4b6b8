"""ProtoNet and CRN as `vision_jax.train.Task`s (one episode = one batch) and episodic evaluation.

Batch (from `EpisodeBatches`): ``support [N*K, H, W, C]``, ``support_label [N*K]``,
``support_class [N*K]`` (base-class index), ``query [N*Q, H, W, C]``, ``query_label``,
``query_class``. An episode is smaller than a pod's device count, so the task's
``batch_partition`` replicates every leaf (each device computes the whole episode).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

from vision_jax.fewshot.crn import ClassRegularizer, regularized_prototypes
from vision_jax.fewshot.episodes import EpisodeSampler
from vision_jax.fewshot.protonet import METRICS, fewshot_accuracy, proto_logits, prototypes
from vision_jax.train import Task, split_variables

BATCH_KEYS = ("support", "support_label", "support_class", "query", "query_label", "query_class")


@dataclasses.dataclass(frozen=True)
class CRNWeights:
  """CRN hyperparameters (config section ``crn``): see `vision_jax.fewshot.crn`."""

  base_weight: float = 1.0
  recon_weight: float = 1.0
  mix: float = 0.5
  memory_momentum: float = 0.9
  hidden: int = 128
  scale_init: float = 10.0

  def __post_init__(self):
    for name in ("base_weight", "recon_weight"):
      if not getattr(self, name) >= 0:
        raise ValueError(f"crn.{name}={getattr(self, name)!r} must be >= 0.")
    if not 0.0 <= self.mix <= 1.0:
      raise ValueError(f"crn.mix={self.mix!r} must lie in [0, 1].")
    if not 0.0 <= self.memory_momentum < 1.0:
      raise ValueError(f"crn.memory_momentum={self.memory_momentum!r} must lie in [0, 1).")


def replicate_batch(batch):
  """``batch_partition`` for episodes: every leaf replicated (``P()``)."""
  return jax.tree.map(lambda _: P(), batch)


def fewshot_task(
  backbone: nn.Module,
  *,
  num_ways: int,
  metric: str = "sqeuclidean",
  scale: float = 1.0,
  crn: CRNWeights | None = None,
  num_base_classes: int | None = None,
  finalize: Callable[[Any], dict] | None = None,
) -> Task:
  """ProtoNet (``crn=None``) or CRN episodic training task.

  ProtoNet loss: ``CE(proto_logits(z_q, mean support), y_q)``. CRN adds the base-class term and
  the reconstruction term of `vision_jax.fewshot.crn` and classifies with the regularised
  prototypes.

  Args:
    backbone: embedding model (``apply(v, x, train=) -> (emb, inter)``, BN in ``batch_stats``).
    num_ways: N of the training episodes (static).
    metric: ``"sqeuclidean"`` (ProtoNet) or ``"cosine"``.
    scale: logit scale.
    crn: CRN weights; ``None`` = plain ProtoNet.
    num_base_classes: number of base classes (CRN's basis size M and memory rows).
    finalize: optional end-of-run ``finalize(state) -> dict`` (`Task.finalize`).

  Returns:
    A `Task`; params ``{"backbone", ["crn"]}``, model_state = backbone ``batch_stats``, extra
    ``{"memory" [M, D], "seen" [M]}`` for CRN (empty for ProtoNet).

  Raises:
    ValueError: unknown metric, ``num_ways < 2``, CRN without ``num_base_classes``.
  """
  if metric not in METRICS:
    raise ValueError(f"metric={metric!r} is not supported; valid metrics: {', '.join(METRICS)}.")
  if num_ways < 2:
    raise ValueError(f"num_ways={num_ways} must be >= 2.")
  if crn is not None and not num_base_classes:
    raise ValueError("CRN needs num_base_classes (the basis size M and the memory rows).")

  def embed(params, model_state, x, train):
    variables = {"params": params["backbone"], **model_state}
    if train:
      (emb, _), new = backbone.apply(variables, x, train=True, mutable=["batch_stats"])
      return emb, dict(new)
    emb, _ = backbone.apply(variables, x, train=False)
    return emb, model_state

  def regularizer(dim):
    return ClassRegularizer(
      num_basis=int(num_base_classes), features=dim, hidden=crn.hidden, scale_init=crn.scale_init
    )

  def init(rng, batch):
    r1, r2 = jax.random.split(rng)
    variables = backbone.init(r1, batch["support"], train=False)
    backbone_params, model_state = split_variables(variables)
    params = {"backbone": backbone_params}
    extra = {}
    if crn is not None:
      emb, _ = backbone.apply(variables, batch["support"], train=False)
      dim = emb.shape[-1]
      params["crn"] = regularizer(dim).init(r2, emb, batch["support_label"], num_ways)["params"]
      extra = {
        "memory": jnp.zeros((int(num_base_classes), dim), jnp.float32),
        "seen": jnp.zeros((int(num_base_classes),), jnp.bool_),
      }
    return params, model_state, extra

  def loss_fn(params, model_state, extra, batch, rng, step):
    del rng, step
    ns = batch["support"].shape[0]
    x = jnp.concatenate([batch["support"], batch["query"]], axis=0)
    emb, new_state = embed(params, model_state, x, train=True)
    s_emb, q_emb = emb[:ns], emb[ns:]
    s_lab, q_lab = batch["support_label"], batch["query_label"]
    metrics = {}
    if crn is None:
      protos = prototypes(s_emb, s_lab, num_ways)
      new_extra = extra
      total = 0.0
    else:
      reg = regularizer(emb.shape[-1])
      mu = prototypes(s_emb, s_lab, num_ways)
      desc, _, _ = reg.apply({"params": params["crn"]}, s_emb, s_lab, num_ways)
      protos = (1.0 - crn.mix) * mu + crn.mix * desc
      # Base-class classification through the basis, on every sample of the episode.
      all_cls = jnp.concatenate([batch["support_class"], batch["query_class"]])
      blogits = reg.apply({"params": params["crn"]}, emb, method=ClassRegularizer.basis_logits)
      base_ce = optax.softmax_cross_entropy_with_integer_labels(blogits, all_cls).mean()
      # Running class memory (stop-gradient) and the reconstruction target.
      all_lab = jnp.concatenate([s_lab, q_lab])
      ep_mean = jax.lax.stop_gradient(prototypes(emb, all_lab, num_ways))  # [N, D]
      cls = batch["support_class"][:: ns // num_ways]  # class-major layout: one id per way
      old, seen = extra["memory"][cls], extra["seen"][cls][:, None]
      rho = crn.memory_momentum
      upd = jnp.where(seen, rho * old + (1.0 - rho) * ep_mean, ep_mean)
      new_extra = {
        "memory": extra["memory"].at[cls].set(upd),
        "seen": extra["seen"].at[cls].set(True),
      }
      recon = jnp.mean(jnp.square(desc - upd))
      total = crn.base_weight * base_ce + crn.recon_weight * recon
      metrics.update(base_ce=base_ce, recon=recon, scale=jnp.exp(params["crn"]["log_scale"]))
    logits = proto_logits(q_emb, protos, metric=metric, scale=scale)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, q_lab).mean()
    acc = jnp.mean((jnp.argmax(logits, -1) == q_lab).astype(jnp.float32))
    metrics.update(episode_ce=ce, episode_acc=acc)
    return ce + total, {"model_state": new_state, "extra": new_extra, "metrics": metrics}

  return Task(init=init, loss_fn=loss_fn, batch_partition=replicate_batch, finalize=finalize)


def embed_images(
  backbone: nn.Module, params, model_state, images, *, batch_size: int = 500
) -> np.ndarray:
  """Eval-mode embeddings ``[n, D]`` (float32) of uint8 ``images [n, H, W, C]``, in batches."""

  @jax.jit
  def f(x):
    emb, _ = backbone.apply(
      {"params": params["backbone"], **model_state}, x.astype(jnp.float32) / 255.0, train=False
    )
    return emb

  out = [
    np.asarray(f(np.asarray(images[i : i + batch_size]))) for i in range(0, len(images), batch_size)
  ]
  return np.concatenate(out)


def episode_arrays(sampler: EpisodeSampler, num_episodes: int, first: int = 0):
  """Stacks episodes ``first .. first + E - 1``: dict of int arrays ``[E, ...]``."""
  eps = [sampler[t] for t in range(first, first + num_episodes)]
  return {
    "classes": np.stack([e.classes for e in eps]),
    "support": np.stack([e.support for e in eps]),
    "query": np.stack([e.query for e in eps]),
    "support_label": np.stack([e.support_labels for e in eps]),
    "query_label": np.stack([e.query_labels for e in eps]),
  }


def evaluate_episodes(
  emb: np.ndarray,
  episodes: dict[str, np.ndarray],
  *,
  num_ways: int,
  metric: str = "sqeuclidean",
  scale: float = 1.0,
  proto_fn: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
) -> dict[str, np.ndarray]:
  """Classifies the queries of every episode from precomputed embeddings.

  Args:
    emb: ``[n, D]`` embeddings of the split's samples (indexed by sample index).
    episodes: `episode_arrays` output.
    num_ways: N.
    metric, scale: as `proto_logits`.
    proto_fn: ``proto_fn(support_emb [N*K, D], support_labels [N*K]) -> [N, D]``; default the
      support mean (ProtoNet).

  Returns:
    ``{"correct": bool [E, N*Q], "prototypes": float32 [E, N, D], "accuracy": mean,
    "ci95": half-width}``.
  """
  if proto_fn is None:
    proto_fn = lambda s, lab: prototypes(s, lab, num_ways)

  @jax.jit
  def one(e, sup, qry, slab, qlab):
    p = proto_fn(e[sup], slab)
    logits = proto_logits(e[qry], p, metric=metric, scale=scale)
    return jnp.argmax(logits, -1) == qlab, p

  e = jnp.asarray(emb)
  correct, protos = jax.vmap(one, in_axes=(None, 0, 0, 0, 0))(
    e, episodes["support"], episodes["query"], episodes["support_label"], episodes["query_label"]
  )
  correct, protos = np.asarray(correct), np.asarray(protos)
  mean, ci = fewshot_accuracy(correct)
  return {"correct": correct, "prototypes": protos, "accuracy": mean, "ci95": ci}


def crn_proto_fn(crn: CRNWeights, params, *, num_base_classes: int, num_ways: int):
  """CRN's prototype function for `evaluate_episodes`, from params of a trained `fewshot_task`."""
  dim = int(params["crn"]["basis"].shape[-1])
  reg = ClassRegularizer(
    num_basis=int(num_base_classes), features=dim, hidden=crn.hidden, scale_init=crn.scale_init
  )
  return lambda s, lab: regularized_prototypes(reg, params["crn"], s, lab, num_ways, mix=crn.mix)
