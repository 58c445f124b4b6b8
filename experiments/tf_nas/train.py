"""Table -> (search -> parse -> retrain -> time) per target latency -> results.json."""

from __future__ import annotations

import json
import os
import time

import jax
import ml_collections
import numpy as np

from vision_jax import data as vdata
from vision_jax.data.idx import read_idx
from vision_jax.nas import (
  SearchSpace,
  cached_table,
  calibrate_table,
  count_flops,
  count_params,
  derived_net,
  measure_nets,
  parse_arch,
  random_archs,
  search_from_warmup,
  search_task,
)
from vision_jax.train import (
  Checkpointer,
  SweepRun,
  abstract_with_shardings,
  batch_shardings,
  create_train_state,
  make_mesh,
  make_task_optimizers,
  run_sweep,
  to_global_batch,
  train_and_evaluate,
)
from vision_jax.train.classification import classification_task
from vision_jax.utils.runinfo import save_json


# ----------------------------------------------------------------------------- data
def _pad(images: np.ndarray, size: int) -> np.ndarray:
  h = images.shape[1]
  if h > size:
    raise ValueError(f"data images are {h} px but space.image_size={size}; it must be >= {h}")
  a = (size - h) // 2
  return np.pad(images, ((0, 0), (a, size - h - a), (a, size - h - a), (0, 0)))


def imagenet100_sources(cfg):
  """TF-NAS's ImageNet-100 search lists as random-access sources (``vj_imagenet_list``).

  ``(search_train, search_val, test)``: the two lists' decoded photos (cropped per example by
  :func:`train_transform`) and the ImageNet val images of the 100 classes, resized to
  ``data.eval_resize`` and centre-cropped to ``space.image_size``. Built once into
  ``data.data_dir`` (default ``vision_jax.data.default_data_dir()``) from
  ``data.imagenet100_dir`` (``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``) and the lists
  ``data.train_list`` / ``data.val_list`` ("" = the code's file names in that folder).

  Raises:
    FileNotFoundError: ``data.imagenet100_dir`` unset or missing, a list or image missing, or no
      ``val/`` folder (the retrain is evaluated on it).
    ValueError: the train list's class count is not ``space.num_classes``, or a bad list line.
  """
  d, size = cfg.data, int(cfg.space.image_size)
  root = d.imagenet100_dir
  if not root or not os.path.isdir(root):
    raise FileNotFoundError(
      f"data.imagenet100_dir={root!r} is not a directory: pass "
      "--config.data.imagenet100_dir=DIR with DIR/train/<wnid>/*.JPEG and DIR/val/<wnid>/*.JPEG "
      "(ImageNet), and the TF-NAS lists in DIR or at --config.data.train_list/val_list."
    )
  lists = [
    os.path.join(root, p or name) for p, name in zip((d.train_list, d.val_list), vdata.TF_NAS_LISTS)
  ]
  _, labels, _ = vdata.read_label_list(lists[0])
  c = vdata.check_contiguous(labels, lists[0])
  if c != int(cfg.space.num_classes):
    raise ValueError(
      f"{lists[0]} has {c} classes but space.num_classes={cfg.space.num_classes}; set them equal."
    )
  if not os.path.isdir(os.path.join(root, "val")):
    raise FileNotFoundError(
      f"data.imagenet100_dir={root!r} has no val/<wnid>/ folders: the retrained net is evaluated "
      "on the ImageNet val images of the listed classes."
    )
  kw = dict(
    data_dir=d.data_dir or None, manual_dir=root,
    builder_kwargs=dict(train_list=lists[0], val_list=lists[1]),
  )  # fmt: skip
  tr, va, te = (
    vdata.load("vj_imagenet_list", s, **kw) for s in ("search_train", "search_val", "val")
  )
  resize = int(d.eval_resize)
  test = vdata.MappedSource(
    te,
    lambda ex: {
      "image": vdata.resize_center_crop(ex["image"], size, resize),
      "label": np.int32(ex["label"]),
    },
  )
  return tr, va, test


