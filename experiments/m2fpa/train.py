"""Runs the M2FPA experiment's stages through the shared train loop and sweep harness: the
recognition net, one frontalization GAN per (method, seed), evaluation per pose bin, figures."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments.dvg_face.train import _stage, stage_config, with_init
from experiments.m2fpa import data as md
from experiments.m2fpa.config import GENERATORS, METHODS
from vision_jax import data as vdata
from vision_jax import frontalization as fr
from vision_jax.data.transforms import image_to_float
from vision_jax.hfr import identity_embedding, load_params, to_float
from vision_jax.metrics.pose_bins import PoseRank1, pooled_rank1, rank1_per_pose, rank1_table
from vision_jax.models import get_model
from vision_jax.train import SweepRun, run_sweep
from vision_jax.train.classification import classification_task
from vision_jax.train.writers import plot_comparison
from vision_jax.utils import save_json

ROWS = ("raw", "baseline", "parsing", "drgan")
NAMES = {
  "raw": "raw probes (no frontalization)",
  "baseline": "G + global D (baseline)",
  "parsing": "G + global D + parsing-guided D (M2FPA)",
  "drgan": "DR-GAN-style G + identity/pose D",
}
GENERATOR_FILE = "generator.msgpack"


def _pose_key(y: float, p: float) -> str:
  return f"r1_y{y:g}_p{p:g}"


def pose_metrics(result: PoseRank1, *, large_yaw: float, small_yaw: float) -> dict[str, float]:
  """Pooled Rank-1 (``|yaw| >= large_yaw``, ``|yaw| <= small_yaw``, all) plus one key per pose."""
  out = {
    "rank1_large_yaw": pooled_rank1(result, lambda y, p: abs(y) >= large_yaw),
    "rank1_small_yaw": pooled_rank1(result, lambda y, p: abs(y) <= small_yaw),
    "rank1_all": pooled_rank1(result, lambda y, p: True),
  }
  for (y, p), r in zip(result.poses, result.rank1):
    out[_pose_key(y, p)] = float(r)
  return out


def result_from_metrics(metrics: dict, poses: np.ndarray) -> PoseRank1:
  """The `PoseRank1` of a run's eval metrics (counts are not stored: 1 where Rank-1 is finite)."""
  r1 = np.asarray([metrics.get(_pose_key(y, p), np.nan) for y, p in poses], np.float64)
  return PoseRank1(np.asarray(poses, np.float64), r1, np.isfinite(r1).astype(np.int64))


def make_batched(fn, batch: int = 256):
  """``apply(params, images) -> np.ndarray``: the jitted ``fn(params, x)`` over fixed-size chunks
  (the last one padded), so that every call reuses one compiled program."""
  jfn = jax.jit(fn)

  def apply(params, images):
    outs = []
    for s in range(0, len(images), batch):
      chunk = images[s : s + batch]
      pad = batch - len(chunk)
      if pad:
        chunk = np.concatenate([chunk, np.repeat(chunk[:1], pad, axis=0)])
      outs.append(np.asarray(jfn(params, chunk))[: batch - pad])
    return np.concatenate(outs)

  return apply


def methods_of(cfg) -> list[str]:
  names = [m for m in str(cfg.methods).split(",") if m]
  bad = [m for m in names if m not in METHODS]
  if bad or not names:
    raise ValueError(
      f"cfg.methods={cfg.methods!r}: unknown or no method(s) {bad}; valid: {','.join(METHODS)}"
    )
  return names


def load_data(cfg, need_parsing: bool) -> dict:
  if cfg.setting == "embedded":
    return md.embedded_data(cfg)
  if cfg.setting == "m2fpa":
    return md.m2fpa_tree_data(cfg, need_parsing=need_parsing)
  if cfg.setting == "multipie":
    return md.multipie_tree_data(cfg, need_parsing=need_parsing)
  raise ValueError(f"cfg.setting={cfg.setting!r}; expected 'embedded', 'm2fpa' or 'multipie'")


def _depth(rc) -> dict:
  """LightCNN-9 with fewer MFM groups (``recog.num_groups``; the full nets take no such field)."""
  g = int(rc.get("num_groups", 4))
  return {} if g == 4 else {"num_groups": g}


