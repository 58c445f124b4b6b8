"""Bi-sampling, latency expectation, gradient isolation of the two updates, no retrace on width
changes, elasticity scaling against a loop reference, parse -> build -> apply."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from tests.nas._fixtures import TINY, brute_force_latency, synthetic_table
from vision_jax.nas import (
  OPS,
  bi_sample,
  count_params,
  derived_net,
  elastic_scale,
  expected_latency,
  gumbel_weights,
  init_arch,
  parse_arch,
  ranked_masks,
  search_task,
  temperature,
  validate_arch,
)
from vision_jax.nas import supernet as sn
from vision_jax.train import (
  batch_shardings,
  create_train_state,
  make_mesh,
  make_task_optimizers,
  make_train_step,
  to_global_batch,
)


def test_second_path_never_equals_first():
  alpha = jax.nn.log_softmax(jax.random.normal(jax.random.PRNGKey(0), (5, 8)) * 2.0, -1)
  keys = jax.random.split(jax.random.PRNGKey(1), 4000)
  first, second = jax.vmap(lambda k: bi_sample(alpha, k))(keys)
  first, second = np.asarray(first), np.asarray(second)
  assert first.shape == second.shape == (4000, 5)
  assert np.all(first != second)
  assert second.min() >= 0 and second.max() <= 7
  # first ~ softmax(alpha) (Gumbel-max); second uniform over the other 7 ops
  p = np.asarray(jax.nn.softmax(alpha, -1))
  freq = np.stack([np.bincount(first[:, b], minlength=8) for b in range(5)]) / 4000
  np.testing.assert_allclose(freq, p, atol=0.035)
  f = int(np.bincount(first[:, 0]).argmax())
  counts = np.bincount(second[first[:, 0] == f, 0], minlength=8)
  others = np.delete(counts, f)
  assert counts[f] == 0 and others.min() > 0.6 * others.mean()


def test_gumbel_weights_are_a_distribution_and_sharpen():
  alpha = jnp.log(jnp.asarray([[0.7, 0.1, 0.05, 0.05, 0.04, 0.03, 0.02, 0.01]]))
  w5 = gumbel_weights(alpha, jax.random.PRNGKey(0), 5.0)
  w01 = gumbel_weights(alpha, jax.random.PRNGKey(0), 0.1)
  np.testing.assert_allclose(np.asarray(w5.sum(-1)), 1.0, rtol=1e-6)
  assert float(w01.max()) > float(w5.max())


def test_expected_latency_matches_loops():
  rng = np.random.default_rng(0)
  op_w = jax.nn.softmax(jnp.asarray(rng.normal(size=(TINY.num_blocks, 8))), -1)
  arch = init_arch(TINY)
  arch["beta"]["s0"] = jnp.asarray([0.3, -0.2])
  dw = sn.depth_weights(arch, TINY)
  lat = jnp.asarray(rng.uniform(0.1, 1.0, size=(TINY.num_blocks, 8)))
  got = float(expected_latency(TINY, op_w, dw, lat, 0.5))
  want = brute_force_latency(
    TINY, np.asarray(op_w), [np.asarray(d) for d in dw], np.asarray(lat), 0.5
  )
  assert got == pytest.approx(want, rel=1e-5)


def test_temperature_schedule():
  kw = dict(tau0=5.0, decay=0.96, warmup_epochs=10, steps_per_epoch=100)
  assert float(temperature(0, **kw)) == pytest.approx(5.0)
  assert float(temperature(1099, **kw)) == pytest.approx(5.0)  # epoch 10
  assert float(temperature(1100, **kw)) == pytest.approx(5.0 * 0.96)  # epoch 11
  assert float(temperature(8999, **kw)) == pytest.approx(5.0 * 0.96**79, rel=1e-5)


def test_ranked_masks_keep_largest_depthwise_l1():
  table = synthetic_table()
  base, curve = table.dense(TINY)
  task = search_task(TINY, base, curve, target_ms=0.1, steps_per_epoch=1, warmup_epochs=0)
  batch = {"image": jnp.zeros((2, 8, 8, 1), jnp.uint8), "label": jnp.zeros((2,), jnp.int32)}
  # jitted: the supernet's init op by op compiles every primitive separately
  params, _, extra = jax.jit(task.init)(jax.random.PRNGKey(0), {"train": batch, "val": batch})
  widths = np.asarray(extra["widths"]).copy()
  widths[1, 3] = 10
  masks = ranked_masks(TINY, params["net"], widths)
  k = np.asarray(params["net"]["ops_1_3"]["dw"]["kernel"])
  l1 = np.abs(k).sum((0, 1, 2))
  want = np.zeros_like(l1)
  want[np.argsort(-l1, kind="stable")[:10]] = 1
  np.testing.assert_array_equal(np.asarray(masks["b1"][OPS[3]]), want)
  # untouched entries keep their old mask when `changed` is False
  kept = ranked_masks(TINY, params["net"], widths, extra["masks"], np.zeros_like(widths, bool))
  np.testing.assert_array_equal(
    np.asarray(kept["b1"][OPS[3]]), np.asarray(extra["masks"]["b1"][OPS[3]])
  )


def _elastic_reference(space, widths, ops, depths, curve, base, target, lo, hi):
  """The code's shrink / expand / progressive-expand loops, written with Python ints."""
  slots = space.slots
  act = [s.depth < depths[s.stage] for s in slots]
  mc = [int(widths[s.index][ops[s.index]]) for s in slots]
  lo_b = [int(lo[s.index][ops[s.index]]) for s in slots]
  hi_b = [int(hi[s.index][ops[s.index]]) for s in slots]
  lat = lambda m: base + sum(curve[b][ops[b]][m[b]] for b in range(len(slots)) if act[b])  # noqa: E731
  mn = min(m for m, a in zip(mc, act) if a)
  step = [max(int(np.round(m / mn)), 1) for m in mc]
  clip = lambda v, b: min(max(v, lo_b[b]), hi_b[b])  # noqa: E731

  def expand(mc, sel):
    while True:
      new = [clip(mc[b] + step[b], b) if sel[b] else mc[b] for b in range(len(mc))]
      if new == mc or lat(new) > target:
        return mc
      mc = new

  if lat(mc) > target:
    while lat(mc) > target:
      new = [clip(mc[b] - step[b], b) if act[b] else mc[b] for b in range(len(mc))]
      if new == mc:
        break
      mc = new
  else:
    mc = expand(mc, act)
  for first in range(1, len(space.stages)):
    mc = expand(mc, [a and s.stage >= first for a, s in zip(act, slots)])
  out = np.array(widths).copy()
  for b in range(len(slots)):
    out[b, ops[b]] = mc[b]
  return out


