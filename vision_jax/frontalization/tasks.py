"""Frontalization GAN training as one multi-update Task on the shared trainer, and the generator
checkpoint format.

`frontalization_task` returns ``Task(updates=(Update("d", ..., params="disc", optim="optim_d"),
Update("g", ..., params="gen", optim="optim")))``: in every jitted step the discriminators (global,
plus parsing-guided when given) take one step on ``L_D`` against the current generator's
(stop-gradient) output, then the generator takes one step on ``L_G`` against the discriminators
just updated (`vision_jax.frontalization.losses`). The frozen recognition network's params live in
``TrainState.extra`` (never differentiated). Without any discriminator the Task has only the ``g``
update (pixel + identity + TV + symmetry).

DR-GAN variant (`vision_jax.frontalization.drgan`): ``gen`` a `DrGanGenerator` and/or
``drgan_disc`` a `DrGanDiscriminator`, whose identity/pose cross-entropies replace the global D's
terms (``L_D`` gains ``L_D^{DR-GAN}``, ``L_G`` gains ``λ_adv L_G^{adv}``); it needs the batch's
train-identity ``label`` and the probe's ``pose_index``.

Batch: ``{"image": [B, S, S, C] probe, "frontal": [B, S, S, C] ground truth, "frontal_parsing":
int [B, S, S], "label": int [B], "pose_index": int [B]}`` (uint8 images are scaled to ``[0, 1]``
on device; the parsing maps are needed only by the parsing-guided D, ``label`` / ``pose_index``
only by the DR-GAN D).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax
import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.frontalization import losses as L
from vision_jax.frontalization.drgan import (
  DrGanDiscriminator,
  DrGanGenerator,
  drgan_d_loss,
  identity_pose_ce,
)
from vision_jax.frontalization.model import (
  FrontalGenerator,
  GlobalDiscriminator,
  ParsingDiscriminator,
)
from vision_jax.frontalization.parsing import check_parsing_batch, region_masks
from vision_jax.hfr.tasks import check_params_like, identity_embedding, read_msgpack, to_float
from vision_jax.train.step import Task, Update
from vision_jax.utils.arrays import is_concrete


def _check_labels(batch, drgan: DrGanDiscriminator, where: str) -> None:
  """The DR-GAN D's labels: integer ``label`` in ``[0, N_d)`` and ``pose_index`` in ``[0, N_p)``."""
  b = batch["image"].shape[0]
  for k, n in (("label", drgan.num_identities), ("pose_index", drgan.num_poses)):
    if k not in batch:
      raise ValueError(
        f"{where}: the DR-GAN discriminator needs batch[{k!r}] (int [B]); keys present: "
        f"{sorted(batch)}"
      )
    v = batch[k]
    if tuple(v.shape) != (b,) or not np.issubdtype(np.dtype(v.dtype), np.integer):
      raise ValueError(f"{where}: batch[{k!r}] must be int [B={b}], got {v.dtype} {tuple(v.shape)}")
    if is_concrete(v):  # under eval_shape / jit only shape and dtype can be checked
      lo, hi = int(np.min(v)), int(np.max(v))
      if lo < 0 or hi >= n:
        raise ValueError(f"{where}: batch[{k!r}] holds {lo}..{hi}, outside 0..{n - 1}")


def _check_batch(batch, gen, parsing: bool, where: str) -> None:
  if not isinstance(batch, Mapping) or "image" not in batch or "frontal" not in batch:
    keys = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
    raise ValueError(f"{where}: the batch needs 'image' (probes) and 'frontal'; got {keys}")
  want = (gen.image_size, gen.image_size, gen.channels)
  for k in ("image", "frontal"):
    if batch[k].ndim != 4 or tuple(batch[k].shape[1:]) != want:
      raise ValueError(
        f"{where}: batch[{k!r}] has shape {tuple(batch[k].shape)}; the generator is "
        f"{gen.image_size} px with {gen.channels} channel(s), i.e. [B, {', '.join(map(str, want))}]"
      )
  if parsing:
    check_parsing_batch(batch, where=f"{where}: batch")