def train_recognition(cfg, data: dict, workdir: str, *, progress: bool):
  """``(model, params)`` of the recognition net (trained on ``data["recog"]``, or loaded)."""
  rc, size, k = cfg.recog, int(cfg.data.image_size), int(data["num_train_ids"])
  if rc.checkpoint:
    model = get_model(rc.model, num_classes=None, **_depth(rc))
    params = load_params(rc.checkpoint, model, jnp.zeros((1, size, size, 1)),
                         what=f"recognition net {rc.model} at {size} px", ignore=("fc2",))  # fmt: skip
    return model, params
  model = get_model(rc.model, num_classes=k, dropout_rate=rc.dropout_rate, **_depth(rc))
  task = classification_task(model, num_classes=k, preprocess=lambda x: image_to_float(x, 0.0, 1.0))
  task = with_init(cfg, task)
  stream = vdata.train_dataset(
    vdata.ArraySource(data["recog"]), global_batch_size=rc.batch_size, seed=cfg.seed,
    transform=vdata.random_horizontal_flip,
  )  # fmt: skip
  _, state = _stage(
    stage_config(cfg, rc.num_steps, optim=rc.optim),
    os.path.join(workdir, "recognition"),
    task,
    stream,
    progress=progress,
    return_state=True,
  )
  return model, state.params


def _res(gc) -> dict:
  """The generators' encoder residual blocks when not the default 1 (``gen.res_blocks``) and
  the conv implementation of G and D when not ``"auto"`` (``gen.conv_impl``)."""
  n = int(gc.get("res_blocks", 1))
  return ({} if n == 1 else {"res_blocks": n}) | _impl(gc)


def _impl(gc) -> dict:
  impl = str(gc.get("conv_impl", "auto"))
  return {} if impl == "auto" else {"conv_impl": impl}


def make_models(cfg, method: str, data: dict) -> dict:
  """``{"gen", "global_disc", "parsing_disc", "drgan_disc"}`` of ``method`` (absent D: None)."""
  gc, size = cfg.gen, int(cfg.data.image_size)
  if GENERATORS[method] == "drgan":
    n_poses = len(data["gan_poses"])
    gen = fr.DrGanGenerator(image_size=size, channels=1, width=gc.width, code_dim=gc.code_dim,
                            num_poses=n_poses, target_pose=int(data["frontal_pose"]),
                            noise_dim=int(gc.drgan_noise_dim), **_res(gc))  # fmt: skip
    dd = fr.DrGanDiscriminator(num_identities=int(data["num_train_ids"]), num_poses=n_poses,
                               width=gc.disc_width, **_impl(gc))  # fmt: skip
    return dict(gen=gen, global_disc=None, parsing_disc=None, drgan_disc=dd)
  gen = fr.FrontalGenerator(image_size=size, channels=1, width=gc.width, code_dim=gc.code_dim,
                            **_res(gc))  # fmt: skip
  gd = fr.GlobalDiscriminator(width=gc.disc_width, **_impl(gc))
  pd = (
    fr.ParsingDiscriminator(width=gc.disc_width, n_down=gc.parsing_n_down, **_impl(gc))
    if method == "parsing"
    else None
  )
  return dict(gen=gen, global_disc=gd, parsing_disc=pd, drgan_disc=None)


def save_grid(path: str, rows: list[tuple[str, np.ndarray]], *, scale: int = 3) -> None:
  """PNG: one row per ``(label, images [P, S, S, 1] uint8)`` (probes, frontalizations, ...)."""
  from PIL import Image

  s, gap = rows[0][1].shape[1], 2
  n = max(len(r[1]) for r in rows)
  grid = np.full((len(rows) * (s + gap), n * (s + gap)), 255, np.uint8)
  for i, (_, imgs) in enumerate(rows):
    for j, im in enumerate(imgs):
      grid[i * (s + gap) : i * (s + gap) + s, j * (s + gap) : j * (s + gap) + s] = im[..., 0]
  img = Image.fromarray(grid)
  img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(path)