@pytest.mark.parametrize("target", [0.095, 0.11, 0.2, 0.5])
@pytest.mark.parametrize("ops, depths", [([3, 0, 7], [2, 1]), ([6, 6, 1], [1, 1])])
def test_elastic_scale_matches_loop_reference(target, ops, depths):
  table = synthetic_table()
  base, curve = table.dense(TINY)
  lo, hi = sn.width_bounds(TINY)
  widths = sn.nominal_widths(TINY)
  got = elastic_scale(
    TINY, widths, jnp.asarray(ops), jnp.asarray(depths), curve, base, target, lo, hi
  )
  want = _elastic_reference(
    TINY, widths, ops, depths, curve.astype(np.float64), base, target, lo, hi
  )
  np.testing.assert_array_equal(np.asarray(got), want)


# ----------------------------------------------------------------------------- trainer
def _cfg():
  cfg = ml_collections.ConfigDict()
  cfg.seed = 0
  cfg.optim = ml_collections.ConfigDict(
    dict(name="sgd", lr=0.0, momentum=0.9, weight_decay=1e-5, grad_clip=5.0, schedule="cosine")
  )
  cfg.optim_arch = ml_collections.ConfigDict(
    dict(name="adam", lr=0.01, b1=0.5, b2=0.999, weight_decay=5e-4, grad_clip=5.0)
  )
  return cfg


def _batch(seed):
  r = np.random.default_rng(seed)
  one = lambda: {  # noqa: E731
    "image": r.integers(0, 255, (8, 8, 8, 1)).astype(np.uint8),
    "label": r.integers(0, 4, (8,)).astype(np.int32),
  }
  return {"train": one(), "val": one()}


# The trainer tests search over 2 of the 8 ops (both kernels, both expansions, SE on one): the
# step compiles a quarter of the full supernet; bi-sampling's second path is then the other op.
SUB = dataclasses.replace(TINY, ops=("k3_e6", "k5_e3_se"))


@pytest.fixture(scope="module")
def run():
  table = synthetic_table(SUB)
  base, curve = table.dense(SUB)
  lo, hi = table.reachable(SUB)
  target = lo + 0.3 * (hi - lo)
  # dw_impl="xla": the same outputs as the default "taps" (tests/nas/test_space_layers.py) and
  # about half the compile time of this step, so these tests stay in the suite
  task = search_task(
    SUB, base, curve, target_ms=target, steps_per_epoch=1, warmup_epochs=1, dw_impl="xla"
  )
  traces = {"n": 0}

  def counting(fn):
    def wrapped(*a):
      traces["n"] += 1
      return fn(*a)

    return wrapped

  task = dataclasses.replace(
    task, updates=tuple(dataclasses.replace(u, loss_fn=counting(u.loss_fn)) for u in task.updates)
  )
  mesh = make_mesh()
  tx, sched = make_task_optimizers(task, _cfg(), 10)
  example = _batch(0)
  bsh = batch_shardings(task, example, mesh)
  state, shardings = create_train_state(
    task, tx, jax.random.PRNGKey(0), to_global_batch(example, mesh, bsh), mesh
  )
  step = make_train_step(task, tx, sched, mesh, shardings, bsh)
  states = [jax.device_get(state)]
  metrics = []
  for t in range(3):
    state, m = step(state, to_global_batch(_batch(t), mesh, bsh))
    states.append(jax.device_get(state))
    metrics.append(jax.device_get(m))
  return dict(task=task, table=table, target=target, step=step, state=state, states=states, metrics=metrics,
              traces=traces, mesh=mesh, bsh=bsh)  # fmt: skip