def train_transform(cfg):
  """Per-example search / retrain augmentation: ``None`` for the array datasets; for
  ``imagenet100`` random-resized-crop to ``space.image_size`` (scale ``data.crop_scale``, aspect
  3/4..4/3) and a horizontal flip, as the code's ``RandomResizedCrop(224)`` +
  ``RandomHorizontalFlip``.

  Choice: the code's ColorJitter(0.4, 0.4, 0.4, 0.2) is left out; the search-val batches get the
    same crop and flip as the train batches.
  """
  if cfg.data.name != "imagenet100":
    return None
  size, scale = int(cfg.space.image_size), tuple(float(v) for v in cfg.data.crop_scale)

  def transform(ex, rng):
    img = vdata.random_resized_crop(ex["image"], rng, size, scale)
    return vdata.random_horizontal_flip({"image": img, "label": np.int32(ex["label"])}, rng)

  return transform


def make_sources(cfg):
  """``(search_train, search_val, test)`` random-access sources of ``{"image": uint8, "label"}``:
  ArraySources for ``fashion_mnist`` / ``synthetic``; for ``imagenet100`` see
  :func:`imagenet100_sources` (the train sources are read through :func:`train_transform`)."""
  d, size = cfg.data, int(cfg.space.image_size)
  if d.name == "fashion_mnist":
    root = d.manual_dir
    x = read_idx(os.path.join(root, "train-images-idx3-ubyte.gz"))[..., None]
    y = read_idx(os.path.join(root, "train-labels-idx1-ubyte.gz")).astype(np.int32)
    xt = read_idx(os.path.join(root, "t10k-images-idx3-ubyte.gz"))[..., None]
    yt = read_idx(os.path.join(root, "t10k-labels-idx1-ubyte.gz")).astype(np.int32)
  elif d.name == "synthetic":
    n = int(d.num_search) + int(d.num_test)
    src = vdata.synthetic_source(n, (size, size, 1), 10, seed=1)
    x, y = src.arrays["image"][: d.num_search], src.arrays["label"][: d.num_search].astype(np.int32)
    xt, yt = (
      src.arrays["image"][d.num_search :],
      src.arrays["label"][d.num_search :].astype(np.int32),
    )
  elif d.name == "imagenet100":
    return imagenet100_sources(cfg)
  else:
    raise ValueError(f"unknown data.name {d.name!r}; valid: fashion_mnist, synthetic, imagenet100")
  x, xt = _pad(x, size), _pad(xt, size)
  rng = np.random.default_rng(int(cfg.seed))
  idx = rng.permutation(len(x))[: int(d.num_search)]
  n_val = int(round(len(idx) * float(d.search_val_fraction)))
  val, tr = idx[:n_val], idx[n_val:]
  test = rng.permutation(len(xt))[: int(d.num_test)]
  mk = lambda i, xs, ys: vdata.ArraySource({"image": xs[i], "label": ys[i]})  # noqa: E731
  return mk(tr, x, y), mk(val, x, y), mk(test, xt, yt)


class PairedBatches:
  """``data[t] = {"train": train[t], "val": val[t]}`` (both pure functions of seed and ``t``)."""

  def __init__(self, train, val):
    self.train, self.val = train, val

  def __getitem__(self, t):
    return {"train": self.train[t], "val": self.val[t]}


# ----------------------------------------------------------------------------- pieces
def _space(cfg) -> SearchSpace:
  return SearchSpace.from_config(cfg.space.to_dict())


def _protocol(cfg) -> dict:
  lc = cfg.lut
  return dict(
    batch_size=int(lc.batch_size), warmup=int(lc.warmup), rounds=int(lc.rounds),
    inner=int(lc.inner), isolated=bool(lc.isolated),
  )  # fmt: skip


def _sub_cfg(cfg, *, num_steps, optim, **extra_sections):
  c = ml_collections.ConfigDict()
  c.seed = cfg.seed
  c.train = ml_collections.ConfigDict(cfg.train.to_dict())
  c.train.num_steps = int(num_steps)
  c.optim = ml_collections.ConfigDict(optim.to_dict())
  for k, v in extra_sections.items():
    c[k] = ml_collections.ConfigDict(v.to_dict())
  c.mesh = ml_collections.ConfigDict(cfg.mesh.to_dict())
  return c


def _search_task(cfg, space, table, target_ms, phase="search"):
  s = cfg.search
  base, curve = table.dense(space)
  return search_task(
    space, base, curve, target_ms=target_ms, steps_per_epoch=int(s.steps_per_epoch),
    warmup_epochs=int(s.warmup_epochs), lat_weight=float(s.lat_weight), tau0=float(s.tau0),
    tau_decay=float(s.tau_decay), arch_every=int(s.arch_every), elastic=bool(s.elastic),
    dw_impl=str(s.get("dw_impl", "taps")), phase=phase,
  )  # fmt: skip


