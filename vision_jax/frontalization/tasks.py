"""Frontalization GAN training as one multi-update Task on the shared trainer, and the generator
checkpoint format.

`frontalization_task` returns ``Task(updates=(Update("d", ..., params="disc", optim="optim_d"),
Update("g", ..., params="gen", optim="optim")))``: in every jitted step the discriminators (global,
plus parsing-guided when given) take one step on ``L_D`` against the current generator's
(stop-gradient) output, then the generator takes one step on ``L_G`` against the discriminators
just updated (`vision_jax.frontalization.losses`). The frozen recognition network's params live in
``TrainState.extra`` (never differentiated). Without any discriminator the Task has only the ``g``
update (pixel + identity + TV + symmetry).

Batch: ``{"image": [B, S, S, C] probe, "frontal": [B, S, S, C] ground truth, "frontal_parsing":
int [B, S, S]}`` (uint8 images are scaled to ``[0, 1]`` on device; the parsing maps are needed
only by the parsing-guided D).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax
import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp

from vision_jax.frontalization import losses as L
from vision_jax.frontalization.model import (
  FrontalGenerator,
  GlobalDiscriminator,
  ParsingDiscriminator,
)
from vision_jax.frontalization.parsing import check_parsing_batch, region_masks
from vision_jax.hfr.tasks import check_params_like, identity_embedding, read_msgpack, to_float
from vision_jax.train.step import Task, Update


def _check_batch(batch, gen: FrontalGenerator, parsing: bool, where: str) -> None:
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
  gen: FrontalGenerator,
  id_net: nn.Module,
  *,
  id_params,
  global_disc: GlobalDiscriminator | None = None,
  parsing_disc: ParsingDiscriminator | None = None,
  weights: L.FrontalizationWeights = L.FrontalizationWeights(),
  adversarial: str = "nonsaturating",
  summarize: Callable[[dict[str, Any]], dict[str, float]] | None = None,
) -> Task:
  """The frontalization GAN (see the module docstring).

  Args:
    gen: the generator. id_net: frozen recognition network (``intermediates["embedding"]``).
    id_params: its trained params (stored in ``extra``).
    global_disc: ``D_g`` (``None``: no global adversarial term).
    parsing_disc: ``D_p`` (``None``: the baseline without the parsing-guided D).
    weights: the ``λ``; ``weights.adv`` / ``weights.parsing_adv`` apply only with their D.
    adversarial: ``"nonsaturating"`` or ``"hinge"``.
    summarize: host metrics of the eval outputs ``{"embedding" [N, D], "l1" [N]}``.

  Raises:
    ValueError: unknown ``adversarial``; at init, a batch without ``image`` / ``frontal`` of the
      generator's size, or (with ``parsing_disc``) without valid ``frontal_parsing`` maps.
  """
  if adversarial not in L.ADVERSARIAL:
    raise ValueError(f"adversarial={adversarial!r}; expected one of {L.ADVERSARIAL}")
  regions = parsing_disc.regions if parsing_disc is not None else ()
  has_d = global_disc is not None or parsing_disc is not None

  def init(rng, batch):
    _check_batch(batch, gen, parsing_disc is not None, "frontalization_task")
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
    return params, {}, {"id_net": id_params}

  def generate(params, batch):
    return gen.apply({"params": params["gen"]}, to_float(batch["image"]))

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
    fake = jax.lax.stop_gradient(generate(params, batch))
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
    return loss, {"metrics": metrics}

  def g_loss(params, model_state, extra, batch, rng, step):
    y = to_float(batch["frontal"])
    y_hat = generate(params, batch)
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


def make_frontalizer(gen: FrontalGenerator) -> Callable:
  """Jitted ``frontalize(gen_params, images) -> [B, S, S, C]`` float in ``[0, 1]``."""
  return jax.jit(lambda p, x: gen.apply({"params": p}, to_float(x)))


_META_FIELDS = ("image_size", "channels", "width", "code_dim")


def save_generator(path: str, gen: FrontalGenerator, params) -> None:
  """Writes generator params plus its architecture (``image_size``, ``channels``, ``width``,
  ``code_dim``) as flax msgpack; `load_generator` checks them."""
  meta = {k: int(getattr(gen, k)) for k in _META_FIELDS}
  tree = {"params": jax.device_get(flax.core.unfreeze(params)), "meta": meta}
  with open(path, "wb") as f:
    f.write(flax.serialization.msgpack_serialize(tree))


def load_generator(path: str, gen: FrontalGenerator, *, key: str = "gen.checkpoint"):
  """Reads a `save_generator` file for ``gen``.

  Args:
    path: the file. gen: the generator in use. key: the config key that named ``path``.

  Raises:
    FileNotFoundError: ``path`` does not exist.
    ValueError: not a generator checkpoint, or one of another resolution / architecture (the
      message names the file, the stored and the expected values).
  """
  tree = read_msgpack(path, f"generator checkpoint {key}={path!r}")
  if not isinstance(tree, Mapping) or set(tree) != {"params", "meta"}:
    raise ValueError(
      f"{key}={path!r} is not a generator checkpoint written by save_generator (expected keys "
      f"'params' and 'meta')"
    )
  meta = tree["meta"]
  for k in _META_FIELDS:
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
