"""Runs the DVG-Face stages (identity network, sampler, generator, sampling, recognition) through
the shared train loop; every stage is one resumable ``train_and_evaluate`` run in its own workdir.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.dvg_face import data as dd
from vision_jax import data as vdata
from vision_jax import hfr
from vision_jax.data.transforms import image_to_float
from vision_jax.metrics import hfr_protocol_metrics
from vision_jax.models import get_model
from vision_jax.train import SweepRun, run_sweep, train_and_evaluate
from vision_jax.train.classification import classification_task
from vision_jax.train.preemption import Preempted
from vision_jax.utils import save_json

FARS = (1e-2, 1e-3, 1e-4)
ROWS = ("pretrained", "real", "generated", "generated_strong")


def stage_config(cfg, num_steps: int, **sections) -> ml_collections.ConfigDict:
  """The trainer's config for one stage: seed, ``train`` (+ ``num_steps``), mesh, optimisers."""
  c = ml_collections.ConfigDict()
  c.seed = cfg.seed
  c.train = ml_collections.ConfigDict(dict(cfg.train.to_dict(), num_steps=int(num_steps)))
  c.mesh = cfg.mesh
  for k, v in sections.items():
    c[k] = v
  return c


def with_init(cfg, task):
  """``task`` with the parameter initialisation of ``cfg.param_init`` (`hfr.param_init`)."""
  return hfr.param_init(task, str(cfg.get("param_init", "flax")), int(cfg.seed))


def _stage(*args, **kwargs):
  """``train_and_evaluate`` that raises `Preempted` (the launcher prints the resume command)
  instead of letting the next stage start on a stopped one."""
  out = train_and_evaluate(*args, **kwargs)
  summary = out[0] if isinstance(out, tuple) else out
  if summary.get("preempted"):
    raise Preempted(summary.get("step"), args[1] if len(args) > 1 else None)
  return out


class Zip:
  """``zip[t] = {name: stream[t]}`` over several ``stream[t]`` sources (resumable)."""

  def __init__(self, **streams):
    self.streams = streams

  def __getitem__(self, t):
    return {k: s[t] for k, s in self.streams.items()}


def embedded_data(cfg) -> dict:
  d = cfg.data
  out = dd.heterogeneous_pseudo_identities(
    image_size=d.image_size,
    modality=d.modality,
    train_fraction=d.train_fraction,
    train_views=d.train_views,
    test_photos=d.test_photos,
    test_probes=d.test_probes,
    max_identities=d.max_identities,
    seed=cfg.seed,
  )
  out["folds"] = dd.eval_folds(
    out["test"]["label"],
    out["test"]["modality"],
    num_folds=d.num_folds,
    probe_fraction=d.probe_fraction,
    seed=cfg.seed,
  )
  return out


def casia_fold_data(cfg, fold: int) -> dict:
  """One CASIA NIR-VIS 2.0 (or CUFSF-style) fold from ``vj_hfr`` as the pipeline's data dict."""
  p, size = cfg.paper, int(cfg.data.image_size)
  if not p.root:
    raise ValueError("paper preset: set --config.paper.root=DIR (CASIA NIR-VIS 2.0 root)")

  def arrays(split):
    src = vdata.load(f"vj_hfr/{p.protocol}", f"{split}_{fold}", manual_dir=p.root)
    imgs, labs, mods = [], [], []
    for i in range(len(src)):
      ex = src[i]
      imgs.append(vdata.resize_image(ex["image"], size, channels=1))
      labs.append(int(ex["label"]))
      mods.append(int(ex["modality"]))
    return np.stack(imgs), np.asarray(labs), np.asarray(mods, np.int32)

  xt, yt, mt = arrays("train")
  classes, yt = np.unique(yt, return_inverse=True)
  xg, yg, mg = arrays("gallery")
  xp, yp, mp = arrays("probe")
  test = {
    "image": np.concatenate([xp, xg]),
    "label": np.concatenate([yp, yg]).astype(np.int32),
    "modality": np.concatenate([mp, mg]),
  }
  folds = [(np.arange(len(xp)), len(xp) + np.arange(len(xg)))]
  train = {"image": xt, "label": yt.astype(np.int32), "modality": mt}
  return {"train": train, "test": test, "num_train_ids": len(classes), "folds": folds}