def _search_data(cfg, sources):
  tr, va, _ = sources
  b, aug = int(cfg.data.batch_size), train_transform(cfg)
  return PairedBatches(
    vdata.train_dataset(tr, global_batch_size=b, seed=int(cfg.seed), transform=aug),
    vdata.train_dataset(va, global_batch_size=b, seed=int(cfg.seed) + 1, transform=aug),
  )


def _shares_warmup(cfg) -> bool:
  return bool(cfg.search.get("share_warmup", False)) and int(cfg.search.warmup_epochs) > 0


def _search_cfg(cfg):
  s = cfg.search
  return _sub_cfg(
    cfg, num_steps=int(s.epochs) * int(s.steps_per_epoch), optim=cfg.optim,
    optim_arch=cfg.optim_arch,
  )  # fmt: skip


def _warmup_cfg(cfg):
  """The warm-up run's trainer config: the warm-up steps, the weights' lr held at its peak."""
  optim = ml_collections.ConfigDict(cfg.optim.to_dict())
  optim.schedule = "constant"
  c = _sub_cfg(cfg, num_steps=_warmup_steps(cfg), optim=optim)
  c.warmup = ml_collections.ConfigDict(warmup_settings(cfg))  # checked by the loop on resume
  return c


def _warmup_steps(cfg) -> int:
  return int(cfg.search.warmup_epochs) * int(cfg.search.steps_per_epoch)


def warmup_settings(cfg) -> dict:
  """Everything the shared warm-up's result depends on: seed, data, search space, the warm-up
  schedule, the depthwise conv, both optimisers (the architecture one fixes the state's
  structure) and the mesh. A target's search starts from the warm-up only if they equal its own."""
  s = cfg.search
  return dict(
    seed=int(cfg.seed), data=cfg.data.to_dict(), space=cfg.space.to_dict(),
    search=dict(warmup_epochs=int(s.warmup_epochs), steps_per_epoch=int(s.steps_per_epoch),
                dw_impl=str(s.get("dw_impl", "taps"))),
    optim=cfg.optim.to_dict(), optim_arch=cfg.optim_arch.to_dict(), mesh=cfg.mesh.to_dict(),
  )  # fmt: skip


def _mesh(cfg):
  model, data = int(cfg.mesh.get("model", 1)), int(cfg.mesh.get("data", -1))
  devices = jax.devices()[: data * model] if data > 0 else None
  return make_mesh(data=data, model=model, devices=devices)


def run_warmup(cfg, run_dir, *, table, sources, target_ms, progress=False) -> dict:
  """The warm-up epochs once for every target (``search.share_warmup``): the ``phase="warmup"``
  search Task trained in ``run_dir/search``; its final checkpoint seeds each target's search."""
  space = _space(cfg)
  task = _search_task(cfg, space, table, target_ms, phase="warmup")  # the target is not read
  t0 = time.time()
  summary = train_and_evaluate(
    _warmup_cfg(cfg), os.path.join(run_dir, "search"), task, _search_data(cfg, sources),
    progress=progress,
  )  # fmt: skip
  if summary.get("preempted"):
    return summary
  return dict(
    steps=_warmup_steps(cfg), seconds=time.time() - t0, final_train=summary.get("final_train")
  )


def _normalised(obj):
  return json.loads(json.dumps(obj, default=str, sort_keys=True))


def _flat(d, prefix=""):
  out = {}
  for k, v in d.items():
    out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
  return out


