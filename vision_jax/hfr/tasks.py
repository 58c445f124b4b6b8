"""DVG-Face as Tasks on the shared trainer: identity sampler, generator (one multi-update Task),
paired sampling, and the two-stage recognition fine-tuning.

Stages (BradyFU/DVG-Face ``train_generator.py``, ``gen_samples.py``, ``train_lightcnn.py``):

1. `sampler_task`: the identity sampler VAE on identity features ``F(x_b)`` of real images.
2. `generator_task`: ``Task(updates=(Update("d", ..., params="disc", optim="optim_d"),
   Update("g", ..., params="gen", optim="optim_g")))`` with the adversarial term on, only the
   ``g`` update with it off (the official objective). The frozen identity network and sampler
   live in ``TrainState.extra`` (never differentiated).
3. `make_pair_sampler` / `generate_pairs`: batched, jitted paired sampling. As in the official
   ``gen_samples.py``, only the identity comes from noise by default (``attributes="real"``: the
   attribute codes are those of real images); ``attributes="noise"`` draws unit codes too.
4. `recognition_task`: LightCNN with cross-entropy on real images (+ the contrastive loss on
   generated pairs); stage I trains only the last FC layer ``fc2`` (an ``Update`` over that
   parameter group), stage II the whole network.

Image batches are uint8 ``[B, H, W, C]``, scaled to ``[0, 1]`` on device (no mean/std, as the
official code); RGB is converted to grey (0.299, 0.587, 0.114) before the identity network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vision_jax.hfr import losses as L
from vision_jax.hfr.model import DualGenerator, IdentitySampler, PairDiscriminator, l2_normalize
from vision_jax.train.step import Task, Update


def to_float(image: jax.Array) -> jax.Array:
  """uint8 ``[B, H, W, C]`` -> float32 in ``[0, 1]`` (floats pass through)."""
  if jnp.issubdtype(image.dtype, jnp.integer):
    return image.astype(jnp.float32) / 255.0
  return image.astype(jnp.float32)


def to_gray(x: jax.Array) -> jax.Array:
  """``[B, H, W, 3]`` RGB -> ``[B, H, W, 1]`` with weights (0.299, 0.587, 0.114); 1 channel as is."""
  if x.shape[-1] == 1:
    return x
  if x.shape[-1] != 3:
    raise ValueError(f"to_gray: expected 1 or 3 channels, got shape {x.shape}")
  return jnp.sum(x * jnp.asarray([0.299, 0.587, 0.114], x.dtype), -1, keepdims=True)


def identity_embedding(id_net: nn.Module, params, x: jax.Array) -> jax.Array:
  """Unit identity features ``[B, D]`` of float images ``x`` in ``[0, 1]`` (grey-converted)."""
  _, inter = id_net.apply({"params": params}, to_gray(x), train=False)
  return l2_normalize(inter["embedding"])


def _paths_shapes(tree) -> dict[str, tuple]:
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(tree), sep="/")
  return {k: tuple(np.shape(v)) for k, v in flat.items()}


def check_params_like(expected, given, *, what: str, source: str = "") -> None:
  """Raises ValueError naming missing / unexpected / mis-shaped parameters of ``given``.

  Args:
    expected: params of the architecture in use (arrays or ``ShapeDtypeStruct``).
    given: params to load. what: e.g. ``"identity network lightcnn9 at 32 px"``.
    source: where ``given`` came from (a path), for the message.
  """
  e, g = _paths_shapes(expected), _paths_shapes(given)
  missing = sorted(set(e) - set(g))
  unexpected = sorted(set(g) - set(e))
  shapes = [
    f"{k}: checkpoint {g[k]} vs model {e[k]}" for k in sorted(set(e) & set(g)) if e[k] != g[k]
  ]
  if missing or unexpected or shapes:
    parts = []
    if missing:
      parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
      parts.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    if shapes:
      parts.append(f"shape mismatch {shapes[:3]}{' ...' if len(shapes) > 3 else ''}")
    src = f" {source}" if source else ""
    raise ValueError(
      f"checkpoint{src} does not match the {what}: {'; '.join(parts)}. Check the model name, "
      "image size and number of classes the checkpoint was trained with."
    )


def save_params(path: str, params) -> None:
  """Writes a params tree as flax msgpack (the format `load_params` reads)."""
  with open(path, "wb") as f:
    f.write(flax.serialization.msgpack_serialize(jax.device_get(flax.core.unfreeze(params))))


def read_msgpack(path: str, desc: str):
  """The flax-msgpack tree in ``path``; ``desc`` names the file in errors (``"... checkpoint
  'x.msgpack'"``, ``"gen.checkpoint='x.msgpack'"``).

  Raises:
    FileNotFoundError: ``path`` does not exist.
    ValueError: not a msgpack file.
  """
  import os

  if not os.path.isfile(path):
    raise FileNotFoundError(f"{desc} does not exist")
  with open(path, "rb") as f:
    try:
      return flax.serialization.msgpack_restore(f.read())
    except Exception as e:  # noqa: BLE001 - any decode failure is a bad file
      raise ValueError(f"{desc} is not a flax msgpack params file: {e}") from e


def load_params(path: str, model: nn.Module, example: jax.Array, *, what: str, ignore=()):
  """Reads a flax-msgpack params tree (optionally under a ``"params"`` key) and checks it against
  ``model.init(..., example, train=False)``; top-level keys in ``ignore`` (e.g. a classifier
  ``"fc2"`` of another class count) are dropped first.

  Raises:
    FileNotFoundError: ``path`` does not exist.
    ValueError: not a msgpack params file, or the wrong architecture (`check_params_like`).
  """
  tree = read_msgpack(path, f"{what} checkpoint {path!r}")
  if isinstance(tree, Mapping) and set(tree) == {"params"}:
    tree = tree["params"]
  if not isinstance(tree, Mapping):
    raise ValueError(f"{what} checkpoint {path!r} holds a {type(tree).__name__}, not a params dict")
  tree = {k: v for k, v in tree.items() if k not in ignore}
  abstract = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), example, train=False))
  check_params_like(abstract["params"], tree, what=what, source=repr(path))
  return jax.tree.map(jnp.asarray, tree)


def _check_pair_batch(batch, where: str):
  if not isinstance(batch, Mapping) or "a" not in batch or "b" not in batch:
    raise ValueError(f"{where}: batch needs keys 'a' and 'b' (one image per modality)")
  a, b = batch["a"], batch["b"]
  if a.ndim != 4 or a.shape != b.shape:
    raise ValueError(
      f"{where}: modality images must be [B, H, W, C] of one size; got a {tuple(a.shape)} and "
      f"b {tuple(b.shape)}. Resize both modalities to the same size."
    )


# --------------------------------------------------------------------------- host init
PARAM_INITS = ("flax", "host")


def _rng_dependent_outputs(fn, *args) -> list[bool]:
  """For each flat output of ``fn(rng, *rest)``: does it depend on ``rng`` (the first argument)?

  Conservative data-flow over the jaxpr: any equation with a dependent input makes all of its
  outputs dependent (nested calls included).
  """
  from jax.extend.core import Literal

  spec = jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), args)
  closed = jax.make_jaxpr(fn)(*spec)
  jaxpr = closed.jaxpr
  n_rng = len(jax.tree.leaves(spec[0]))
  dep = set(jaxpr.invars[:n_rng])
  for eqn in jaxpr.eqns:
    if any(not isinstance(v, Literal) and v in dep for v in eqn.invars):
      dep.update(eqn.outvars)
  return [not isinstance(v, Literal) and v in dep for v in jaxpr.outvars]


def host_param_init(task: Task, seed: int) -> Task:
  """``task`` whose init draws its random parameters on the host with NumPy instead of in XLA.

  Every leaf of ``task.init(rng, batch)`` that depends on ``rng`` (a randomly initialised
  kernel) is replaced by a seeded NumPy draw ``N(0, 1 / fan_in)`` (``fan_in = prod(shape[:-1])``,
  LeCun-normal scale; 1-D leaves: zeros), a constant of the init program; every other leaf
  (zero biases, given checkpoints, frozen networks in ``extra``) keeps its value. XLA drops the
  unused random draws, so the compiled init holds no per-parameter threefry kernel (each costs
  about 0.5 s of XLA CPU compile time). Values differ from flax's initialisers: meant for smoke
  runs (``--config.param_init=host``), not for results.
  """
  import dataclasses

  orig = task.init

  def init(rng, batch):
    out = orig(rng, batch)
    leaves, tree = jax.tree.flatten(out)
    dep = _rng_dependent_outputs(orig, rng, batch)
    if len(dep) != len(leaves):
      raise ValueError(f"host_param_init: {len(dep)} traced outputs vs {len(leaves)} leaves")
    new = []
    for i, (leaf, d) in enumerate(zip(leaves, dep)):
      if not d:
        new.append(leaf)
        continue
      shape, dtype = tuple(leaf.shape), leaf.dtype
      if len(shape) >= 2 and jnp.issubdtype(dtype, jnp.floating):
        fan_in = int(np.prod(shape[:-1]))
        r = np.random.default_rng([int(seed), i])
        val = r.standard_normal(shape, np.float32) / np.sqrt(max(fan_in, 1))
      else:
        val = np.zeros(shape, dtype)
      new.append(jnp.asarray(val, dtype))
    return jax.tree.unflatten(tree, new)

  return dataclasses.replace(task, init=init)


def param_init(task: Task, how: str, seed: int) -> Task:
  """``task`` as is (``how="flax"``) or with `host_param_init` (``"host"``)."""
  if how == "flax":
    return task
  if how == "host":
    return host_param_init(task, seed)
  raise ValueError(f"param_init={how!r}; expected one of {PARAM_INITS}")


# --------------------------------------------------------------------------- identity sampler
def sampler_task(sampler: IdentitySampler, *, kl_weight: float = 1e-3) -> Task:
  """The identity sampler VAE (`vision_jax.hfr.sampler_loss`) on ``batch["feature"] [B, D]``."""

  def init(rng, batch):
    r1, r2 = jax.random.split(rng)
    return sampler.init(r1, batch["feature"][:1], r2)["params"], {}, {}

  def loss_fn(params, model_state, extra, batch, rng, step):
    f = l2_normalize(batch["feature"])
    rec, mu, logvar = sampler.apply({"params": params}, f, rng)
    per = L.sampler_loss(f, rec, mu, logvar, kl_weight=kl_weight)
    kl = jnp.mean(L.gaussian_kl(mu, logvar))
    return jnp.mean(per), {"metrics": {"cos": jnp.mean(L.cosine(rec, f)), "kl": kl}}

  return Task(init=init, loss_fn=loss_fn)


def sample_identities(sampler: IdentitySampler, params, rng, n: int) -> jax.Array:
  """``n`` unit identity features decoded from ``N(0, I)`` noise, ``[n, feature_dim]``."""
  noise = jax.random.normal(rng, (n, sampler.noise_dim))
  return sampler.apply({"params": params}, noise, method="decode")


# --------------------------------------------------------------------------- generator
def generator_task(
  gen: DualGenerator,
  id_net: nn.Module,
  sampler: IdentitySampler,
  *,
  id_params,
  sampler_params,
  weights: L.GeneratorWeights = L.GeneratorWeights(),
  disc: PairDiscriminator | None = None,
) -> Task:
  """The dual generator stage as one multi-update Task (see the module docstring).

  Batch: ``{"a": uint8 [B, H, W, C], "b": uint8 [B, H, W, C]}``, a same-identity pair per row
  (not pixel-aligned); ``b`` is the identity network's modality (VIS / photo), whose identity
  ``f = F(x_b)`` is used for both modalities (as the official code).

  Args:
    gen: the dual generator. id_net: frozen identity network (LightCNN; ``intermediates
      ["embedding"]``). sampler: identity sampler (its ``decode``).
    id_params, sampler_params: their trained params (stored in ``extra``, not differentiated).
    weights: loss weights; ``weights.kl > 0`` needs ``gen.variational``; ``weights.adv > 0``
      needs ``disc``.
    disc: pair discriminator for the adversarial term (adds the ``d`` update).

  Raises:
    ValueError: KL without variational encoders, adversarial weight without a discriminator (or
      the reverse), mismatched modality image sizes (at init).
  """
  if weights.kl > 0 and not gen.variational:
    raise ValueError("weights.kl > 0 needs DualGenerator(variational=True) (mu / logvar heads)")
  if (weights.adv > 0) != (disc is not None):
    raise ValueError(
      f"weights.adv={weights.adv} and disc={'set' if disc is not None else 'None'}: the "
      "adversarial term needs a discriminator and a discriminator needs adv > 0"
    )
  variational = gen.variational

  def init(rng, batch):
    _check_pair_batch(batch, "generator_task")
    rg, rd = jax.random.split(rng)
    x_a, x_b = to_float(batch["a"][:1]), to_float(batch["b"][:1])
    ident = jnp.zeros((1, gen.attr_dim), jnp.float32)
    params = {"gen": gen.init(rg, ident, x_a, x_b)["params"]}
    if disc is not None:
      params["disc"] = disc.init(rd, x_a, x_b)["params"]
    return params, {}, {"id_net": id_params, "sampler": sampler_params}

  def apply_gen(params, *args, method):
    return gen.apply({"params": params["gen"]}, *args, method=method)

  def forward(params, extra, batch, rng):
    x_a, x_b = to_float(batch["a"]), to_float(batch["b"])
    b = x_a.shape[0]
    r_perm, r_noise, r_a, r_b = jax.random.split(rng, 4)
    id_real = jax.lax.stop_gradient(identity_embedding(id_net, extra["id_net"], x_b))
    id_fake = sample_identities(sampler, extra["sampler"], r_noise, b)
    perm = L.random_derangement(r_perm, b)
    ea = apply_gen(params, x_a, "a", r_a if variational else None, method="encode")
    eb = apply_gen(params, x_b, "b", r_b if variational else None, method="encode")
    ids = jnp.concatenate([id_real, id_real[perm], id_fake])

    def dec3(e, m):
      tile = lambda v: jnp.concatenate([v, v, v])  # noqa: E731
      y = apply_gen(params, ids, tile(e["z"]), tile(e["style"]), m, method="decode")
      return jnp.split(y, 3)

    rec_a, swap_a, fake_a = dec3(ea, "a")
    rec_b, swap_b, fake_b = dec3(eb, "b")
    out = dict(
      x_a=x_a, x_b=x_b, rec_a=rec_a, rec_b=rec_b, swap_a=swap_a, swap_b=swap_b,
      fake_a=fake_a, fake_b=fake_b, z_a=ea["z"], z_b=eb["z"], id_real=id_real, id_fake=id_fake,
    )  # fmt: skip
    if variational:
      out.update(mu_a=ea["mu"], logvar_a=ea["logvar"], mu_b=eb["mu"], logvar_b=eb["logvar"])
    return out

  def g_loss(params, model_state, extra, batch, rng, step):
    out = forward(params, extra, batch, rng)
    f = identity_embedding(
      id_net,
      extra["id_net"],
      jnp.concatenate([out["rec_a"], out["rec_b"], out["fake_a"], out["fake_b"]]),
    )
    out["f_rec_a"], out["f_rec_b"], out["f_fake_a"], out["f_fake_b"] = jnp.split(f, 4)
    if disc is not None:
      out["d_fake"] = disc.apply({"params": params["disc"]}, out["fake_a"], out["fake_b"])
    terms = L.generator_terms(out)
    total = L.generator_total(terms, weights)
    return total, {"metrics": terms}

  def d_loss(params, model_state, extra, batch, rng, step):
    out = forward(params, extra, batch, rng)
    fake_a, fake_b = jax.lax.stop_gradient((out["fake_a"], out["fake_b"]))
    real = disc.apply({"params": params["disc"]}, out["x_a"], out["x_b"])
    fake = disc.apply({"params": params["disc"]}, fake_a, fake_b)
    loss = jnp.mean(L.d_nonsaturating(real, fake))
    return loss, {"metrics": {"real_logit": jnp.mean(real), "fake_logit": jnp.mean(fake)}}

  updates = [Update("g", g_loss, params="gen", optim="optim_g")]
  if disc is not None:
    updates.insert(0, Update("d", d_loss, params="disc", optim="optim_d"))
  return Task(init=init, updates=tuple(updates))


# --------------------------------------------------------------------------- sampling
def make_pair_sampler(
  gen: DualGenerator, sampler: IdentitySampler, *, attributes: str = "real"
) -> Callable:
  """Jitted ``sample(gen_params, sampler_params, x_a, x_b, rng) -> (fake_a, fake_b, identity)``.

  Identities are decoded from noise; attribute codes come from the real images ``x_a, x_b``
  (uint8 or float ``[B, H, W, C]``; ``attributes="real"``, the official ``gen_samples.py``) or
  are unit Gaussian directions (``attributes="noise"``; ``x_a, x_b`` then only fix ``B``).
  Outputs are float ``[B, H, W, C]`` in ``[0, 1]`` and ``[B, D]``.

  Raises:
    ValueError: unknown ``attributes``.
  """
  if attributes not in ("real", "noise"):
    raise ValueError(f"attributes={attributes!r}; expected 'real' or 'noise'")

  @jax.jit
  def sample(gen_params, sampler_params, x_a, x_b, rng):
    r_id, r_a, r_b = jax.random.split(rng, 3)
    b = x_a.shape[0]
    ident = sample_identities(sampler, sampler_params, r_id, b)
    v = {"params": gen_params}
    outs = []
    for m, x, r in (("a", x_a, r_a), ("b", x_b, r_b)):
      if attributes == "real":
        e = gen.apply(v, to_float(x), m, method="encode")
        z, style = e["z"], e["style"]
      else:
        z = l2_normalize(jax.random.normal(r, (b, gen.attr_dim)))
        style = gen.apply(v, z, m, method="style")
      outs.append(gen.apply(v, ident, z, style, m, method="decode"))
    return outs[0], outs[1], ident

  return sample


def generate_pairs(
  sample: Callable,
  gen_params,
  sampler_params,
  images_a: np.ndarray,
  images_b: np.ndarray,
  *,
  num_pairs: int,
  batch_size: int = 64,
  seed: int = 0,
) -> dict[str, np.ndarray]:
  """``num_pairs`` generated pairs as uint8 ``{"a", "b": [N, H, W, C]}`` (+ ``"identity"``).

  Attribute images are drawn row-wise (same row of ``images_a`` and ``images_b``, a real pair)
  uniformly with replacement, seeded.

  Raises:
    ValueError: mismatched modality arrays or ``num_pairs < 1``.
  """
  images_a, images_b = np.asarray(images_a), np.asarray(images_b)
  if images_a.shape != images_b.shape or images_a.ndim != 4:
    raise ValueError(
      f"generate_pairs: images_a {images_a.shape} and images_b {images_b.shape} must be equal "
      "[N, H, W, C] (paired rows)"
    )
  if num_pairs < 1 or batch_size < 1:
    raise ValueError(f"num_pairs={num_pairs} and batch_size={batch_size} must be >= 1")
  rng = np.random.default_rng(seed)
  key = jax.random.PRNGKey(seed)
  out = {"a": [], "b": [], "identity": []}
  for s in range(0, num_pairs, batch_size):
    idx = rng.integers(0, len(images_a), batch_size)
    fa, fb, ident = sample(
      gen_params, sampler_params, images_a[idx], images_b[idx], jax.random.fold_in(key, s)
    )
    n = min(batch_size, num_pairs - s)
    for k, v in (("a", fa), ("b", fb)):
      out[k].append(np.clip(np.rint(np.asarray(v[:n]) * 255.0), 0, 255).astype(np.uint8))
    out["identity"].append(np.asarray(ident[:n]))
  return {k: np.concatenate(v) for k, v in out.items()}


# --------------------------------------------------------------------------- recognition
def recognition_task(
  model: nn.Module,
  *,
  init_params=None,
  reset_head: bool = True,
  head_only: bool = False,
  contrastive_weight: float = 0.0,
  margin: float = 0.5,
  negative_weight: float = 0.1,
  summarize: Callable[[dict[str, Any]], dict[str, float]] | None = None,
) -> Task:
  """HFR fine-tuning: CE on real images (+ ``w · L_ct`` on generated pairs).

  .. math:: \\mathcal{L} = \\mathrm{CE}(\\text{real}) + w\\,\\overline{\\ell_{ct}}(\\text{fake})

  with `vision_jax.hfr.hfr_contrastive` (official ``w = 0.001``).

  Batch: ``{"real": {"image": uint8 [B, H, W, 1], "label": int [B]}}`` plus, when
  ``contrastive_weight > 0``, ``"fake": {"a", "b": uint8 [B', H, W, 1]}``.

  Args:
    model: LightCNN with ``num_classes`` set (``intermediates["embedding"]`` is the feature).
    init_params: params to start from (an identity network or stage I); the head ``fc2`` is
      freshly initialised when ``reset_head`` (other classes than the checkpoint's).
    head_only: stage I: one ``Update("head", params="fc2", optim="optim_head")``; else one
      update of every parameter with ``cfg.optim``.
    contrastive_weight, margin, negative_weight: the contrastive term (0 = real pairs only).
    summarize: host metrics from ``{"embedding": [N, D]}`` (eval rows in source order).

  Raises:
    ValueError: ``init_params`` of another architecture (`check_params_like`).
  """

  def init(rng, batch):
    x = to_float(batch["real"]["image"][:1])
    params = flax.core.unfreeze(model.init(rng, x, train=False)["params"])
    if init_params is not None:
      given = dict(flax.core.unfreeze(init_params))
      if reset_head:
        given.pop("fc2", None)
        expected = {k: v for k, v in params.items() if k != "fc2"}
      else:
        expected = params
      check_params_like(expected, given, what=f"recognition network {type(model).__name__}")
      params = {**params, **given}
    return params, {}, {}

  def loss_fn(params, model_state, extra, batch, rng, step):
    real = batch["real"]
    xs = [to_float(real["image"])]
    n = xs[0].shape[0]
    use_ct = contrastive_weight > 0
    if use_ct:
      xs += [to_float(batch["fake"]["a"]), to_float(batch["fake"]["b"])]
    r_drop, r_perm = jax.random.split(rng)
    logits, inter = model.apply(
      {"params": params}, jnp.concatenate(xs), train=True, rngs={"dropout": r_drop}
    )
    ce = optax.softmax_cross_entropy_with_integer_labels(logits[:n], real["label"])
    loss = jnp.mean(ce)
    acc = jnp.mean((jnp.argmax(logits[:n], -1) == real["label"]).astype(jnp.float32))
    metrics = {"ce": loss, "train_accuracy": acc}
    if use_ct:
      emb = inter["embedding"][n:]
      fa, fb = jnp.split(emb, 2)
      perm = L.random_derangement(r_perm, fa.shape[0])
      ct = jnp.mean(L.hfr_contrastive(fa, fb, perm, margin=margin, negative_weight=negative_weight))
      loss = loss + contrastive_weight * ct
      metrics.update(contrastive=ct, pos_cos=jnp.mean(L.cosine(fa, fb)))
    return loss, {"metrics": metrics}

  def eval_fn(params, model_state, extra, batch):
    _, inter = model.apply({"params": params}, to_float(batch["image"]), train=False)
    return {"embedding": l2_normalize(inter["embedding"])}

  if head_only:
    return Task(
      init=init,
      updates=(Update("head", loss_fn, params="fc2", optim="optim_head"),),
      eval_fn=eval_fn,
      summarize=summarize,
    )
  return Task(init=init, loss_fn=loss_fn, eval_fn=eval_fn, summarize=summarize)


__all__ = [
  "PARAM_INITS",
  "check_params_like",
  "generate_pairs",
  "generator_task",
  "host_param_init",
  "identity_embedding",
  "load_params",
  "make_pair_sampler",
  "param_init",
  "read_msgpack",
  "recognition_task",
  "sample_identities",
  "sampler_task",
  "save_params",
  "to_float",
  "to_gray",
]
