"""Search-space parsing, FLOP/param counts, masked MBConv == narrow MBConv, derived-net round trip."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.nas import (
  OPS,
  DepthwiseConv,
  MBConv,
  SearchSpace,
  Stage,
  count_flops,
  count_params,
  derived_net,
  load_arch,
  parse_op,
  validate_arch,
)

SMALL = dict(
  image_size=8, in_channels=1, num_classes=3, stem=4, stem_stride=1, stem_block=4, stem_block_se=2,
  head=8,
  blocks=[dict(op="k3_e3", cin=4, cout=6, stride=2, mid=8, act="relu")],
)  # fmt: skip


def test_flops_and_params_hand_count():
  # MACs: stem 8*8*9*1*4; second stem dw 8*8*9*4, SE 2*4*2, project 8*8*4*4;
  # block expand 8*8*4*8, dw (4x4 out) 16*9*8, project 16*8*6; head 16*6*8; fc 8*3.
  flops = 2304 + 2304 + 16 + 1024 + 2048 + 1152 + 768 + 768 + 24
  assert count_flops(SMALL) == flops
  # stem conv 36 + BN 8; second stem dw 36 + BN 8 + SE (8+2 + 8+4) + project 16 + BN 8;
  # block expand 32 + BN 16 + dw 72 + BN 16 + project 48 + BN 12; head 48 + BN 16 + fc 27.
  params = (36 + 8) + (36 + 8 + 22 + 16 + 8) + (32 + 16 + 72 + 16 + 48 + 12) + (48 + 16 + 27)
  assert count_params(SMALL) == params
  v = derived_net(SMALL).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)), train=False)
  assert sum(x.size for x in jax.tree.leaves(v["params"])) == params


def test_flops_with_se_matches_formula():
  arch = dict(SMALL, blocks=[dict(SMALL["blocks"][0], op="k5_e6_se", mid=20)])
  # SE width of an e6 op is 2 * c_in = 8: 2 * 20 * 8 MACs; depthwise k5: 16 * 25 * 20.
  base = 2304 + 2304 + 16 + 1024 + 768 + 24
  assert count_flops(arch) == base + 8 * 8 * 4 * 20 + 16 * 25 * 20 + 2 * 20 * 8 + 16 * 20 * 6
  v = derived_net(arch).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)), train=False)
  assert sum(x.size for x in jax.tree.leaves(v["params"])) == count_params(arch)


def test_masked_block_equals_narrow_block():
  cin, cout, wide, k, se = 4, 6, 16, 5, 4
  big = MBConv(cin, cout, wide, k, 1, se, "swish", "search")
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 6, 6, cin))
  p = big.init(jax.random.PRNGKey(2), x)["params"]
  keep = np.sort(np.random.default_rng(0).choice(wide, 9, replace=False))
  mask = np.zeros(wide, np.float32)
  mask[keep] = 1
  small = MBConv(cin, cout, len(keep), k, 1, se, "swish", "search")
  ps = {
    "expand": {"kernel": p["expand"]["kernel"][..., keep]},
    "dw": {"kernel": p["dw"]["kernel"][..., keep]},
    "se_reduce": {"kernel": p["se_reduce"]["kernel"][:, :, keep], "bias": p["se_reduce"]["bias"]},
    "se_expand": {
      "kernel": p["se_expand"]["kernel"][..., keep],
      "bias": p["se_expand"]["bias"][keep],
    },
    "project": {"kernel": p["project"]["kernel"][:, :, keep]},
  }
  y_big = big.apply({"params": p}, x, jnp.asarray(mask))
  y_small = small.apply({"params": ps}, x)
  np.testing.assert_allclose(np.asarray(y_big), np.asarray(y_small), atol=1e-5, rtol=1e-5)
  # and the mask matters: all-on differs
  y_all = big.apply({"params": p}, x, jnp.ones(wide))
  assert float(jnp.max(jnp.abs(y_all - y_small))) > 1e-2


@pytest.mark.parametrize("k, stride, hw", [(3, 1, 6), (5, 2, 7), (3, 2, 8)])
def test_depthwise_taps_equal_grouped_conv(k, stride, hw):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, hw, hw, 5))
  taps = DepthwiseConv(5, k, stride, "taps")
  v = taps.init(jax.random.PRNGKey(1), x)
  ref = nn.Conv(
    5, (k, k), (stride, stride), ((k // 2, k // 2),) * 2, feature_group_count=5, use_bias=False
  )
  y_ref = ref.apply(v, x)
  for impl in ("taps", "xla"):
    y = DepthwiseConv(5, k, stride, impl).apply(v, x)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), atol=1e-5, rtol=1e-5)


def test_derived_net_json_round_trip(tmp_path):
  arch = dict(
    SMALL,
    blocks=SMALL["blocks"] + [dict(op="k3_e6_se", cin=6, cout=6, stride=1, mid=30, act="swish")],
  )
  path = tmp_path / "arch.json"
  path.write_text(json.dumps(arch))
  again = load_arch(str(path))
  assert again == validate_arch(arch)
  net1, net2 = derived_net(arch), derived_net(again)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 1))
  v = net1.init(jax.random.PRNGKey(3), x, train=False)
  out1, _ = net1.apply(v, x, train=False)
  out2, _ = net2.apply(v, x, train=False)
  assert out1.shape == (2, 3)
  np.testing.assert_allclose(np.asarray(out1), np.asarray(out2), rtol=1e-6, atol=1e-6)
  # the residual block (6 -> 6, stride 1) at mid 30 has the e6 SE width 2 * 6 = 12
  assert v["params"]["block1"]["se_reduce"]["kernel"].shape == (1, 1, 30, 12)


@pytest.mark.parametrize(
  "mutate, match",
  [
    (
      lambda a: a["blocks"][0].update(op="k7_e6"),
      r"arch.blocks\[0\].op='k7_e6' is not a TF-NAS op",
    ),
    (
      lambda a: a["blocks"][0].update(cin=5),
      r"arch.blocks\[0\].cin=5 but the previous layer outputs 4",
    ),
    (lambda a: a["blocks"][0].pop("mid"), r"arch.blocks\[0\] is missing key\(s\) \['mid'\]"),
    (lambda a: a["blocks"][0].update(stride=3), r"stride=3 must be 1 or 2"),
    (lambda a: a.pop("head"), r"missing key\(s\) \['head'\]"),
    (lambda a: a.update(blocks=[]), r"arch.blocks=\[\] must be a non-empty list"),
    (lambda a: a.update(stem=0), r"arch.stem=0 must be a positive int"),
  ],
)
def test_malformed_arch(mutate, match):
  arch = json.loads(json.dumps(SMALL))
  mutate(arch)
  with pytest.raises(ValueError, match=match):
    validate_arch(arch)


def test_bad_inputs_named():
  with pytest.raises(TypeError, match="must be a dict"):
    validate_arch([1, 2])
  with pytest.raises(ValueError, match="valid ops: k3_e3"):
    parse_op("skip")
  with pytest.raises(ValueError, match="width_floor"):
    SearchSpace(width_floor=0.0)
  with pytest.raises(ValueError, match=r"stages\[0\]"):
    SearchSpace(stages=(Stage(8, 3, 1, "relu"),))


def test_load_arch_bad_json(tmp_path):
  p = tmp_path / "bad.json"
  p.write_text("{not json")
  with pytest.raises(ValueError, match="bad.json: not valid JSON"):
    load_arch(str(p))


def test_paper_space_layout():
  sp = SearchSpace()
  assert sp.num_blocks == 2 + 3 + 4 + 4 + 4 + 1
  s = sp.slots
  assert (s[0].cin, s[0].cout, s[0].stride, s[0].hw) == (16, 24, 2, 112)
  assert (s[1].cin, s[1].stride, s[1].hw) == (24, 1, 56)
  assert s[-1].cin == 192 and s[-1].cout == 320 and s[-1].hw == 7
  assert sp.width_bounds(s[0], parse_op("k3_e6")) == (64, 128)  # [max // 2, max], max = 8 c_in
  assert sp.width_bounds(s[0], parse_op("k5_e3_se")) == (32, 64)


def test_ops_subset_validation_names_the_key():
  sp = SearchSpace(ops=["k5_e6_se", "k3_e3"])  # any order; a list becomes a tuple
  assert sp.ops == ("k5_e6_se", "k3_e3") and sp.to_dict()["ops"] == ["k5_e6_se", "k3_e3"]
  assert SearchSpace().ops == OPS
  with pytest.raises(ValueError, match=r"SearchSpace.ops=\('k3_e3',\) has 1 op\(s\); bi-sampling"):
    SearchSpace(ops=("k3_e3",))
  with pytest.raises(ValueError, match=r"SearchSpace.ops\[1\]='k7_e3' is not a TF-NAS op"):
    SearchSpace(ops=("k3_e3", "k7_e3"))
  with pytest.raises(ValueError, match=r"SearchSpace.ops=\('k3_e3', 'k3_e3'\) repeats an op"):
    SearchSpace(ops=("k3_e3", "k3_e3"))
  with pytest.raises(ValueError, match=r"space.ops='k3_e3' must be a sequence of op names"):
    SearchSpace.from_config(dict(SearchSpace().to_dict(), ops="k3_e3"))
  d = dict(SearchSpace().to_dict(), ops=["k3_e3", "k5_e3"])
  assert SearchSpace.from_config(d).ops == ("k3_e3", "k5_e3")


def test_ops_subset_table_and_random_archs():
  from vision_jax.nas.latency import random_archs, table_requests

  sp = SearchSpace(
    image_size=8, in_channels=1, num_classes=3, stem=4, stem_stride=1, stem_block=4,
    stem_block_se=2, stages=(Stage(8, 2, 2, "relu"),), head=8, ops=("k3_e3", "k3_e6"),
  )  # fmt: skip
  req = table_requests(sp, 2)
  # k3 without SE: e3 and e6 share one key per slot; its grid spans e3's floor to e6's max
  assert len(req["blocks"]) == 2
  assert all(e["spec"]["kernel"] == 3 and e["spec"]["se"] == 0 for e in req["blocks"].values())
  assert req["blocks"]["MBConv_8_4_0_8_k3_s2_relu"]["widths"] == [8, 32]
  ops = {b["op"] for a in random_archs(sp, 20, seed=0) for b in a["blocks"]}
  assert ops == {"k3_e3", "k3_e6"}


def test_fast_init_draws_flax_default_distributions():
  from vision_jax.nas.layers import fast_init

  arch = dict(
    SMALL,
    blocks=SMALL["blocks"] + [dict(op="k5_e6_se", cin=6, cout=6, stride=1, mid=64, act="swish")],
  )
  net = derived_net(arch)
  x = jnp.zeros((2, 8, 8, 1))
  # flax's own init, traced only (shapes and dtypes; running it compiles every primitive)
  ref = jax.eval_shape(lambda: nn.Module.init(net, jax.random.PRNGKey(0), x, train=False))
  init = jax.jit(lambda r: net.init(r, x, train=False))  # DerivedNet.init is fast_init
  got = init(jax.random.PRNGKey(0))
  assert jax.tree.structure(got) == jax.tree.structure(ref)
  z = []
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(got)[0], jax.tree.leaves(ref)):
    assert a.shape == b.shape and a.dtype == b.dtype, path
    name = path[-1].key
    if name == "kernel":  # LeCun truncated normal: z = w * sqrt(fan_in) in [-2.27, 2.27]
      z.append(np.asarray(a).ravel() * np.sqrt(np.prod(a.shape[:-1])))
    else:  # flax's constants: nn.Conv / nn.Dense bias and BN bias, mean 0; BN scale, var 1
      np.testing.assert_array_equal(np.asarray(a), 1.0 if name in ("scale", "var") else 0.0)
  z = np.concatenate(z)
  assert z.size > 1000 and np.abs(z).max() <= 2.0 / 0.87962566103423978 + 1e-5
  assert abs(z.std() - 1.0) < 0.05 and abs(z.mean()) < 0.05
  # other keys give other weights; a flax-only argument falls back to nn.Module.init
  other = init(jax.random.PRNGKey(1))
  assert not np.array_equal(
    other["params"]["block1"]["expand"]["kernel"], got["params"]["block1"]["expand"]["kernel"]
  )
  v = jax.eval_shape(
    lambda: net.init(jax.random.PRNGKey(0), x, train=False, mutable=["params", "batch_stats"])
  )
  assert jax.tree.structure(v) == jax.tree.structure(ref)
  with pytest.raises(ValueError, match=r"no initialiser rule for variable \['params'\]\['w'\]"):

    class Odd(nn.Module):
      @nn.compact
      def __call__(self, x, train=False):
        return x * self.param("w", nn.initializers.ones, (1, 1, 1, 1))

    fast_init(Odd(), jax.random.PRNGKey(0), x)


@pytest.mark.parametrize(
  "key, value, match",
  [
    ("space.ops", "('k3_e3',)", r"--config.space.ops=\('k3_e3',\) is invalid: expected at least 2"),
    ("space.ops", "('k3_e3', 'k9_e3')", r"--config.space.ops=.*'k9_e3' is not a TF-NAS op"),
    ("retrain.dw_impl", "conv", r"--config.retrain.dw_impl='conv' is invalid: expected one of"),
  ],
)
def test_tf_nas_config_rejects_bad_ops_and_dw_impl(key, value, match):
  from vision_jax.utils import load_config
  from vision_jax.utils.config import ConfigError

  with pytest.raises(ConfigError, match=match):
    load_config("tf_nas", "smoke", {key: value})