def frontalization_task(
  gen: FrontalGenerator | DrGanGenerator,
  id_net: nn.Module,
  *,
  id_params,
  global_disc: GlobalDiscriminator | None = None,
  parsing_disc: ParsingDiscriminator | None = None,
  drgan_disc: DrGanDiscriminator | None = None,
  frontal_pose: int | None = None,
  weights: L.FrontalizationWeights = L.FrontalizationWeights(),
  adversarial: str = "nonsaturating",
  summarize: Callable[[dict[str, Any]], dict[str, float]] | None = None,
) -> Task:
  """The frontalization GAN (see the module docstring).

  Args:
    gen: the generator (TP-GAN-like or DR-GAN). id_net: frozen recognition network
      (``intermediates["embedding"]``). id_params: its trained params (stored in ``extra``).
    global_disc: ``D_g`` (``None``: no global adversarial term).
    parsing_disc: ``D_p`` (``None``: the baseline without the parsing-guided D).
    drgan_disc: DR-GAN's identity + pose D (instead of ``global_disc``).
    frontal_pose: the frontal pose index of ``drgan_disc``'s pose head (default: a DR-GAN
      generator's ``target_pose``).
    weights: the ``λ``; ``weights.adv`` / ``weights.parsing_adv`` apply only with their D.
    adversarial: ``"nonsaturating"`` or ``"hinge"``.
    summarize: host metrics of the eval outputs ``{"embedding" [N, D], "l1" [N]}``.

  Raises:
    ValueError: unknown ``adversarial``; both ``global_disc`` and ``drgan_disc``; a
      ``frontal_pose`` outside the pose head; at init, a batch without ``image`` / ``frontal``
      of the generator's size, (with ``parsing_disc``) without valid ``frontal_parsing`` maps,
      or (with ``drgan_disc``) without ``label`` / ``pose_index`` in range.
  """
  if adversarial not in L.ADVERSARIAL:
    raise ValueError(f"adversarial={adversarial!r}; expected one of {L.ADVERSARIAL}")
  if global_disc is not None and drgan_disc is not None:
    raise ValueError("give global_disc or drgan_disc, not both (the DR-GAN D replaces D_g)")
  if drgan_disc is not None:
    if frontal_pose is None:
      frontal_pose = getattr(gen, "target_pose", None)
    if frontal_pose is None or not 0 <= int(frontal_pose) < drgan_disc.num_poses:
      raise ValueError(
        f"frontal_pose={frontal_pose!r} must be a pose index in 0..{drgan_disc.num_poses - 1} "
        "of the DR-GAN discriminator's pose head"
      )
    frontal_pose = int(frontal_pose)
  regions = parsing_disc.regions if parsing_disc is not None else ()
  has_d = global_disc is not None or parsing_disc is not None or drgan_disc is not None
  noise_dim = int(getattr(gen, "noise_dim", 0))

  def init(rng, batch):
    _check_batch(batch, gen, parsing_disc is not None, "frontalization_task")
    if drgan_disc is not None:
      _check_labels(batch, drgan_disc, "frontalization_task")
    rg, rd, rp = jax.random.split(rng, 3)
    y = to_float(batch["frontal"][:1])
    params = {"gen": gen.init(rg, to_float(batch["image"][:1]))["params"]}
    if has_d:
      params["disc"] = {}
    if global_disc is not None:
      params["disc"]["global"] = global_disc.init(rd, y)["params"]
    if parsing_disc is not None:
      masks = region_masks(batch["frontal_parsing"][:1], regions)
      params["disc"]["parsing"] = parsing_disc.init(rp, y, masks)["params"]
    if drgan_disc is not None:
      params["disc"]["drgan"] = drgan_disc.init(rd, y)["params"]
    return params, {}, {"id_net": id_params}

  def generate(params, batch, rng=None):
    x = to_float(batch["image"])
    if noise_dim and rng is not None:  # train time; evaluation uses z = 0
      z = jax.random.uniform(rng, (x.shape[0], noise_dim), minval=-1.0, maxval=1.0)
      return gen.apply({"params": params["gen"]}, x, noise=z)
    return gen.apply({"params": params["gen"]}, x)

  def drgan_logits(params, y):
    return drgan_disc.apply({"params": params["disc"]["drgan"]}, y)

  def disc_logits(params, y, masks):
    out = {}
    if global_disc is not None:
      out["global"] = global_disc.apply({"params": params["disc"]["global"]}, y)
    if parsing_disc is not None:
      logits, present, _ = parsing_disc.apply({"params": params["disc"]["parsing"]}, y, masks)
      out["parsing"], out["present"] = logits, present
    return out

  def masks_of(batch):
    return region_masks(batch["frontal_parsing"], regions) if parsing_disc is not None else None

  def d_loss(params, model_state, extra, batch, rng, step):
    y = to_float(batch["frontal"])
    fake = jax.lax.stop_gradient(generate(params, batch, rng))
    masks = masks_of(batch)
    real_o, fake_o = disc_logits(params, y, masks), disc_logits(params, fake, masks)
    loss, metrics = jnp.zeros((), jnp.float32), {}
    if global_disc is not None:
      g = jnp.mean(L.d_adversarial(real_o["global"], fake_o["global"], adversarial))
      loss = loss + g
      metrics.update(global_loss=g, real_logit=jnp.mean(real_o["global"]),
                     fake_logit=jnp.mean(fake_o["global"]))  # fmt: skip
    if parsing_disc is not None:
      p = L.region_d_loss(real_o["parsing"], fake_o["parsing"], real_o["present"], adversarial)
      loss = loss + p
      metrics.update(parsing_loss=p, parsing_real_logit=jnp.mean(real_o["parsing"]),
                     parsing_fake_logit=jnp.mean(fake_o["parsing"]))  # fmt: skip
    if drgan_disc is not None:
      lab = batch["label"]
      ids = jnp.concatenate([lab, lab])
      poses = jnp.concatenate([batch["pose_index"], jnp.full_like(lab, frontal_pose)])
      # one D pass over [probes, frontals, generated]: D has no batch statistics
      id_l, pose_l = drgan_logits(params, jnp.concatenate([to_float(batch["image"]), y, fake]))
      n = 2 * lab.shape[0]
      real, fake_id = (id_l[:n], pose_l[:n]), id_l[n:]
      r = drgan_d_loss(real, fake_id, ids, poses)
      loss = loss + r
      metrics.update(drgan_loss=r, real_id_acc=jnp.mean(jnp.argmax(real[0], -1) == ids),
                     fake_as_fake=jnp.mean(jnp.argmax(fake_id, -1) == drgan_disc.num_identities))  # fmt: skip
    return loss, {"metrics": metrics}

  def g_loss(params, model_state, extra, batch, rng, step):
    y = to_float(batch["frontal"])
    y_hat = generate(params, batch, rng)
    f = identity_embedding(id_net, extra["id_net"], jnp.concatenate([y_hat, y]))
    f_hat, f_real = jnp.split(f, 2)
    terms = {
      "pixel": jnp.mean(L.pixel_l1(y_hat, y)),
      "identity": jnp.mean(L.identity_distance(f_hat, jax.lax.stop_gradient(f_real))),
      "tv": jnp.mean(L.total_variation(y_hat)),
      "sym": jnp.mean(L.symmetry(y_hat)),
    }
    if has_d:
      fake_o = disc_logits(params, y_hat, masks_of(batch))
      if global_disc is not None:
        terms["adv"] = jnp.mean(L.g_adversarial(fake_o["global"], adversarial))
      if parsing_disc is not None:
        terms["parsing_adv"] = L.region_g_loss(fake_o["parsing"], fake_o["present"], adversarial)
      if drgan_disc is not None:
        id_l, pose_l = drgan_logits(params, y_hat)
        target = jnp.full_like(batch["label"], frontal_pose)
        terms["adv"] = jnp.mean(identity_pose_ce(id_l, pose_l, batch["label"], target))
    return L.generator_total(terms, weights), {"metrics": terms}

  def eval_fn(params, model_state, extra, batch):
    y_hat = generate(params, batch)
    out = {"embedding": identity_embedding(id_net, extra["id_net"], y_hat)}
    if "frontal" in batch:
      out["l1"] = L.pixel_l1(y_hat, to_float(batch["frontal"]))
    return out

  updates = [Update("g", g_loss, params="gen", optim="optim")]
  if has_d:
    updates.insert(0, Update("d", d_loss, params="disc", optim="optim_d"))
  return Task(init=init, updates=tuple(updates), eval_fn=eval_fn, summarize=summarize)