def start_from_warmup(cfg, search_dir, warmup_dir, task, target_ms, data) -> bool:
  """Writes the first checkpoint of a target's search (``search_dir``) from the shared warm-up in
  ``warmup_dir``, so that the search resumes at the warm-up's last step; ``False`` (nothing done)
  when the search already has checkpoints of its own.

  Raises:
    ValueError: the warm-up ran with other settings than this config's (:func:`warmup_settings`;
      the changed keys are named), or has no checkpoint at its last step.
  """
  ck = Checkpointer(os.path.join(search_dir, "checkpoints"), keep=1)
  try:
    if ck.latest_step() is not None:
      return False
    want = _flat(_normalised(warmup_settings(cfg)))
    path = os.path.join(warmup_dir, "config.json")
    try:
      with open(path) as f:
        have = _flat(_normalised(json.load(f)))
    except (OSError, ValueError):
      have = None
    if have != want:
      changed = (
        sorted(
          k for k in set(want) | set(have) if want.get(k, "<absent>") != have.get(k, "<absent>")
        )
        if have is not None
        else ["(no readable config.json)"]
      )
      raise ValueError(
        f"the search in {search_dir} would start from the shared warm-up in {warmup_dir}, which "
        f"ran with other settings (changed keys: {', '.join(changed)}); use another workdir, "
        "delete the warm-up directory to recompute it, or set --config.search.share_warmup=False"
      )
    n_warm = _warmup_steps(cfg)
    mesh = _mesh(cfg)
    first = data[0]
    bsh = batch_shardings(task, first, mesh)
    example = to_global_batch(first, mesh, bsh)
    scfg = _search_cfg(cfg)
    tx, _ = make_task_optimizers(task, scfg, int(scfg.train.num_steps))
    fresh, _ = create_train_state(task, tx, jax.random.PRNGKey(int(cfg.seed)), example, mesh)
    # the warm-up state: the search's without the architecture optimiser's state
    only_weights = lambda t: t.replace(opt_state={"weights": t.opt_state["weights"]})  # noqa: E731
    wabstract = only_weights(jax.eval_shape(lambda st: st, fresh))
    wsh = only_weights(jax.tree.map(lambda x: x.sharding, fresh))
    wck = Checkpointer(os.path.join(warmup_dir, "search", "checkpoints"), keep=1)
    try:
      restored = wck.restore_latest(abstract_with_shardings(wabstract, wsh))
    finally:
      wck.close()
    if restored is None or int(restored[0].step) != n_warm:
      raise ValueError(
        f"the shared warm-up in {warmup_dir} has no checkpoint at its last step {n_warm}"
      )
    state = search_from_warmup(restored[0], fresh, target_ms)
    ck.save(n_warm, state, {"config": scfg.to_dict(), "from_warmup": os.path.abspath(warmup_dir)})
    ck.wait()
    return True
  finally:
    ck.close()


def search_and_retrain(
  cfg, run_dir, *, target_ms, table, sources, progress=False, warmup_dir=None
) -> dict:
  """One target: search, parse, retrain the derived net, time it; returns its summary.

  With ``warmup_dir`` (``search.share_warmup``) the search starts from the shared warm-up's
  last checkpoint (:func:`start_from_warmup`) and trains the post-warm-up epochs only."""
  space = _space(cfg)
  tr, va, te = sources
  table.check_target(space, target_ms)
  task = _search_task(cfg, space, table, target_ms)
  aug = train_transform(cfg)
  data = _search_data(cfg, sources)
  scfg = _search_cfg(cfg)
  if warmup_dir is not None:
    start_from_warmup(cfg, os.path.join(run_dir, "search"), warmup_dir, task, target_ms, data)
  t0 = time.time()
  ssum, state = train_and_evaluate(
    scfg, os.path.join(run_dir, "search"), task, data, progress=progress, return_state=True
  )
  if ssum.get("preempted"):
    return ssum
  search_s = time.time() - t0
  arch = parse_arch(space, state.params["arch"], np.asarray(state.extra["widths"]))
  save_json(os.path.join(run_dir, "arch.json"), arch)
  predicted = table.predict(arch)

  r = cfg.retrain
  rcfg = _sub_cfg(cfg, num_steps=int(r.steps), optim=r.optim)
  rcfg.train.checkpoint_every = 0
  if isinstance(tr, vdata.ArraySource):
    full = vdata.ArraySource(
      {k: np.concatenate([tr.arrays[k], va.arrays[k]]) for k in ("image", "label")}
    )
  else:
    full = vdata.ConcatSource(tr, va)
  rtask = classification_task(
    derived_net(arch, float(r.dropout), dw_impl=str(r.get("dw_impl", "taps"))),
    num_classes=space.num_classes,
    label_smoothing=float(r.label_smoothing),
  )  # fmt: skip
  t0 = time.time()
  rsum = train_and_evaluate(
    rcfg,
    os.path.join(run_dir, "retrain"),
    rtask,
    vdata.train_dataset(
      full, global_batch_size=int(r.batch_size), seed=int(cfg.seed), transform=aug
    ),
    lambda: vdata.eval_batches(te, global_batch_size=int(r.eval_batch_size)),
    progress=progress,
  )
  if rsum.get("preempted"):
    return rsum
  retrain_s = time.time() - t0
  ((measured, spread),) = measure_nets([arch], **_protocol(cfg))
  final = ssum.get("final_train", {})
  return dict(
    target_ms=float(target_ms),
    predicted_ms=float(predicted),
    measured_ms=float(measured),
    measured_spread=float(spread),
    predicted_error=float(predicted / target_ms - 1.0),
    measured_error=float(measured / target_ms - 1.0),
    accuracy=float(rsum["eval"]["accuracy"]),
    flops=count_flops(arch),
    params=count_params(arch),
    depths=[
      int(np.argmax(np.asarray(state.params["arch"]["beta"][f"s{i}"]))) + 1
      for i in range(len(space.stages))
    ],
    ops=[blk["op"] for blk in arch["blocks"]],
    search_seconds=search_s,
    retrain_seconds=retrain_s,
    search_final_arch_latency_ms=final.get("arch/latency_ms"),
  )