def test_weight_loss_sends_no_gradient_to_arch(run):
  task, st = run["task"], run["states"][0]
  loss_fn = task.updates[0].loss_fn
  b = jax.tree.map(jnp.asarray, _batch(5)["train"])

  def arch_loss(arch):
    return loss_fn({**st.params, "arch": arch}, {}, st.extra, b, jax.random.PRNGKey(0), 3)[0]

  # the gradient w.r.t. the architecture parameters alone (jitted: XLA drops the weights'
  # backward, one small compile) is exactly zero ...
  grads = jax.jit(jax.grad(arch_loss))(st.params["arch"])
  for leaf in jax.tree.leaves(grads):
    assert np.all(np.asarray(leaf) == 0.0)
  # ... while the same loss does move the weights (the step's weight update saw a gradient)
  assert run["metrics"][0]["weights/grad_norm"] > 0


def test_updates_touch_only_their_group(run):
  s0, s1, s2 = run["states"][:3]
  m0, m1 = run["metrics"][:2]
  # step 0: warm-up, arch update skipped -> arch untouched (log-softmax re-projection of a
  # normalised log-distribution is the identity up to rounding)
  assert m0["arch/applied"] == 0.0 and m1["arch/applied"] == 1.0
  np.testing.assert_allclose(
    np.asarray(s1.params["arch"]["alpha"]), np.asarray(s0.params["arch"]["alpha"]), atol=1e-6
  )
  for a, b in zip(
    jax.tree.leaves(s0.params["arch"]["beta"]), jax.tree.leaves(s1.params["arch"]["beta"])
  ):
    np.testing.assert_array_equal(a, b)
  # step 1: the arch update ran; weights have lr 0, so any change to them would come from the
  # arch update: there is none
  for a, b in zip(jax.tree.leaves(s1.params["net"]), jax.tree.leaves(s2.params["net"])):
    np.testing.assert_array_equal(a, b)
  moved = max(
    float(np.max(np.abs(a - b)))
    for a, b in zip(jax.tree.leaves(s1.params["arch"]), jax.tree.leaves(s2.params["arch"]))
  )
  assert moved > 1e-4
  # log alpha stays a log-distribution after every step (re-projection in post_update)
  np.testing.assert_allclose(np.exp(np.asarray(s2.params["arch"]["alpha"])).sum(-1), 1.0, rtol=1e-5)
  assert "arch/latency_ms" in m1 and np.isfinite(m1["arch/latency_ms"])


def test_elasticity_runs_after_warmup_epochs_and_meets_target(run):
  s1, s2 = run["states"][1], run["states"][2]
  np.testing.assert_array_equal(s1.extra["widths"], sn.nominal_widths(SUB))  # no scaling yet
  arch = parse_arch(SUB, s2.params["arch"], s2.extra["widths"])
  pred = run["table"].predict(arch)
  # after the scaling at the end of epoch 1 the parsed net fits the target, or every one of its
  # blocks sits at the width floor (nothing left to shrink)
  lo, _ = sn.width_bounds(SUB)
  ops = np.argmax(np.asarray(s2.params["arch"]["alpha"]), -1)
  depths = [int(np.argmax(np.asarray(s2.params["arch"]["beta"][f"s{i}"]))) + 1 for i in range(2)]
  active = [sl.index for sl in SUB.slots if sl.depth < depths[sl.stage]]
  w2 = np.asarray(s2.extra["widths"])
  at_floor = all(w2[b, ops[b]] == lo[b, ops[b]] for b in active)
  assert pred <= run["target"] + 1e-6 or at_floor
  assert not np.array_equal(s2.extra["widths"], s1.extra["widths"])
  # masks follow widths
  for slot in SUB.slots:
    for o, name in enumerate(SUB.ops):
      assert int(s2.extra["masks"][f"b{slot.index}"][name].sum()) == int(
        s2.extra["widths"][slot.index, o]
      )


