"""Trains ProtoNet and CRN through the shared loop and evaluates both on the same test episodes."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from experiments.crn.data import load_fewshot
from vision_jax import fewshot as fs
from vision_jax.models import backbone_from_config
from vision_jax.train import SweepRun, run_sweep, train_and_evaluate
from vision_jax.utils import save_json
from vision_jax.utils.plotting import pyplot, save_figure

METHODS = ("protonet", "crn")


def _crn_weights(cfg) -> fs.CRNWeights:
  c = cfg.crn
  return fs.CRNWeights(
    base_weight=float(c.base_weight),
    recon_weight=float(c.recon_weight),
    mix=float(c.mix),
    memory_momentum=float(c.memory_momentum),
    hidden=int(c.hidden),
    scale_init=float(c.scale_init),
  )


def test_episodes(cfg, groups, split="novel", num=None, shots=None):
  """The fixed evaluation episodes (same for every method): ``{shots: episode_arrays}``."""
  e = cfg.eval
  out = {}
  for k in shots or tuple(e.shots):
    sampler = fs.EpisodeSampler(
      groups[split],
      num_ways=int(e.ways),
      num_shots=int(k),
      num_queries=int(e.queries),
      seed=int(e.seed) + int(k),
      split=split,
    )
    out[int(k)] = fs.episode_arrays(sampler, int(num or e.episodes))
  return out


def run_method(cfg, data, method: str, run_workdir: str, *, progress: bool = True) -> dict:
  """Trains one method and evaluates it; returns the loop's summary plus ``"fewshot"`` metrics.

  Also writes ``episodes.npz`` (per-episode correctness and prototypes) in ``run_workdir``.
  """
  groups = fs.class_splits(data.labels, data.splits)
  ep = cfg.episode
  sampler = fs.EpisodeSampler(
    groups["base"],
    num_ways=int(ep.ways),
    num_shots=int(ep.shots),
    num_queries=int(ep.queries),
    seed=int(cfg.seed),
    split="base",
  )
  train_data = fs.EpisodeBatches(data.images, sampler, class_order=data.splits["base"])
  backbone = backbone_from_config(cfg.model)
  crn = _crn_weights(cfg) if method == "crn" else None
  num_base = len(data.splits["base"])
  task = fs.fewshot_task(
    backbone,
    num_ways=int(ep.ways),
    metric=cfg.protonet.metric,
    scale=float(cfg.protonet.scale),
    crn=crn,
    num_base_classes=num_base,
  )

  def finalize(state):
    """Few-shot evaluation of the final state (run by the loop before it writes summary.json,
    so a finished run always carries its ``"fewshot"`` metrics)."""
    params, model_state = state.params, state.model_state

    # One eval-mode embedding pass over the novel and val samples.
    splits = ["novel"] + (["val"] if int(cfg.eval.val_episodes) > 0 else [])
    idx = np.concatenate([groups[sp][c] for sp in splits for c in data.splits[sp]])
    emb = fs.embed_images(backbone, params, model_state, data.images[idx])
    pos = np.full(len(data.labels), -1, np.int64)
    pos[idx] = np.arange(len(idx))
    proto_fn = None
    if crn is not None:
      proto_fn = fs.crn_proto_fn(
        crn, params, num_base_classes=num_base, num_ways=int(cfg.eval.ways)
      )

    def evaluate(episodes, fn=None):
      fn = fn or proto_fn
      out = {}
      for k, eps in episodes.items():
        local = dict(eps, support=pos[eps["support"]], query=pos[eps["query"]])
        out[k] = fs.evaluate_episodes(
          emb,
          local,
          num_ways=int(cfg.eval.ways),
          metric=cfg.protonet.metric,
          scale=float(cfg.protonet.scale),
          proto_fn=fn,
        )
        out[k]["classes"] = eps["classes"]
      return out

    metrics, arrays = {}, {}
    for k, r in evaluate(test_episodes(cfg, groups)).items():
      shift = fs.prototype_shift(r["prototypes"], r["classes"])
      metrics[f"{k}shot_acc"], metrics[f"{k}shot_ci95"] = r["accuracy"], r["ci95"]
      metrics[f"{k}shot_shift_ratio"] = float(np.mean(shift["ratio"]))
      arrays[f"correct_{k}shot"] = r["correct"]
      arrays[f"shift_ratio_{k}shot"] = shift["ratio"]
      arrays[f"shift_classes_{k}shot"] = shift["classes"]
    # Diagnostic: the CRN-trained embedding with other test-time mixes (0 = support mean only).
    if crn is not None:
      for mix in cfg.eval.crn_test_mix:
        mix_fn = fs.crn_proto_fn(
          dataclasses.replace(crn, mix=float(mix)),
          params,
          num_base_classes=num_base,
          num_ways=int(cfg.eval.ways),
        )
        for k, r in evaluate(test_episodes(cfg, groups), mix_fn).items():
          metrics[f"{k}shot_acc_test_mix{float(mix):g}"] = r["accuracy"]
          shift = fs.prototype_shift(r["prototypes"], r["classes"])
          metrics[f"{k}shot_shift_ratio_test_mix{float(mix):g}"] = float(np.mean(shift["ratio"]))
    if "val" in splits:
      val = evaluate(test_episodes(cfg, groups, "val", int(cfg.eval.val_episodes), (1,)))[1]
      metrics["val_1shot_acc"] = val["accuracy"]
    np.savez(os.path.join(run_workdir, "episodes.npz"), **arrays)
    return {"fewshot": metrics}

  run_cfg = cfg.copy_and_resolve_references()
  with run_cfg.unlocked():
    run_cfg.method = method
  task = dataclasses.replace(task, finalize=finalize)
  return train_and_evaluate(run_cfg, run_workdir, task, train_data, progress=progress)


def run(cfg, workdir, *, progress=True):
  """Runs every method of ``cfg.methods``; writes results.json, comparison.json and the plot."""
  methods = [m for m in cfg.methods.split(",") if m]
  bad = [m for m in methods if m not in METHODS]
  if bad:
    raise ValueError(f"config.methods: unknown method(s) {bad}; valid: {', '.join(METHODS)}")
  data = load_fewshot(cfg)
  print(
    f"crn: {cfg.data.name}: {len(data.labels)} images, "
    + " / ".join(f"{len(v)} {k}" for k, v in data.splits.items())
    + f" classes, {data.images.shape[1]}x{data.images.shape[2]}x{data.images.shape[3]}"
  )
  setting = cfg.data.name
  runs = [
    ((setting, m), lambda wd, m=m: run_method(cfg, data, m, wd, progress=progress)) for m in methods
  ]
  results = run_sweep(workdir, [SweepRun(key=key, fn=fn) for key, fn in runs])
  out = {
    "setting": setting,
    "methods": results[setting],
    "shots": [int(k) for k in cfg.eval.shots],
    "ways": int(cfg.eval.ways),
  }
  if "protonet" in methods and "crn" in methods:
    out["paired"] = paired(workdir, setting, out["shots"])
    plot_prototype_variance(workdir, setting, out["shots"], out["ways"])
  save_json(os.path.join(workdir, "comparison.json"), out)
  return out


def _npz(workdir, setting, method):
  return np.load(os.path.join(workdir, setting, method, "episodes.npz"))


def paired(workdir, setting, shots):
  """CRN - ProtoNet on the same episodes: accuracy and shift ratio differences with 95 % CIs."""
  a, b = _npz(workdir, setting, "crn"), _npz(workdir, setting, "protonet")
  out = {}
  for k in shots:
    d, ci = fs.paired_difference(a[f"correct_{k}shot"], b[f"correct_{k}shot"])
    ra, rb = a[f"shift_ratio_{k}shot"], b[f"shift_ratio_{k}shot"]
    out[f"{k}shot"] = {
      "acc_diff": d,
      "acc_diff_ci95": ci,
      "shift_ratio_crn": float(ra.mean()),
      "shift_ratio_protonet": float(rb.mean()),
      "classes_with_lower_shift": int(np.sum(ra < rb)),
      "num_classes": int(len(ra)),
    }
  return out


def format_table(result) -> str:
  if result.get("preempted"):
    return "preempted"
  shots, ways = result["shots"], result.get("ways", 5)
  head = "| method | " + " | ".join(
    f"{ways}-way {k}-shot acc ± 95% CI | {k}-shot shift ratio" for k in shots
  )
  lines = [head + " |", "|---|" + "---|---|" * len(shots)]
  for m, s in result["methods"].items():
    f = s["fewshot"]
    cells = [
      f"{100 * f[f'{k}shot_acc']:.2f} ± {100 * f[f'{k}shot_ci95']:.2f} | "
      f"{f[f'{k}shot_shift_ratio']:.4f}"
      for k in shots
    ]
    lines.append(f"| {m} | " + " | ".join(cells) + " |")
  if "paired" in result:
    cells = []
    for k in shots:
      p = result["paired"][f"{k}shot"]
      cells.append(
        f"{100 * p['acc_diff']:+.2f} ± {100 * p['acc_diff_ci95']:.2f} | "
        f"lower for {p['classes_with_lower_shift']}/{p['num_classes']} classes"
      )
    lines.append("| CRN − ProtoNet (paired) | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot_prototype_variance(workdir, setting, shots, ways=5):
  """Scatter of per-novel-class prototype shift ratio, ProtoNet (x) vs CRN (y), per shot."""
  plt = pyplot()

  a, b = _npz(workdir, setting, "crn"), _npz(workdir, setting, "protonet")
  fig, axes = plt.subplots(1, len(shots), figsize=(4.6 * len(shots), 4.2), squeeze=False)
  for ax, k in zip(axes[0], shots):
    x, y = b[f"shift_ratio_{k}shot"], a[f"shift_ratio_{k}shot"]
    lim = (0.0, 1.05 * float(max(x.max(), y.max())))
    ax.plot(lim, lim, color="0.6", lw=1, ls="--")
    ax.scatter(x, y, s=18)
    ax.set_xlim(lim)
    ax.set_ylim(lim)
    ax.set_xlabel("ProtoNet prototype shift ratio")
    ax.set_ylabel("CRN prototype shift ratio")
    ax.set_title(
      f"{setting}: novel classes, {ways}-way {k}-shot\n(below diagonal = CRN more stable)"
    )
  return save_figure(fig, os.path.join(workdir, "prototype_variance.png"))
