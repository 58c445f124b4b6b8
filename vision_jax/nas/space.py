"""TF-NAS search space: the MBConv skeleton, the candidate ops, width bounds, parsed configs.

The supernet (EfficientNet-B0-like, as in the official code) is

    stem 3x3 conv (BN, ReLU) -> "second stem" MBConv (no expansion, k3, SE) -> S searchable stages
    -> 1x1 head conv (BN, Swish) -> global average pool -> dropout -> FC.

Stage ``s`` has ``D_s`` blocks; its first block changes channels (``c_{s-1} -> c_s``) and applies
the stage stride, later blocks map ``c_s -> c_s`` with stride 1. Every block chooses one of the
space's candidate ops (``SearchSpace.ops``; by default all 8)

    MBConv(kernel k in {3, 5}, expansion e in {3, 6}, SE on/off)

whose mid (expanded) width ``mc`` is searched inside ``[floor * max, max]`` with
``max = 4 c_in`` (e3) or ``8 c_in`` (e6), starting at the nominal ``e c_in``. The SE bottleneck
is ``c_in`` (e3) or ``2 c_in`` (e6) wide.

A *parsed* architecture is a plain JSON-able dict (see :func:`validate_arch`); the derived net,
the FLOP/parameter counts and the latency prediction all read it.

References:
  Hu, Wu, He. "TF-NAS: Rethinking Three Search Freedoms of Latency-Constrained Differentiable
  Neural Architecture Search." ECCV 2020. arXiv:2008.05314. Official code: AberHu/TF-NAS.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

OPS: tuple[str, ...] = (
  "k3_e3",
  "k3_e3_se",
  "k3_e6",
  "k3_e6_se",
  "k5_e3",
  "k5_e3_se",
  "k5_e6",
  "k5_e6_se",
)
ACTIVATIONS = ("relu", "swish")


@dataclasses.dataclass(frozen=True)
class OpSpec:
  """One candidate op: kernel, expansion and whether it has squeeze-excitation."""

  kernel: int
  expansion: int
  se: bool

  @property
  def name(self) -> str:
    return f"k{self.kernel}_e{self.expansion}" + ("_se" if self.se else "")

  def max_mid(self, cin: int) -> int:
    """Largest searchable mid width: 4/3 of nominal (``4 c_in`` for e3, ``8 c_in`` for e6)."""
    return (4 if self.expansion == 3 else 8) * cin

  def nominal_mid(self, cin: int) -> int:
    return self.expansion * cin

  def se_width(self, cin: int) -> int:
    """SE bottleneck: ``c_in`` for e3 ops, ``2 c_in`` for e6 ops (0 without SE)."""
    return (cin * self.expansion // 3) if self.se else 0


def parse_op(name: Any, *, where: str = "op") -> OpSpec:
  """``"k5_e6_se"`` -> ``OpSpec(5, 6, True)``.

  Raises:
    ValueError: ``name`` is not one of :data:`OPS` (the message lists them and says ``where``).
  """
  if name not in OPS:
    raise ValueError(f"{where}={name!r} is not a TF-NAS op; valid ops: {', '.join(OPS)}")
  parts = name.split("_")
  return OpSpec(int(parts[0][1:]), int(parts[1][1:]), len(parts) == 3)


@dataclasses.dataclass(frozen=True)
class Stage:
  """A searchable stage: output channels, stride of its first block, max depth, activation."""

  channels: int
  stride: int
  max_blocks: int
  act: str


@dataclasses.dataclass(frozen=True)
class Slot:
  """One searchable block position of the supernet (static shape information)."""

  index: int  # global block index
  stage: int
  depth: int  # position inside its stage, 0-based
  cin: int
  cout: int
  stride: int
  act: str
  hw: int  # input spatial size


@dataclasses.dataclass(frozen=True)
class SearchSpace:
  """The supernet skeleton.

  Attributes:
    image_size: input height = width.
    in_channels: input channels (3 for RGB, 1 for Fashion-MNIST).
    num_classes: classifier outputs.
    stem: stem conv channels.
    stem_stride: stem conv stride.
    stem_block: the second stem's output channels (an MBConv without expansion, k3, SE).
    stem_block_se: the second stem's SE width.
    stages: the searchable stages.
    head: 1x1 head conv channels.
    width_floor: the smallest searchable mid width is ``int(width_floor * max)``.
      Choice: the code's bound is ``max // 2`` (0.5); a lower floor reaches lower targets
      (official issue #4), so it is a config key.
    dropout: dropout before the FC (retraining only).
    ops: the candidate ops of every block, a subset of :data:`OPS` in any order (default: the
      paper's 8). Op index ``o`` of ``alpha``, the widths and the latency curve is ``ops[o]``.
      Bi-sampling draws a second op other than the first, so at least 2 are needed.
      Choice: a smaller set is a config key (``space.ops``) so that a smoke run compiles a
      supernet of 2 ops instead of 8; the paper's search uses all 8.
  """

  image_size: int = 224
  in_channels: int = 3
  num_classes: int = 1000
  stem: int = 32
  stem_stride: int = 2
  stem_block: int = 16
  stem_block_se: int = 8
  stages: tuple[Stage, ...] = (
    Stage(24, 2, 2, "relu"),
    Stage(40, 2, 3, "swish"),
    Stage(80, 2, 4, "swish"),
    Stage(112, 1, 4, "swish"),
    Stage(192, 2, 4, "swish"),
    Stage(320, 1, 1, "swish"),
  )
  head: int = 1280
  width_floor: float = 0.5
  dropout: float = 0.0
  ops: tuple[str, ...] = OPS

  def __post_init__(self):
    stages = tuple(s if isinstance(s, Stage) else Stage(*s) for s in self.stages)
    object.__setattr__(self, "stages", stages)
    for name in ("image_size", "in_channels", "num_classes", "stem", "stem_block", "head"):
      v = getattr(self, name)
      if not isinstance(v, int) or v < 1:
        raise ValueError(f"SearchSpace.{name}={v!r} must be a positive int")
    if not stages:
      raise ValueError("SearchSpace.stages is empty; a supernet needs at least one stage")
    for i, s in enumerate(stages):
      if s.stride not in (1, 2) or s.max_blocks < 1 or s.channels < 1 or s.act not in ACTIVATIONS:
        raise ValueError(
          f"SearchSpace.stages[{i}]={s}: need stride in (1, 2), max_blocks >= 1, channels >= 1, "
          f"act in {ACTIVATIONS}"
        )
    if not 0.0 < float(self.width_floor) <= 1.0:
      raise ValueError(f"SearchSpace.width_floor={self.width_floor!r} must be in (0, 1]")
    object.__setattr__(self, "ops", check_ops(self.ops, where="SearchSpace.ops"))

  @classmethod
  def from_config(cls, cfg: Mapping[str, Any]) -> SearchSpace:
    """From a config section (``stages`` as ``((channels, stride, max_blocks, act), ...)``)."""
    d = dict(cfg)
    d["stages"] = tuple(Stage(int(c), int(s), int(n), str(a)) for c, s, n, a in d["stages"])
    if "ops" in d:
      d["ops"] = check_ops(d["ops"], where="space.ops")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - fields)
    if unknown:
      raise ValueError(f"unknown search-space key(s) {unknown}; valid: {sorted(fields)}")
    return cls(**d)

  @property
  def slots(self) -> tuple[Slot, ...]:
    out, cin, hw = [], self.stem_block, _out_hw(self.image_size, self.stem_stride)
    for si, st in enumerate(self.stages):
      for d in range(st.max_blocks):
        stride = st.stride if d == 0 else 1
        out.append(Slot(len(out), si, d, cin, st.channels, stride, st.act, hw))
        cin, hw = st.channels, _out_hw(hw, stride)
    return tuple(out)

  @property
  def num_blocks(self) -> int:
    return sum(s.max_blocks for s in self.stages)

  def width_bounds(self, slot: Slot, op: OpSpec) -> tuple[int, int]:
    """``(lo, hi)`` of the searchable mid width of ``op`` at ``slot``."""
    hi = op.max_mid(slot.cin)
    return max(1, int(self.width_floor * hi)), hi

  @property
  def op_specs(self) -> tuple[OpSpec, ...]:
    return tuple(parse_op(n) for n in self.ops)

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["stages"] = [list(dataclasses.astuple(s)) for s in self.stages]
    d["ops"] = list(self.ops)
    return d


def check_ops(ops: Any, *, where: str = "ops") -> tuple[str, ...]:
  """``ops`` as a tuple of distinct op names (at least 2: bi-sampling's second path differs from
  the first).

  Raises:
    ValueError: not a sequence of names, an unknown or repeated name, or fewer than 2 ops; the
      message names ``where`` and the value.
  """
  if isinstance(ops, str) or not isinstance(ops, Sequence):
    raise ValueError(f"{where}={ops!r} must be a sequence of op names from {', '.join(OPS)}")
  ops = tuple(ops)
  for i, name in enumerate(ops):
    parse_op(name, where=f"{where}[{i}]")
  if len(set(ops)) != len(ops):
    raise ValueError(f"{where}={ops!r} repeats an op; each candidate op may appear once")
  if len(ops) < 2:
    raise ValueError(
      f"{where}={ops!r} has {len(ops)} op(s); bi-sampling needs at least 2 (its second path is "
      "an op other than the first)"
    )
  return ops


def _out_hw(hw: int, stride: int) -> int:
  return -(-hw // stride)


def paper_space(num_classes: int = 100) -> SearchSpace:
  """The official code's ImageNet supernet (224 px, 6 stages, 1280-wide head)."""
  return SearchSpace(num_classes=num_classes)


# ----------------------------------------------------------------------------- parsed configs
_BLOCK_KEYS = ("op", "cin", "cout", "stride", "mid", "act")
_TOP_KEYS = ("image_size", "in_channels", "num_classes", "stem", "stem_stride", "stem_block",
             "stem_block_se", "head", "blocks")  # fmt: skip


def arch_from_choices(
  space: SearchSpace, ops: Sequence[int], depths: Sequence[int], widths: Sequence[Sequence[int]]
) -> dict[str, Any]:
  """The parsed architecture: op ``ops[b]`` at mid width ``widths[b][ops[b]]`` for the first
  ``depths[s]`` blocks of stage ``s`` (blocks beyond a stage's depth are deleted).

  Args:
    space: the search space.
    ops: op index per slot (into ``space.ops``), ``[num_blocks]``.
    depths: chosen depth per stage, ``1 <= depths[s] <= max_blocks``.
    widths: mid width per slot and op, ``[num_blocks][len(space.ops)]``.
  """
  if len(depths) != len(space.stages):
    raise ValueError(f"depths has {len(depths)} entries; the space has {len(space.stages)} stages")
  blocks = []
  for slot in space.slots:
    d = int(depths[slot.stage])
    if not 1 <= d <= space.stages[slot.stage].max_blocks:
      raise ValueError(f"depths[{slot.stage}]={d} outside 1..{space.stages[slot.stage].max_blocks}")
    if slot.depth >= d:
      continue
    o = int(ops[slot.index])
    blocks.append(
      dict(
        op=space.ops[o],
        cin=slot.cin,
        cout=slot.cout,
        stride=slot.stride,
        mid=int(widths[slot.index][o]),
        act=slot.act,
      )
    )
  return dict(
    image_size=space.image_size,
    in_channels=space.in_channels,
    num_classes=space.num_classes,
    stem=space.stem,
    stem_stride=space.stem_stride,
    stem_block=space.stem_block,
    stem_block_se=space.stem_block_se,
    head=space.head,
    blocks=blocks,
  )


def validate_arch(arch: Any, *, where: str = "arch") -> dict[str, Any]:
  """Checks a parsed architecture and returns it.

  Format::

    {"image_size", "in_channels", "num_classes", "stem", "stem_stride", "stem_block",
     "stem_block_se", "head": ints,
     "blocks": [{"op": one of OPS, "cin", "cout", "stride" (1|2), "mid": ints,
                 "act": "relu"|"swish"}, ...]}

  with ``blocks[0].cin == stem_block`` and ``blocks[i].cin == blocks[i-1].cout``.

  Raises:
    TypeError: ``arch`` is not a mapping, or a field has the wrong type.
    ValueError: a missing key, an unknown op, a non-positive size, or a broken channel chain; the
      message names the key path (``arch.blocks[3].op``).
  """
  if not isinstance(arch, Mapping):
    raise TypeError(
      f"{where} must be a dict (a parsed TF-NAS architecture), got {type(arch).__name__}"
    )
  missing = [k for k in _TOP_KEYS if k not in arch]
  if missing:
    raise ValueError(f"{where} is missing key(s) {missing}; a parsed config has {list(_TOP_KEYS)}")
  for k in _TOP_KEYS[:-1]:
    v = arch[k]
    if not isinstance(v, int) or isinstance(v, bool) or v < (0 if k == "stem_block_se" else 1):
      raise ValueError(f"{where}.{k}={v!r} must be a positive int")
  blocks = arch["blocks"]
  if not isinstance(blocks, Sequence) or isinstance(blocks, str) or not blocks:
    raise ValueError(f"{where}.blocks={blocks!r} must be a non-empty list of block dicts")
  cin = arch["stem_block"]
  for i, b in enumerate(blocks):
    at = f"{where}.blocks[{i}]"
    if not isinstance(b, Mapping):
      raise TypeError(f"{at} must be a dict, got {type(b).__name__}")
    miss = [k for k in _BLOCK_KEYS if k not in b]
    if miss:
      raise ValueError(f"{at} is missing key(s) {miss}; a block has {list(_BLOCK_KEYS)}")
    parse_op(b["op"], where=f"{at}.op")
    for k in ("cin", "cout", "mid"):
      if not isinstance(b[k], int) or isinstance(b[k], bool) or b[k] < 1:
        raise ValueError(f"{at}.{k}={b[k]!r} must be a positive int")
    if b["stride"] not in (1, 2):
      raise ValueError(f"{at}.stride={b['stride']!r} must be 1 or 2")
    if b["act"] not in ACTIVATIONS:
      raise ValueError(f"{at}.act={b['act']!r} must be one of {ACTIVATIONS}")
    if b["cin"] != cin:
      raise ValueError(f"{at}.cin={b['cin']} but the previous layer outputs {cin} channels")
    cin = b["cout"]
  return dict(arch)


def load_arch(path: str) -> dict[str, Any]:
  """Reads and validates a parsed architecture JSON file (errors name the file)."""
  with open(path) as f:
    try:
      arch = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not valid JSON ({e})") from None
  return validate_arch(arch, where=path)


# ----------------------------------------------------------------------------- counting
def count_flops(arch: Mapping[str, Any]) -> int:
  """Multiply-accumulates of one image through the derived net (convs + SE + FC; BN, activations
  and pooling not counted), the "FLOPs" convention of MobileNet/EfficientNet/TF-NAS tables.

  Per MBConv at input ``H x W`` with output ``H' x W'``: expand ``H W c_in mc`` + depthwise
  ``H' W' k^2 mc`` + SE ``2 mc se`` + project ``H' W' mc c_out``.
  """
  a = validate_arch(arch)
  hw = _out_hw(a["image_size"], a["stem_stride"])
  f = hw * hw * 9 * a["in_channels"] * a["stem"]
  # second stem: depthwise k3 stride 1, SE, project
  f += hw * hw * 9 * a["stem"] + 2 * a["stem"] * a["stem_block_se"]
  f += hw * hw * a["stem"] * a["stem_block"]
  for b in a["blocks"]:
    op = parse_op(b["op"])
    out = _out_hw(hw, b["stride"])
    f += hw * hw * b["cin"] * b["mid"] + out * out * op.kernel**2 * b["mid"]
    f += 2 * b["mid"] * op.se_width(b["cin"])
    f += out * out * b["mid"] * b["cout"]
    hw = out
  f += hw * hw * a["blocks"][-1]["cout"] * a["head"] + a["head"] * a["num_classes"]
  return int(f)


def count_params(arch: Mapping[str, Any]) -> int:
  """Trainable parameters of the derived net: conv kernels (no bias: each is followed by BN),
  BN scale + bias, SE convs with biases, FC weight + bias."""
  a = validate_arch(arch)
  p = 9 * a["in_channels"] * a["stem"] + 2 * a["stem"]
  s, se = a["stem"], a["stem_block_se"]
  p += 9 * s + 2 * s + (s * se + se + se * s + s) + s * a["stem_block"] + 2 * a["stem_block"]
  for b in a["blocks"]:
    op = parse_op(b["op"])
    m, ci, co, sw = b["mid"], b["cin"], b["cout"], op.se_width(b["cin"])
    p += ci * m + 2 * m + op.kernel**2 * m + 2 * m + co * m + 2 * co
    if sw:
      p += m * sw + sw + sw * m + m
  last = a["blocks"][-1]["cout"]
  p += last * a["head"] + 2 * a["head"] + a["head"] * a["num_classes"] + a["num_classes"]
  return int(p)