def calibration(cfg, table, space, workdir):
  """``(table, fit)``: the table scaled to whole nets (``lut.calibrate_archs`` random nets, other
  than the check's), cached in ``<workdir>/calibration.json``; ``(table, {})`` when off."""
  n = int(cfg.lut.calibrate_archs)
  if n <= 0:
    return table, {}
  path = os.path.join(workdir, "calibration.json")
  archs = random_archs(space, n, int(cfg.seed) + 7)
  if os.path.exists(path):
    with open(path) as f:
      fit = json.load(f)
    cal, _ = calibrate_table(table, archs, fit["measured_ms"])
    return cal, fit
  cal, fit = calibrate_table(table, archs, **_protocol(cfg))
  save_json(path, fit)
  return cal, fit


def table_check(cfg, table, space) -> dict:
  """The table's prediction vs the measured latency of random architectures."""
  n = int(cfg.lut.num_random_archs)
  if n <= 0:
    return {}
  archs = random_archs(space, n, int(cfg.seed) + 11)
  meas = measure_nets(archs, **_protocol(cfg))
  pred = [table.predict(a) for a in archs]
  err = [p / m - 1.0 for p, (m, _) in zip(pred, meas)]
  return dict(
    predicted_ms=pred,
    measured_ms=[m for m, _ in meas],
    measured_spread=[s for _, s in meas],
    rel_error=err,
    mean_abs_rel_error=float(np.mean(np.abs(err))),
    max_abs_rel_error=float(np.max(np.abs(err))),
  )


def _targets(cfg, table, space) -> list[float]:
  if cfg.targets_ms:
    ts = [float(t) for t in cfg.targets_ms]
  else:
    lo, hi = table.reachable(space)
    ts = [lo + float(f) * (hi - lo) for f in cfg.target_fractions]
  for i, t in enumerate(ts):
    table.check_target(space, t, where=f"targets_ms[{i}]")
  return ts