def make_frontalizer(gen: FrontalGenerator | DrGanGenerator) -> Callable:
  """Jitted ``frontalize(gen_params, images) -> [B, S, S, C]`` float in ``[0, 1]``."""
  return jax.jit(lambda p, x: gen.apply({"params": p}, to_float(x)))


_META_FIELDS = ("image_size", "channels", "width", "code_dim")
_DRGAN_FIELDS = ("num_poses", "target_pose", "noise_dim")


def _kind(gen) -> str:
  return "drgan" if isinstance(gen, DrGanGenerator) else "tpgan"


def _meta_fields(gen) -> tuple[str, ...]:
  return _META_FIELDS + (_DRGAN_FIELDS if isinstance(gen, DrGanGenerator) else ())


def save_generator(path: str, gen: FrontalGenerator | DrGanGenerator, params) -> None:
  """Writes generator params plus its kind (``tpgan`` / ``drgan``) and architecture
  (``image_size``, ``channels``, ``width``, ``code_dim``; DR-GAN also ``num_poses``,
  ``target_pose``, ``noise_dim``) as flax msgpack; `load_generator` checks them."""
  meta = {k: int(getattr(gen, k)) for k in _meta_fields(gen)}
  meta["generator"] = _kind(gen)
  tree = {"params": jax.device_get(flax.core.unfreeze(params)), "meta": meta}
  with open(path, "wb") as f:
    f.write(flax.serialization.msgpack_serialize(tree))