def test_no_retrace_when_widths_change(run):
  step, state, traces = run["step"], run["state"], run["traces"]
  n0, c0 = traces["n"], step._cache_size()
  w = np.asarray(state.extra["widths"]).copy()
  lo, _ = sn.width_bounds(SUB)
  w[:] = lo
  masks = sn.prefix_masks(SUB, w)
  state = state.replace(extra={**state.extra, "widths": jnp.asarray(w), "masks": masks})
  state = jax.device_put(state, jax.tree.map(lambda x: x.sharding, run["state"]))
  state, m = step(state, to_global_batch(_batch(9), run["mesh"], run["bsh"]))
  jax.block_until_ready(state)
  assert traces["n"] == n0 and step._cache_size() == c0 == 1
  assert np.isfinite(float(m["weights/loss"]))


def test_parse_build_apply_round_trip(run):
  s = run["states"][-1]
  arch = parse_arch(SUB, s.params["arch"], s.extra["widths"])
  alpha = np.asarray(s.params["arch"]["alpha"])
  depth0 = int(np.argmax(np.asarray(s.params["arch"]["beta"]["s0"]))) + 1
  assert len(arch["blocks"]) == depth0 + 1
  for i, b in enumerate(arch["blocks"][:depth0]):
    assert b["op"] == SUB.ops[int(np.argmax(alpha[i]))]
    assert b["mid"] == int(s.extra["widths"][i, int(np.argmax(alpha[i]))])
  again = validate_arch(json.loads(json.dumps(arch)))
  assert again == arch
  net = derived_net(again)
  x = jnp.zeros((2, 8, 8, 1))
  v = net.init(jax.random.PRNGKey(0), x, train=False)
  logits, _ = net.apply(v, x, train=False)
  assert logits.shape == (2, 4)
  assert sum(a.size for a in jax.tree.leaves(v["params"])) == count_params(arch)
  # the table's prediction of the derived net == the dense curve at the chosen widths
  base, curve = run["table"].dense(SUB)
  ops = np.argmax(alpha, -1)
  want = base + sum(
    curve[slot.index, ops[slot.index], s.extra["widths"][slot.index, ops[slot.index]]]
    for slot in SUB.slots
    if slot.depth < (depth0 if slot.stage == 0 else 1)
  )
  assert run["table"].predict(arch) == pytest.approx(float(want), rel=1e-5)


def test_bi_sample_with_two_ops_takes_the_other_op():
  alpha = jax.nn.log_softmax(jnp.asarray([[0.3, -0.3], [2.0, -1.0], [0.0, 0.0]]), -1)
  keys = jax.random.split(jax.random.PRNGKey(2), 2000)
  first, second = jax.vmap(lambda k: bi_sample(alpha, k))(keys)
  first, second = np.asarray(first), np.asarray(second)
  np.testing.assert_array_equal(second, 1 - first)
  p = np.asarray(jax.nn.softmax(alpha, -1))[:, 1]
  np.testing.assert_allclose(first.mean(0), p, atol=0.04)
  with pytest.raises(ValueError, match="log_alpha has 1 op"):
    bi_sample(jnp.zeros((3, 1)), jax.random.PRNGKey(0))


def test_op_subset_shapes_and_indices():
  arch = init_arch(SUB)
  assert arch["alpha"].shape == (SUB.num_blocks, 2)
  np.testing.assert_allclose(np.exp(np.asarray(arch["alpha"])), 0.5)
  lo, hi = sn.width_bounds(SUB)
  # k3_e6: max 8 c_in; k5_e3_se: max 4 c_in (slot 0 has c_in 4)
  assert (hi[0, 0], hi[0, 1]) == (32, 16) and (lo[0, 0], lo[0, 1]) == (16, 8)
  np.testing.assert_array_equal(sn.nominal_widths(SUB)[0], [24, 12])
  masks = sn.prefix_masks(SUB, sn.nominal_widths(SUB))
  assert set(masks["b0"]) == {"k3_e6", "k5_e3_se"}
  base, curve = synthetic_table(SUB).dense(SUB)
  assert curve.shape[:2] == (SUB.num_blocks, 2)
  # index 1 is SUB.ops[1] everywhere: parse, table key, curve (depth 1 in stage 0: slots 0, 2)
  alpha = jnp.asarray([[0.0, 1.0]] * 3)
  a = parse_arch(
    SUB, {"alpha": alpha, "beta": {"s0": jnp.zeros(2), "s1": jnp.zeros(1)}}, sn.nominal_widths(SUB)
  )
  assert [b["op"] for b in a["blocks"]] == ["k5_e3_se"] * 2
  assert [b["mid"] for b in a["blocks"]] == [12, 24]
  table = synthetic_table(SUB)
  want = table.base_ms + float(curve[0, 1, 12]) + float(curve[2, 1, 24])
  assert table.predict(a) == pytest.approx(want, rel=1e-6)