def run(cfg, workdir, *, progress=False):
  t_start = time.time()
  os.makedirs(workdir, exist_ok=True)
  if cfg.compilation_cache:
    import jax

    from vision_jax.train import setup_runtime

    if not jax.config.jax_compilation_cache_dir:
      d = (
        os.path.join(workdir, "jax_cache")
        if cfg.compilation_cache == "auto"
        else cfg.compilation_cache
      )
      setup_runtime(compilation_cache=d)
  space = _space(cfg)
  sources = make_sources(cfg)  # first: bad data settings fail before the table is timed
  cache = cfg.lut.cache_dir or os.path.join(workdir, "lut")
  t0 = time.time()
  table, lut_path = cached_table(space, cache, num_widths=int(cfg.lut.num_widths), **_protocol(cfg))
  table, fit = calibration(cfg, table, space, workdir)
  lut_s = time.time() - t0
  table.save(os.path.join(workdir, "lut.json"))
  lo, hi = table.reachable(space)
  check_path = os.path.join(workdir, "table_check.json")
  if os.path.exists(check_path):
    with open(check_path) as f:
      check = json.load(f)
  else:
    check = table_check(cfg, table, space)
    save_json(check_path, check)
  targets = _targets(cfg, table, space)
  print(
    f"tf_nas: table {lut_path} ({len(table.blocks)} configurations, batch {table.batch_size}, "
    f"{table.threads}-threaded, {table.device}; scale {table.scale:.3f}); reachable {lo:.3f}..{hi:.3f} ms; targets "
    + ", ".join(f"{t:.3f}" for t in targets)
  )

  shared = _shares_warmup(cfg)
  warmup_dir = os.path.join(workdir, "warmup") if shared else None

  def fn_for(t):
    return lambda run_dir: search_and_retrain(
      cfg, run_dir, target_ms=t, table=table, sources=sources, progress=progress,
      warmup_dir=warmup_dir,
    )  # fmt: skip

  # One sweep run per target, through the shared harness: finished targets are read back, a
  # stop request raises Preempted (the launcher prints the resume command), and a target whose
  # stored settings differ from this config's is refused instead of reused.
  # Choice (search.share_warmup): the warm-up epochs read neither the target nor the
  # architecture update, so they run once (the "warmup" run) and every target's search starts
  # from its last checkpoint; the warm-up holds the weights' lr at its peak (the code anneals
  # it over all epochs, warm-up included). A warm-up of other settings is refused.
  runs = []
  if shared:
    runs.append(
      SweepRun(
        key=("warmup",),
        fn=lambda run_dir: run_warmup(
          cfg, run_dir, table=table, sources=sources, target_ms=targets[0], progress=progress
        ),
        config=warmup_settings(cfg),
      )
    )
  settings = dict(seed=int(cfg.seed), data=cfg.data.to_dict(), space=cfg.space.to_dict())
  runs += [
    SweepRun(
      key=(f"target_{i}",),
      fn=fn_for(t),
      config=dict(
        target_ms=float(t),
        search=cfg.search.to_dict(),
        retrain=cfg.retrain.to_dict(),
        optim=cfg.optim.to_dict(),
        optim_arch=cfg.optim_arch.to_dict(),
        **settings,
      ),  # fmt: skip
    )
    for i, t in enumerate(targets)
  ]
  per_target = run_sweep(workdir, runs, results_name="targets.json", comparison=None)
  warm = per_target.pop("warmup", None)
  results = dict(
    targets=per_target,
    table=dict(
      path=lut_path,
      device=table.device,
      batch_size=table.batch_size,
      threads=table.threads,
      configurations=len(table.blocks),
      spread=table.spread,
      scale=table.scale,
      calibration=fit,
      base_ms=table.base_ms,
      dispatch_ms=table.dispatch_ms,
      reachable_ms=[lo, hi],
      seconds=lut_s,
      measured_seconds=table.meta.get("seconds"),
    ),  # fmt: skip
    table_check=check,
    warmup=warm,
    wall_seconds=time.time() - t_start,
    load_average=list(os.getloadavg()),
  )
  save_json(os.path.join(workdir, "results.json"), results)
  return results


def format_table(cfg, results) -> str:
  if results.get("preempted"):
    return "preempted"
  rows = [
    "| target ms | predicted ms (err) | measured ms (spread, err) | top-1 | MFLOPs | params | search s |",
    "|---|---|---|---|---|---|---|",
  ]
  for r in results["targets"].values():
    rows.append(
      f"| {r['target_ms']:.3f} | {r['predicted_ms']:.3f} ({100 * r['predicted_error']:+.1f} %) | "
      f"{r['measured_ms']:.3f} (±{100 * r['measured_spread']:.0f} %, {100 * r['measured_error']:+.1f} %) | "
      f"{100 * r['accuracy']:.2f} % | {r['flops'] / 1e6:.2f} | {r['params']} | {r['search_seconds']:.0f} |"
    )
  c = results.get("table_check") or {}
  t = results["table"]
  rows.append("")
  rows.append(
    f"table: {t['configurations']} configurations on {t['device']}, batch {t['batch_size']}, "
    f"median block spread {100 * t['spread'].get('block_median', 0):.0f} %, "
    f"scale {t.get('scale', 1.0):.3f}"
    + (
      f"; random-arch error mean {100 * c['mean_abs_rel_error']:.1f} % / max "
      f"{100 * c['max_abs_rel_error']:.1f} % over {len(c['rel_error'])} nets"
      if c
      else ""
    )
  )
  return "\n".join(rows)