def plot_heatmaps(path: str, tables: dict[str, tuple]) -> None:
  """One yaw x pitch Rank-1 heatmap per row of ``tables = {label: (yaws, pitches, table)}``."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, len(tables), figsize=(4.6 * len(tables), 2.8), squeeze=False)
  for ax, (label, (yaws, pitches, t)) in zip(axes[0], tables.items()):
    im = ax.imshow(t, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(yaws)), [f"{y:g}" for y in yaws], fontsize=6)
    ax.set_yticks(range(len(pitches)), [f"{p:g}" for p in pitches], fontsize=7)
    ax.set_xlabel("yaw")
    ax.set_ylabel("pitch")
    ax.set_title(label, fontsize=8)
    for (i, j), v in np.ndenumerate(t):
      if np.isfinite(v):
        ax.text(j, i, f"{v:.2f}"[1:] if v < 1 else "1", ha="center", va="center", fontsize=5,
                color="w" if v < 0.5 else "k")  # fmt: skip
  fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="Rank-1")
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)


def run(cfg, workdir: str, *, progress: bool = True) -> dict:
  """The whole experiment; re-running resumes every stage (see the config docstring).

  Raises:
    ValueError / FileNotFoundError: bad methods, data or checkpoints (named).
    Preempted: on SIGTERM / SIGINT (the launcher prints the resume command).
  """
  os.makedirs(workdir, exist_ok=True)
  names = methods_of(cfg)
  data = load_data(cfg, need_parsing="parsing" in names)
  dc = cfg.data
  poses = data["poses"]
  id_model, id_params = train_recognition(cfg, data, workdir, progress=progress)
  probe, gallery = data["probe"], data["gallery"]
  embed = make_batched(
    lambda p, x: identity_embedding(id_model, p, to_float(x)), dc.eval_batch_size
  )
  g_feat = embed(id_params, gallery["image"])

  def summarize_feats(emb, l1=None):
    res = rank1_per_pose(emb, probe["label"], probe["pose"], g_feat, gallery["label"], poses)
    out = pose_metrics(res, large_yaw=dc.large_yaw, small_yaw=dc.small_yaw)
    if l1 is not None:
      out["l1"] = float(np.mean(l1))
    return out

  raw = summarize_feats(embed(id_params, probe["image"]),
                        np.abs(probe["image"] / 255.0 - probe["frontal"] / 255.0).mean(axis=(1, 2, 3)))  # fmt: skip
  gc = cfg.gen
  weights = fr.FrontalizationWeights(
    pixel=gc.w_pixel, identity=gc.w_identity, adv=gc.w_adv, parsing_adv=gc.w_parsing_adv,
    tv=gc.w_tv, sym=gc.w_sym,
  )  # fmt: skip
  eval_src = vdata.ArraySource({"image": probe["image"], "frontal": probe["frontal"]})

  def eval_data():
    return vdata.eval_batches(eval_src, global_batch_size=dc.eval_batch_size)

  def summarize(out):
    return summarize_feats(out["embedding"], out["l1"])

  def train_gan(run_dir, method, seed):
    models = make_models(cfg, method, data)
    gen = models["gen"]
    if gc.checkpoint:  # evaluate a saved generator instead of training
      params = fr.load_generator(gc.checkpoint, gen)
      imgs = make_batched(fr.make_frontalizer(gen), dc.eval_batch_size)(params, probe["image"])
      l1 = np.abs(imgs - probe["frontal"] / 255.0).mean(axis=(1, 2, 3))
      return {"eval": summarize(dict(embedding=embed(id_params, imgs), l1=l1)),
              "generator_checkpoint": gc.checkpoint}  # fmt: skip
    task = fr.frontalization_task(
      id_net=id_model, id_params=id_params, weights=weights, adversarial=gc.adversarial,
      summarize=summarize, **models,
    )  # fmt: skip
    task = with_init(cfg, task)
    path = os.path.join(run_dir, GENERATOR_FILE)

    def finalize(state):
      fr.save_generator(path, gen, state.params["gen"])
      return {"generator_checkpoint": path}

    import dataclasses

    task = dataclasses.replace(task, finalize=finalize)
    stream = vdata.train_dataset(
      vdata.ArraySource(data["gan"]), global_batch_size=gc.batch_size, seed=int(seed)
    )
    c = stage_config(cfg, gc.num_steps, optim=gc.optim, optim_d=gc.optim_d)
    with c.unlocked():
      c.seed, c.method = int(seed), method
    from vision_jax.train import train_and_evaluate

    return train_and_evaluate(c, run_dir, task, stream, eval_data, progress=progress)

  runs = [
    SweepRun(
      key=(m, f"seed{s}"),
      fn=lambda wd, m=m, s=s: train_gan(wd, m, s),
      config=None if not gc.checkpoint else {"checkpoint": gc.checkpoint},
    )  # fmt: skip
    for m in names
    for s in cfg.seeds
  ]
  sweep = run_sweep(workdir, runs, comparison=None)
  curves = {f"{m}/seed{s}": os.path.join(workdir, m, f"seed{s}") for m in names for s in cfg.seeds}
  curves = {k: v for k, v in curves.items() if os.path.exists(os.path.join(v, "metrics.jsonl"))}
  if curves:
    plot_comparison(curves, os.path.join(workdir, "comparison.png"),
                    metrics=("rank1_large_yaw", "rank1_small_yaw", "rank1_all", "l1"))  # fmt: skip

  # aggregate over seeds
  results = {"methods": {"raw": {"mean": raw, "seeds": [raw]}}, "poses": poses.tolist()}
  tables = {NAMES["raw"]: rank1_table(result_from_metrics(raw, poses))}
  for m in names:
    per = [sweep[m][f"seed{s}"]["eval"] for s in cfg.seeds]
    keys = per[0].keys()
    mean = {k: float(np.mean([p[k] for p in per])) for k in keys}
    std = {k: float(np.std([p[k] for p in per])) for k in keys}
    results["methods"][m] = {"mean": mean, "std": std, "seeds": per}
    tables[NAMES[m]] = rank1_table(result_from_metrics(mean, poses))
  plot_heatmaps(os.path.join(workdir, "rank1_heatmap.png"), tables)

  # probes and their frontalizations (seed of the first run): one block of rows per test
  # identity, columns the probe poses at pitch grid.pitch sorted by yaw
  gens = {}
  for m in names:
    gen = make_models(cfg, m, data)["gen"]
    ckpt = sweep[m][f"seed{cfg.seeds[0]}"].get("generator_checkpoint")
    if ckpt and os.path.isfile(ckpt):
      gens[m] = (
        make_batched(fr.make_frontalizer(gen), dc.eval_batch_size),
        fr.load_generator(ckpt, gen),
      )
  rows = []
  for ident in range(min(int(cfg.grid.identities), len(gallery["label"]))):
    sel = np.flatnonzero((probe["label"] == ident) & (probe["pose"][:, 1] == float(cfg.grid.pitch)))
    sel = sel[np.argsort(probe["pose"][sel, 0])]
    rows.append(("probe", probe["image"][sel]))
    rows += [(m, md._u8(fn(params, probe["image"][sel]))) for m, (fn, params) in gens.items()]
    rows.append(("ground truth", probe["frontal"][sel]))
  save_grid(os.path.join(workdir, "frontalization_grid.png"), rows, scale=int(cfg.grid.scale))
  results.update(
    num_train_ids=int(data["num_train_ids"]),
    num_test_ids=int(len(gallery["label"])),
    num_probes=int(len(probe["label"])),
    seeds=list(cfg.seeds),
    large_yaw=float(dc.large_yaw),
    grid_rows=["probe", *gens, "ground truth"],
  )
  save_json(os.path.join(workdir, "results.json"), results)
  return results


def format_table(results: dict) -> str:
  """Markdown: pooled Rank-1 (mean ± std over seeds) per method, then per-pose tables."""
  ly = results.get("large_yaw", 60.0)
  lines = [
    f"| method | Rank-1 abs(yaw)>={ly:g} | Rank-1 abs(yaw)<=30 | Rank-1 all | L1 to frontal |",
    "|---|---|---|---|---|",
  ]
  for row in [r for r in ROWS if r in results["methods"]]:
    m = results["methods"][row]
    sd = m.get("std", {})
    cell = lambda k, m=m, sd=sd: f"{m['mean'][k]:.3f}" + (f" ± {sd[k]:.3f}" if k in sd else "")  # noqa: E731
    lines.append(f"| {NAMES[row]} | {cell('rank1_large_yaw')} | {cell('rank1_small_yaw')} | "
                 f"{cell('rank1_all')} | {cell('l1')} |")  # fmt: skip
  poses = np.asarray(results["poses"])
  for row in [r for r in ROWS if r in results["methods"]]:
    yaws, pitches, t = rank1_table(result_from_metrics(results["methods"][row]["mean"], poses))
    lines += ["", f"Rank-1 per pose, {NAMES[row]} (mean over seeds):", "",
              "| pitch \\ yaw | " + " | ".join(f"{y:g}" for y in yaws) + " |",
              "|---|" + "---|" * len(yaws)]  # fmt: skip
    for p, r in zip(pitches, t):
      lines.append(
        f"| {p:g} | " + " | ".join("" if not np.isfinite(v) else f"{v:.2f}" for v in r) + " |"
      )
  return "\n".join(lines)
