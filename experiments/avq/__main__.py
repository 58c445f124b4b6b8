"""``python -m experiments.avq --preset=default --workdir=DIR [--config.k=v ...]``.

Recall1@10 / Recall10@10 / relative top-1 inner-product error vs bits per vector for
reconstruction-loss PQ (T=0) and anisotropic PQ (T>0). See ``experiments/avq/config.py``.
"""

from __future__ import annotations

import os
import time

import numpy as np

from vision_jax import search
from vision_jax.train import SweepRun, run_sweep
from vision_jax.utils import ConfigError, launch, package_versions, save_json
from vision_jax.utils.plotting import pyplot, save_figure

_ADC_MAX_POINTS = 200_000  # above this, score against decoded vectors in chunks (same numbers)


def load_data(cfg):
  """Returns ``(database, queries, true_top_k_ids, true_top_k_scores, name)``."""
  d = cfg.data
  if d.source == "word2vec":
    x, _ = search.load_word2vec_sample()
    db, q = search.split_queries(x, d.num_queries, seed=cfg.seed)
    name = f"word2vec (wefe) {db.shape[0]} x {db.shape[1]}, {len(q)} held-out queries"
  elif d.source == "synthetic":
    x = search.synthetic_clustered(d.synthetic_n, d.synthetic_dim, num_clusters=20, seed=cfg.seed)
    db, q = search.split_queries(x, d.num_queries, seed=cfg.seed)
    name = f"synthetic clustered power-law norms {db.shape[0]} x {db.shape[1]}"
  elif d.source == "hdf5":
    if not d.hdf5_path:
      raise ConfigError(
        "data.source='hdf5' needs --config.data.hdf5_path=/path/to/glove-100-angular.hdf5"
      )
    f = search.load_ann_benchmarks_hdf5(d.hdf5_path)
    db, q = f["train"], f["test"][: d.num_queries]
    name = f"{os.path.basename(d.hdf5_path)} {db.shape[0]} x {db.shape[1]}, {len(q)} queries"
  else:
    raise ConfigError(f"data.source={d.source!r} must be word2vec, synthetic or hdf5")
  if d.normalize_database:
    db = np.asarray(search.normalize_rows(db))
  if d.normalize_queries:
    q = np.asarray(search.normalize_rows(q))
  gt, gs = search.exact_mips(q, db, cfg.k)
  return db.astype(np.float32), q.astype(np.float32), gt, gs, name


def _eta_kwargs(cfg, t: float, dim: int) -> dict:
  if t == 0.0:
    return {}
  if cfg.threshold_mode == "absolute":
    return {"threshold": float(t)}
  if cfg.threshold_mode == "cosine":
    return {"eta": float(search.anisotropic_eta(t, 1.0, dim))}
  raise ConfigError(f"threshold_mode={cfg.threshold_mode!r} must be 'cosine' or 'absolute'")


def evaluate(cfg, db, q, gt, gs, t: float, dpb: int, *, encode_only: bool = False) -> dict:
  t0 = time.perf_counter()
  idx = search.AVQIndex.build(
    db,
    dims_per_block=int(dpb),
    num_centers=cfg.num_centers,
    training_iterations=cfg.training_iterations,
    training_sample_size=cfg.training_sample_size,
    codebook_update="none" if encode_only else cfg.codebook_update,
    codebook_update_rounds=0 if encode_only else cfg.codebook_update_rounds,
    seed=cfg.seed,
    **_eta_kwargs(cfg, t, db.shape[1]),
  )
  build_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  if len(db) <= _ADC_MAX_POINTS:
    ids, _ = idx.search(q, cfg.k)
    ids = np.asarray(ids)
  else:
    ids, _ = search.exact_mips(q, np.asarray(idx.decoded()), cfg.k)
  search_s = time.perf_counter() - t0
  dec_top1 = np.asarray(idx.decoded()[np.asarray(gt[:, 0])])
  est = np.sum(q * dec_top1, axis=1)
  rel = np.abs(est - gs[:, 0]) / np.maximum(np.abs(gs[:, 0]), 1e-12)
  return dict(
    threshold=float(t),
    encode_only=bool(encode_only),
    eta=idx.info["mean_eta"],
    dims_per_block=int(dpb),
    bits=idx.bits_per_vector,
    recall1_at10=search.recall_at(ids, gt, n_true=1, k=cfg.k),
    recall10_at10=search.recall_at(ids, gt, n_true=cfg.k, k=cfg.k),
    rel_err_top1=float(np.mean(rel)),
    build_s=build_s,
    search_s=search_s,
  )


def _label(r) -> str:
  if r["threshold"] == 0.0:
    return "T=0 (reconstruction)"
  return f"T={r['threshold']:g}" + (" encode-only" if r["encode_only"] else "")


def plot(rows, path: str, title: str):
  plt = pyplot()

  fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
  labels = list(dict.fromkeys(_label(r) for r in rows))
  for lab in labels:
    rs = sorted((r for r in rows if _label(r) == lab), key=lambda r: r["bits"])
    bits = [r["bits"] for r in rs]
    style = "--" if "encode-only" in lab else ("k-" if lab.startswith("T=0 ") else "-")
    for ax, key in zip(axes, ("recall1_at10", "recall10_at10", "rel_err_top1")):
      ax.plot(bits, [r[key] for r in rs], style, marker="o", label=lab)
  for ax, name in zip(axes, ("Recall1@10", "Recall10@10", "relative error of top-1 inner product")):
    ax.set_xlabel("bits per vector")
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
  axes[2].set_yscale("log")
  axes[0].legend(fontsize=8)
  fig.suptitle(title, fontsize=10)
  save_figure(fig, path)


