"""The TF-NAS experiment's smoke preset: table, search, parse, retrain, timing, results.json.

The preset's 1-block, 2-op supernet keeps it at about 30 CPU-s (docs/tf_nas.md), so it runs in
the suite."""

import json

import numpy as np
import pytest

from experiments.tf_nas import train
from vision_jax.nas import LatencyTable, validate_arch
from vision_jax.utils import load_config


def test_smoke_preset_runs(tmp_path):
  cfg = load_config("tf_nas", "smoke")
  results = train.run(cfg, str(tmp_path), progress=False)
  on_disk = json.loads((tmp_path / "results.json").read_text())
  assert set(on_disk["targets"]) == {"target_0"}
  r = on_disk["targets"]["target_0"]
  for k in ("target_ms", "predicted_ms", "measured_ms", "accuracy"):
    assert np.isfinite(r[k]), k
  lo, hi = on_disk["table"]["reachable_ms"]
  assert lo <= r["target_ms"] <= hi
  assert 0.0 <= r["accuracy"] <= 1.0 and r["measured_ms"] > 0
  arch = validate_arch(json.loads((tmp_path / "target_0" / "arch.json").read_text()))
  table = LatencyTable.load(str(tmp_path / "lut.json"))
  assert table.predict(arch) == r["predicted_ms"]
  assert "| target ms |" in train.format_table(cfg, results)
  # a second run resumes from the finished summaries and the cached table
  again = train.run(cfg, str(tmp_path), progress=False)
  assert again["targets"]["target_0"] == r


def test_search_starts_from_the_shared_warmup(tmp_path):
  """The warm-up runs once; a target's first search checkpoint is its last state with the
  target set and a fresh architecture optimiser; a warm-up of other settings is refused."""
  import jax

  from vision_jax.nas import cached_table
  from vision_jax.train import Checkpointer, abstract_with_shardings

  cfg = load_config("tf_nas", "smoke", {"search.share_warmup": "True"})
  space = train._space(cfg)
  table, _ = cached_table(space, str(tmp_path / "lut"), num_widths=2, **train._protocol(cfg))
  lo, hi = table.reachable(space)
  sources = train.make_sources(cfg)
  wdir = tmp_path / "warmup"
  out = train.run_warmup(cfg, str(wdir / "run"), table=table, sources=sources, target_ms=lo)
  assert out["steps"] == 1
  # the sweep harness stores the warm-up's settings next to its summary
  (wdir / "run" / "config.json").write_text(json.dumps(train.warmup_settings(cfg)))
  target = (lo + hi) / 2
  task = train._search_task(cfg, space, table, target)
  data = train._search_data(cfg, sources)
  sdir = tmp_path / "target" / "search"
  assert train.start_from_warmup(cfg, str(sdir), str(wdir / "run"), task, target, data)
  assert not train.start_from_warmup(cfg, str(sdir), str(wdir / "run"), task, target, data)
  # read both checkpoints back with the search state's structure
  from vision_jax.train import create_train_state, make_task_optimizers, to_global_batch

  mesh = train._mesh(cfg)
  example = to_global_batch(data[0], mesh)
  tx, _ = make_task_optimizers(task, train._search_cfg(cfg), 2)
  fresh, sh = create_train_state(task, tx, jax.random.PRNGKey(0), example, mesh)
  ck = Checkpointer(str(sdir / "checkpoints"))
  state, _, step = ck.restore_latest(
    abstract_with_shardings(jax.eval_shape(lambda s: s, fresh), sh)
  )
  ck.close()
  assert step == 1 and int(state.step) == 1
  assert float(state.extra["target_ms"]) == np.float32(target)
  only = lambda t: t.replace(opt_state={"weights": t.opt_state["weights"]})  # noqa: E731
  wck = Checkpointer(str(wdir / "run" / "search" / "checkpoints"))
  warm, _, _ = wck.restore_latest(
    abstract_with_shardings(only(jax.eval_shape(lambda s: s, fresh)), only(sh))
  )
  wck.close()
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(warm.params)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(
    jax.tree.leaves(state.opt_state["weights"]), jax.tree.leaves(warm.opt_state["weights"])
  ):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(
    jax.tree.leaves(state.opt_state["arch"]), jax.tree.leaves(fresh.opt_state["arch"])
  ):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(state.rng, warm.rng)
  np.testing.assert_array_equal(state.extra["widths"], warm.extra["widths"])
  # other warm-up settings: refused, naming the changed keys
  other = load_config("tf_nas", "smoke", {"search.share_warmup": "True", "data.num_search": "48"})
  with pytest.raises(
    ValueError, match=r"ran with other settings \(changed keys: data.num_search\)"
  ):
    train.start_from_warmup(other, str(tmp_path / "t2"), str(wdir / "run"), task, target, data)