def load_generator(
  path: str, gen: FrontalGenerator | DrGanGenerator, *, key: str = "gen.checkpoint"
):
  """Reads a `save_generator` file for ``gen``.

  Args:
    path: the file. gen: the generator in use. key: the config key that named ``path``.

  Raises:
    FileNotFoundError: ``path`` does not exist.
    ValueError: not a generator checkpoint, or one of another kind / resolution / architecture
      (the message names the file, the stored and the expected values).
  """
  tree = read_msgpack(path, f"generator checkpoint {key}={path!r}")
  if not isinstance(tree, Mapping) or set(tree) != {"params", "meta"}:
    raise ValueError(
      f"{key}={path!r} is not a generator checkpoint written by save_generator (expected keys "
      f"'params' and 'meta')"
    )
  meta = tree["meta"]
  kind = meta.get("generator", "tpgan")
  kind = kind.decode() if isinstance(kind, bytes) else str(kind)
  if kind != _kind(gen):
    raise ValueError(
      f"{key}={path!r} holds a {kind!r} generator, but this generator is {_kind(gen)!r}"
    )
  for k in _meta_fields(gen):
    have, want = int(meta.get(k, -1)), int(getattr(gen, k))
    if have != want:
      what = "resolution" if k == "image_size" else k
      raise ValueError(
        f"{key}={path!r} holds a generator of {k}={have}, but this generator has {k}={want} "
        f"(another {what}); retrain it or set the matching size"
      )
  x = jnp.zeros((1, gen.image_size, gen.image_size, gen.channels))
  abstract = jax.eval_shape(lambda: gen.init(jax.random.PRNGKey(0), x))["params"]
  check_params_like(abstract, tree["params"], what=f"generator at {gen.image_size} px",
                    source=repr(path))  # fmt: skip
  return jax.tree.map(jnp.asarray, tree["params"])


__all__ = ["frontalization_task", "load_generator", "make_frontalizer", "save_generator"]