def job_key(t: float, dpb: int, encode_only: bool) -> tuple[str, str]:
  """Sweep key (and run directory) of one (threshold, dims_per_block, encode_only) build."""
  return (f"T{float(t):g}" + ("_encode_only" if encode_only else ""), f"dpb{int(dpb)}")


def run(cfg, workdir: str) -> dict:
  """Builds and evaluates one index per (threshold, dims_per_block) through
  :func:`vision_jax.train.run_sweep` (finished builds are skipped on re-run; a stop request lets
  the current build finish and stops before the next), then writes ``summary.json`` (rows and
  verdicts) and ``recall_vs_bits.png``."""
  os.makedirs(workdir, exist_ok=True)
  save_json(os.path.join(workdir, "config.json"), cfg.to_dict())
  t_start = time.perf_counter()
  loaded = []

  def data():  # loaded once, when the first unfinished build starts
    if not loaded:
      loaded.append(load_data(cfg))
      print(f"data: {loaded[0][-1]}; threshold_mode={cfg.threshold_mode}", flush=True)
    return loaded[0]

  def build(wd, t, dpb, eo):
    db, q, gt, gs, name = data()
    return dict(evaluate(cfg, db, q, gt, gs, t, dpb, encode_only=eo), data=name)

  def show(key, r):
    print(
      f"  {_label(r):<24} bits={r['bits']:>4}  R1@10={r['recall1_at10']:.3f}  "
      f"R10@10={r['recall10_at10']:.3f}  rel_err={r['rel_err_top1']:.4f}  "
      f"build={r['build_s']:.1f}s",
      flush=True,
    )

  jobs = [(t, dpb, False) for t in cfg.thresholds for dpb in cfg.dims_per_block]
  if cfg.encode_only_threshold > 0:
    jobs += [(cfg.encode_only_threshold, dpb, True) for dpb in cfg.dims_per_block]
  # What one build's result depends on: the config minus the sweep axes, plus this job's values.
  common = {
    k: v
    for k, v in cfg.to_dict().items()
    if k not in ("thresholds", "dims_per_block", "encode_only_threshold", "preset")
  }
  runs = [
    SweepRun(
      key=job_key(*job),
      fn=lambda wd, job=job: build(wd, *job),
      config=dict(common, threshold=job[0], dims_per_block=job[1], encode_only=job[2]),
    )
    for job in jobs
  ]
  results = run_sweep(workdir, runs, on_done=show)
  rows = [results[k0][k1] for k0, k1 in (job_key(*job) for job in jobs)]
  name = rows[0]["data"]

  bits_all = sorted({r["bits"] for r in rows})
  base = {r["bits"]: r for r in rows if r["threshold"] == 0.0}
  labels = list(dict.fromkeys(_label(r) for r in rows))
  verdicts = {}
  for lab in labels:
    if lab.startswith("T=0 "):
      continue
    rs = [r for r in rows if _label(r) == lab and r["bits"] in base]
    verdicts[lab] = dict(
      recall1_beats_reconstruction_every_bitrate=all(
        r["recall1_at10"] > base[r["bits"]]["recall1_at10"] for r in rs
      ),
      recall10_beats_reconstruction_every_bitrate=all(
        r["recall10_at10"] > base[r["bits"]]["recall10_at10"] for r in rs
      ),
      rel_err_below_reconstruction_every_bitrate=all(
        r["rel_err_top1"] < base[r["bits"]]["rel_err_top1"] for r in rs
      ),
    )
  png = os.path.join(workdir, "recall_vs_bits.png")
  plot(rows, png, f"AVQ vs reconstruction PQ — {name}")
  summary = dict(
    data=name,
    rows=rows,
    bits=bits_all,
    verdicts=verdicts,
    wall_s=time.perf_counter() - t_start,
    versions=package_versions(),
  )
  save_json(os.path.join(workdir, "summary.json"), summary)
  return summary


def format_report(summary: dict) -> str:
  """The three tables (metric x setting x bits) and the paper-claim verdicts."""
  rows, bits_all = summary["rows"], summary["bits"]
  labels = list(dict.fromkeys(_label(r) for r in rows))
  header = f"{'setting':<26}" + "".join(f"{b:>8d}b" for b in bits_all)
  lines = []
  for key, unit in (
    ("recall1_at10", "Recall1@10 [0-1] (true top-1 within the ADC top-10)"),
    ("recall10_at10", "Recall10@10 [0-1]"),
    ("rel_err_top1", "relative error of top-1 inner product [fraction]"),
  ):
    lines += ["", unit, header]
    for lab in labels:
      vals = {r["bits"]: r[key] for r in rows if _label(r) == lab}
      lines.append(f"{lab:<26}" + "".join(f"{vals.get(b, float('nan')):>9.4f}" for b in bits_all))
  lines += ["", "Claim 'anisotropic beats reconstruction at every bitrate' (Recall1@10, strict):"]
  for lab, v in summary["verdicts"].items():
    lines.append(
      f"  {lab:<24} Recall1@10: {v['recall1_beats_reconstruction_every_bitrate']}  "
      f"Recall10@10: {v['recall10_beats_reconstruction_every_bitrate']}  "
      f"rel_err lower: {v['rel_err_below_reconstruction_every_bitrate']}"
    )
  lines.append("Outputs: config.json, summary.json, results.json, recall_vs_bits.png")
  return "\n".join(lines).lstrip("\n")


def main(argv=None):
  return launch("avq", run, lambda cfg, summary: format_report(summary), argv)


if __name__ == "__main__":
  main()