def _subset(arrs: dict, rows) -> dict:
  return {k: v[rows] for k, v in arrs.items()}


def _embed_all(id_model, params, images, batch=256):
  fn = jax.jit(lambda p, x: hfr.identity_embedding(id_model, p, hfr.to_float(x)))
  return np.concatenate(
    [np.asarray(fn(params, images[s : s + batch])) for s in range(0, len(images), batch)]
  )


def save_pair_grid(path: str, pairs: dict, n: int, *, per_row: int = 6, scale: int = 3) -> None:
  """PNG grid of ``n`` generated pairs: each cell is ``[a | b]`` (one sampled identity)."""
  from PIL import Image

  a, b = pairs["a"][:n, ..., 0], pairs["b"][:n, ..., 0]
  s = a.shape[1]
  rows = -(-n // per_row)
  gap = 4
  grid = np.full((rows * (s + gap), per_row * (2 * s + gap)), 255, np.uint8)
  for i in range(n):
    r, c = divmod(i, per_row)
    y, x = r * (s + gap), c * (2 * s + gap)
    grid[y : y + s, x : x + s] = a[i]
    grid[y : y + s, x + s : x + 2 * s] = b[i]
  img = Image.fromarray(grid)
  img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(path)


def pipeline(cfg, data: dict, workdir: str, *, progress: bool = True) -> dict:
  """All stages on one train/test split; returns ``{"methods": {row: metrics}, ...}``."""
  os.makedirs(workdir, exist_ok=True)
  size, k = int(cfg.data.image_size), int(data["num_train_ids"])
  train, test, folds = data["train"], data["test"], data["folds"]
  if train["image"].shape[1:3] != (size, size) or test["image"].shape[1:3] != (size, size):
    raise ValueError(
      f"images are {train['image'].shape[1:3]} (train) / {test['image'].shape[1:3]} (test); "
      f"cfg.data.image_size={size}"
    )
  mc = cfg.model
  photos = _subset(train, train["modality"] == 1)
  # LightCNN-9 with fewer MFM groups (smoke); the full nets take no such field
  depth = {} if int(mc.get("num_groups", 4)) == 4 else {"num_groups": int(mc.num_groups)}

  # 1. identity network (frozen in the generator stage; initialises recognition)
  id_model = get_model(
    mc.name, num_classes=k, dropout_rate=mc.dropout_rate, conv_impl=mc.conv_impl, **depth
  )
  if cfg.idnet.checkpoint:
    id_model = get_model(mc.name, num_classes=None, conv_impl=mc.conv_impl, **depth)
    id_params = hfr.load_params(
      cfg.idnet.checkpoint,
      id_model,
      jnp.zeros((1, size, size, 1)),
      what=f"identity network {mc.name} at {size} px",
      ignore=("fc2",),
    )
  else:
    task = with_init(
      cfg,
      classification_task(
        id_model, num_classes=k, preprocess=lambda x: image_to_float(x, 0.0, 1.0)
      ),
    )
    src = vdata.ArraySource({"image": photos["image"], "label": photos["label"]})
    stream = vdata.train_dataset(src, global_batch_size=cfg.idnet.batch_size, seed=cfg.seed)
    _, state = _stage(
      stage_config(cfg, cfg.idnet.num_steps, optim=cfg.idnet.optim),
      os.path.join(workdir, "idnet"),
      task,
      stream,
      progress=progress,
      return_state=True,
    )
    id_params = state.params

  # 2. identity sampler on the identity features of real photos
  sc = cfg.sampler
  sampler = hfr.IdentitySampler(feature_dim=256, noise_dim=sc.noise_dim, hidden=tuple(sc.hidden))
  feats = _embed_all(id_model, id_params, photos["image"])
  stream = vdata.train_dataset(
    vdata.ArraySource({"feature": feats}), global_batch_size=sc.batch_size, seed=cfg.seed
  )
  s_summary, state = _stage(
    stage_config(cfg, sc.num_steps, optim=sc.optim),
    os.path.join(workdir, "sampler"),
    with_init(cfg, hfr.sampler_task(sampler, kl_weight=sc.kl_weight)),
    stream,
    progress=progress,
    return_state=True,
  )
  sampler_params = state.params

  # 3. dual generator (one multi-update Task)
  gc = cfg.gen
  gen = hfr.DualGenerator(
    image_size=size,
    channels=1,
    attr_dim=256,
    width=gc.width,
    style_hidden=tuple(gc.style_hidden),
    variational=gc.variational,
    conv_impl=mc.conv_impl,
    mid_res_blocks=int(gc.mid_res_blocks),
    last_res_blocks=int(gc.last_res_blocks),
  )
  weights = hfr.GeneratorWeights(
    ort=gc.w_ort, pix=gc.w_pix, swap=gc.w_swap, fake=gc.w_fake, ip=gc.w_ip, pair=gc.w_pair,
    kl=gc.w_kl if gc.variational else 0.0, adv=gc.w_adv if gc.adversarial else 0.0,
  )  # fmt: skip
  disc = (
    hfr.PairDiscriminator(width=gc.disc_width, conv_impl=mc.conv_impl) if gc.adversarial else None
  )
  g_task = hfr.generator_task(
    gen,
    id_model,
    sampler,
    id_params=id_params,
    sampler_params=sampler_params,
    weights=weights,
    disc=disc,
  )
  g_task = with_init(cfg, g_task)
  sections = {"optim_g": gc.optim_g}
  if disc is not None:
    sections["optim_d"] = gc.optim_d
  g_summary, state = _stage(
    stage_config(cfg, gc.num_steps, **sections),
    os.path.join(workdir, "generator"),
    g_task,
    dd.PairStream(train, gc.batch_size, seed=cfg.seed),
    progress=progress,
    return_state=True,
  )
  gen_params = state.params["gen"]

  # 4. paired sampling: identity from noise, attributes from real pairs
  pc = cfg.sample
  pool = dd.PairStream(train, max(pc.batch_size, 256), seed=cfg.seed + 7)[0]
  pairs = hfr.generate_pairs(
    hfr.make_pair_sampler(gen, sampler, attributes=pc.attributes),
    gen_params,
    sampler_params,
    pool["a"],
    pool["b"],
    num_pairs=pc.num_pairs,
    batch_size=pc.batch_size,
    seed=cfg.seed,
  )
  save_pair_grid(os.path.join(workdir, "generated_pairs.png"), pairs, pc.grid_pairs)
  # identity consistency of the generated pairs under the frozen identity network
  fa = _embed_all(id_model, id_params, pairs["a"][:512])
  fb = _embed_all(id_model, id_params, pairs["b"][:512])
  pair_cos = float(np.mean(np.sum(fa * fb, -1)))
  perm = np.roll(np.arange(len(fa)), 1)
  cross_cos = float(np.mean(np.sum(fa * fb[perm], -1)))

  # 5. recognition: stage I (fc2 only, shared) then stage II per method
  rc = cfg.recog
  rec_model = get_model(
    mc.name, num_classes=k, dropout_rate=mc.dropout_rate, conv_impl=mc.conv_impl, **depth
  )
  real_src = vdata.ArraySource({"image": train["image"], "label": train["label"]})
  real = vdata.train_dataset(real_src, global_batch_size=rc.batch_size, seed=cfg.seed)
  fake = vdata.train_dataset(
    vdata.ArraySource({"a": pairs["a"], "b": pairs["b"]}),
    global_batch_size=rc.fake_batch_size,
    seed=cfg.seed + 1,
  )
  test_src = vdata.ArraySource({"image": test["image"]})

  def eval_data():
    return vdata.eval_batches(test_src, global_batch_size=cfg.data.eval_batch_size)

  def summarize(out):
    return hfr_protocol_metrics(out["embedding"], test["label"], folds, fars=FARS)

  init = {k2: v for k2, v in id_params.items() if k2 != "fc2"}
  s1, state = _stage(
    stage_config(cfg, rc.stage1_steps, optim_head=rc.optim_head),
    os.path.join(workdir, "recog_stage1"),
    with_init(
      cfg,
      hfr.recognition_task(
        rec_model, init_params=init, reset_head=True, head_only=True, summarize=summarize
      ),
    ),
    Zip(real=real),
    eval_data,
    progress=progress,
    return_state=True,
  )
  stage1_params = state.params
  weight = {
    "real": 0.0,
    "generated": rc.contrastive_weight,
    "generated_strong": rc.strong_contrastive_weight,
  }
  names = [m for m in cfg.methods.split(",") if m]
  bad = [m for m in names if m not in weight]
  if bad:
    raise ValueError(f"cfg.methods: unknown method(s) {bad}; valid: {', '.join(weight)}")

  def stage2(run_workdir, method):
    gen_on = weight[method] > 0
    task = hfr.recognition_task(
      rec_model,
      init_params=stage1_params,
      reset_head=False,
      contrastive_weight=weight[method],
      margin=rc.margin,
      negative_weight=rc.negative_weight,
      summarize=summarize,
    )
    task = with_init(cfg, task)
    return train_and_evaluate(
      stage_config(cfg, rc.stage2_steps, optim=rc.optim),
      run_workdir,
      task,
      Zip(real=real, fake=fake) if gen_on else Zip(real=real),
      eval_data,
      progress=progress,
    )

  sweep = run_sweep(
    workdir,
    [
      SweepRun(key=("recog", m), fn=lambda wd, m=m: stage2(wd, m), subdir=f"recog_{m}")
      for m in names
    ],
    results_name="recognition_results.json",
  )
  methods = {"pretrained": s1["eval"]}
  methods.update({m: sweep["recog"][m]["eval"] for m in names})
  return {
    "methods": methods,
    "generator": g_summary.get("final_train", {}),
    "sampler": s_summary.get("final_train", {}),
    "generated_pair_cos": pair_cos,
    "generated_cross_cos": cross_cos,
    "num_train_ids": k,
    "num_test_ids": int(len(np.unique(test["label"]))),
  }


def run(cfg, workdir: str, *, progress: bool = True) -> dict:
  """The whole experiment; re-running resumes every stage from its checkpoint.

  Raises:
    Preempted: on SIGTERM / SIGINT (the running stage saved a checkpoint; the launcher prints
      the resume command).
  """
  if cfg.setting == "embedded":
    results = pipeline(cfg, embedded_data(cfg), workdir, progress=progress)
  elif cfg.setting == "casia":
    per = [
      pipeline(
        cfg, casia_fold_data(cfg, int(f)), os.path.join(workdir, f"fold_{f}"), progress=progress
      )
      for f in cfg.paper.folds
    ]
    results = {"methods": {}, "folds": per}
    for row in per[0]["methods"]:
      keys = [k for k in per[0]["methods"][row] if not k.endswith("_std") and k != "num_folds"]
      agg = {}
      for key in keys:
        v = np.asarray([p["methods"][row][key] for p in per])
        agg[key], agg[f"{key}_std"] = float(v.mean()), float(v.std())
      results["methods"][row] = agg
  else:
    raise ValueError(f"cfg.setting={cfg.setting!r}; expected 'embedded' or 'casia'")
  results["setting"] = cfg.setting
  save_json(os.path.join(workdir, "results.json"), results)
  return results


def format_table(results: dict) -> str:
  """Markdown table: Rank-1 and VR@FAR (mean ± std over folds, %) per method."""
  cols = ["rank1"] + [f"vr@far={f:g}" for f in FARS]
  names = {
    "pretrained": "identity net, photo only (stage I)",
    "real": "HFR baseline: real pairs",
    "generated": "+ generated pairs (DVG-Face, w=0.001)",
    "generated_strong": "+ generated pairs (w=0.1)",
  }
  lines = [
    "| method | Rank-1 | VR@FAR=1e-2 | VR@FAR=1e-3 | VR@FAR=1e-4 |",
    "|---|---|---|---|---|",
  ]
  order = [r for r in ROWS if r in results["methods"]]
  order += [r for r in results["methods"] if r not in order]
  for row in order:
    m = results["methods"][row]
    cells = [f"{100 * m[c]:.1f} ± {100 * m[c + '_std']:.1f}" for c in cols]
    lines.append(f"| {names.get(row, row)} | " + " | ".join(cells) + " |")
  if "generated_pair_cos" in results:
    lines.append(
      f"\nGenerated pairs under the frozen identity net: cos(a, b) same sample "
      f"{results['generated_pair_cos']:.3f}, different samples {results['generated_cross_cos']:.3f}."
    )
  return "\n".join(lines)
