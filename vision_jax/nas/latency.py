"""Latency lookup table measured with JAX on the device the net will run on.

Every distinct MBConv configuration of the supernet (input size, ``c_in``, SE width, ``c_out``,
kernel, stride, activation: the code's key ``MBInvertedResBlock_{hw}_{cin}_{se}_{cout}_k{k}_s{s}_
{act}``) is built as the derived block (affine BN, inference mode) at a grid of mid widths, plus
the stem (conv + second stem) and the head (1x1 conv + pool + FC). Each is jitted, compiled,
warmed up, then timed with ``block_until_ready`` after every call, in ``rounds`` rounds whose
order is shuffled per round (interleaved: background load hits every entry alike); an entry is
the median over rounds, its spread the interquartile range over the median.

A jitted call has a fixed dispatch cost ``d`` (timed on a trivial function) that a whole net pays
once, so entries are stored net of it and

.. math::
   \\widehat{\\mathrm{LAT}} = (t_\\mathrm{stem} - d) + (t_\\mathrm{head} - d) + d
     + \\sum_b (t_b(mc_b) - d),

with ``t_b`` linear between measured widths (the code's table enumerates every width; its
issue #2 suggests a grid plus interpolation).

Choice: batch 1 with single-threaded XLA on CPU (``--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1``, the code's ``OMP/MKL threads = 1``), measured in a fresh
subprocess so that the caller's device flags (e.g. 8 fake test devices) do not leak in; on a GPU
the code's table is per batch of 32 (``batch_size`` is stored with every table).

Calibration. A whole net is one XLA program, timed as one call; the table sums blocks timed one
call each. Where the two disagree systematically (on the 2-core CPU of docs/tf_nas.md whole
nets ran 1.3-1.6x the per-block sum), :func:`calibrate_table` times ``K`` random whole nets of
the space with the same protocol and scales every entry by one factor,

.. math::
   s = \\operatorname{median}_k \\; t_\\mathrm{net}(a_k) / \\widehat{\\mathrm{LAT}}(a_k),
   \\qquad \\widehat{\\mathrm{LAT}}_s = s \\cdot \\widehat{\\mathrm{LAT}},

so the differentiable latency stays a sum over blocks (``scale`` is stored with the table).
Choice: one multiplicative factor (not an affine fit): with a handful of calibration nets it has
the fewest free parameters, and it keeps ``LAT(alpha, beta)`` linear in the table. The code uses
the plain sum (``scale = 1``); the check of the table's error uses other random nets than the
calibration.

Tables are cached per device identity (platform, device kind, CPU model) and refuse to load on
another device.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vision_jax.nas.space import SearchSpace, Slot, parse_op, validate_arch

SINGLE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def device_identity() -> str:
  """``platform:device_kind`` of JAX's default device, plus the CPU model on CPU."""
  import jax

  d = jax.devices()[0]
  ident = f"{d.platform}:{d.device_kind}"
  if d.platform == "cpu":
    model = ""
    try:
      with open("/proc/cpuinfo") as f:
        for line in f:
          if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    except OSError:
      pass
    ident += f":{model or 'unknown-cpu'}"
  return ident


def block_key(hw: int, cin: int, se: int, cout: int, kernel: int, stride: int, act: str) -> str:
  return f"MBConv_{hw}_{cin}_{se}_{cout}_k{kernel}_s{stride}_{act}"


def slot_key(slot: Slot, op_name: str) -> str:
  op = parse_op(op_name)
  return block_key(
    slot.hw, slot.cin, op.se_width(slot.cin), slot.cout, op.kernel, slot.stride, slot.act
  )


def _width_grid(lo: int, hi: int, n: int) -> list[int]:
  return sorted({int(round(v)) for v in np.linspace(lo, hi, max(n, 2))})


def table_requests(space: SearchSpace, num_widths: int = 4) -> dict[str, Any]:
  """What to time for ``space``: ``{"blocks": {key: {spec, widths}}, "stem": spec, "head": spec}``.

  The width grid of a key spans every op that maps to it (e3 and e6 without SE share a key).
  """
  blocks: dict[str, Any] = {}
  for slot in space.slots:
    for name, op in zip(space.ops, space.op_specs):
      key = slot_key(slot, name)
      lo, hi = space.width_bounds(slot, op)
      e = blocks.setdefault(
        key,
        dict(
          spec=dict(
            hw=slot.hw,
            cin=slot.cin,
            cout=slot.cout,
            kernel=op.kernel,
            stride=slot.stride,
            se=op.se_width(slot.cin),
            act=slot.act,
          ),  # fmt: skip
          lo=lo,
          hi=hi,
        ),
      )
      e["lo"], e["hi"] = min(e["lo"], lo), max(e["hi"], hi)
  for e in blocks.values():
    e["widths"] = _width_grid(e.pop("lo"), e.pop("hi"), num_widths)
  last = space.stages[-1].channels
  hw = -(-space.slots[-1].hw // space.slots[-1].stride)
  return dict(
    blocks=blocks,
    stem=dict(
      image_size=space.image_size,
      in_channels=space.in_channels,
      stem=space.stem,
      stem_stride=space.stem_stride,
      stem_block=space.stem_block,
      stem_block_se=space.stem_block_se,
    ),  # fmt: skip
    head=dict(hw=hw, cin=last, head=space.head, num_classes=space.num_classes),
  )


@dataclasses.dataclass
class LatencyTable:
  """A measured table (ms per batch of ``batch_size``).

  Attributes:
    device: :func:`device_identity` of the device measured on.
    batch_size: images per timed call.
    threads: ``"single"`` (single-threaded XLA CPU) or ``"default"``.
    dispatch_ms: median time of a trivial jitted call.
    stem_ms, head_ms: raw medians of the stem and head units.
    blocks: ``{key: {"widths": [...], "ms": [...], "spread": [...]}}`` raw medians.
    spread: ``{"stem", "head", "dispatch"}`` relative IQRs.
    meta: rounds, warm-up, date, seconds taken.
    scale: factor applied to every prediction (1 = the plain per-block sum; see
      :func:`calibrate_table`).
  """

  device: str
  batch_size: int
  threads: str
  dispatch_ms: float
  stem_ms: float
  head_ms: float
  blocks: dict[str, dict[str, list[float]]]
  spread: dict[str, float]
  meta: dict[str, Any] = dataclasses.field(default_factory=dict)
  scale: float = 1.0

  # --------------------------------------------------------------- prediction
  @property
  def base_ms(self) -> float:
    """Stem + head of the whole-net call: ``s * ((t_stem - d) + (t_head - d) + d)``."""
    return self.scale * (self.stem_ms + self.head_ms - self.dispatch_ms)

  def block_ms(self, key: str, mid: int, *, where: str = "block") -> float:
    """Interpolated latency (net of dispatch) of ``key`` at mid width ``mid``.

    Raises:
      ValueError: ``key`` is not in the table or ``mid`` is outside its measured widths.
    """
    if key not in self.blocks:
      near = sorted(self.blocks)[:4]
      raise ValueError(
        f"{where}: no latency-table entry for {key!r} (the table covers {len(self.blocks)} "
        f"configurations, e.g. {near}); measure a table for this search space"
      )
    e = self.blocks[key]
    w = e["widths"]
    if not w[0] <= mid <= w[-1]:
      raise ValueError(
        f"{where}: mid width {mid} of {key!r} is outside the table's measured widths "
        f"[{w[0]}, {w[-1]}]"
      )
    return self.scale * (float(np.interp(mid, w, e["ms"])) - self.dispatch_ms)

  def with_scale(self, scale: float, **meta) -> LatencyTable:
    """A copy with ``scale`` (and ``meta`` entries added); the raw entries are unchanged."""
    if not (isinstance(scale, (int, float)) and np.isfinite(scale) and scale > 0):
      raise ValueError(f"LatencyTable.with_scale: scale={scale!r} must be a finite number > 0")
    return dataclasses.replace(self, scale=float(scale), meta={**self.meta, **meta})

  def predict(self, arch: Mapping[str, Any]) -> float:
    """Predicted latency (ms) of a parsed architecture's derived net."""
    a = validate_arch(arch)
    total, hw = self.base_ms, -(-a["image_size"] // a["stem_stride"])
    for i, b in enumerate(a["blocks"]):
      op = parse_op(b["op"])
      key = block_key(
        hw, b["cin"], op.se_width(b["cin"]), b["cout"], op.kernel, b["stride"], b["act"]
      )
      total += self.block_ms(key, b["mid"], where=f"arch.blocks[{i}]")
      hw = -(-hw // b["stride"])
    return total

  def dense(self, space: SearchSpace) -> tuple[float, np.ndarray]:
    """``(base, curve)`` with ``curve[b, o, w]`` the latency of op ``space.ops[o]`` at slot ``b``
    and mid width ``w`` for every ``w`` in its bounds (0 elsewhere), float32
    ``[num_blocks, len(space.ops), W + 1]``."""
    slots = space.slots
    wmax = max(op.max_mid(s.cin) for s in slots for op in space.op_specs)
    curve = np.zeros((len(slots), len(space.ops), wmax + 1), np.float32)
    for s in slots:
      for o, (name, op) in enumerate(zip(space.ops, space.op_specs)):
        key = slot_key(s, name)
        lo, hi = space.width_bounds(s, op)
        self.block_ms(key, lo, where=f"slot {s.index} op {name}")
        self.block_ms(key, hi, where=f"slot {s.index} op {name}")
        e = self.blocks[key]
        ws = np.arange(lo, hi + 1)
        curve[s.index, o, lo : hi + 1] = self.scale * (
          np.interp(ws, e["widths"], e["ms"]) - self.dispatch_ms
        )
    return self.base_ms, curve

  def reachable(self, space: SearchSpace) -> tuple[float, float]:
    """``(smallest, largest)`` predicted latency over the space: every stage at depth 1 with the
    cheapest op at its cheapest width, resp. every block at the costliest op and width."""
    base, curve = self.dense(space)
    lo_tot = hi_tot = base
    for s in space.slots:
      vals = []
      for o, op in enumerate(space.op_specs):
        lo, hi = space.width_bounds(s, op)
        vals.append(curve[s.index, o, lo : hi + 1])
      cheapest = min(float(v.min()) for v in vals)
      costliest = max(float(v.max()) for v in vals)
      hi_tot += costliest
      if s.depth == 0:
        lo_tot += cheapest
    return float(lo_tot), float(hi_tot)

  def check_target(self, space: SearchSpace, target_ms: float, *, where: str = "target_ms") -> None:
    """Raises ValueError if ``target_ms`` is outside :meth:`reachable` (naming both ends)."""
    lo, hi = self.reachable(space)
    if not np.isfinite(target_ms) or target_ms < lo:
      raise ValueError(
        f"{where}={target_ms!r} ms is below the smallest reachable net of this search space: "
        f"{lo:.4f} ms predicted (depth 1 everywhere, cheapest op at the width floor "
        f"{space.width_floor}); raise the target or lower width_floor"
      )
    if target_ms > hi:
      raise ValueError(
        f"{where}={target_ms!r} ms is above the largest net of this search space: {hi:.4f} ms "
        f"predicted (every block, costliest op at full width); the constraint would never bind"
      )

  # --------------------------------------------------------------- persistence
  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def save(self, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(self.to_dict(), f, indent=1)
    os.replace(tmp, path)

  @classmethod
  def load(cls, path: str, *, device: str | None = None) -> LatencyTable:
    """Reads a table; ``device`` (default: this process's :func:`device_identity`) must match.

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: malformed file, or measured on another device kind.
    """
    if not os.path.exists(path):
      raise FileNotFoundError(f"latency table {path!r} does not exist")
    with open(path) as f:
      try:
        d = json.load(f)
      except json.JSONDecodeError as e:
        raise ValueError(f"latency table {path}: not valid JSON ({e})") from None
    fields = [f.name for f in dataclasses.fields(cls)]
    missing = [k for k in fields if k not in d and k not in ("meta", "scale")]
    if missing:
      raise ValueError(f"latency table {path}: missing field(s) {missing}")
    table = cls(**{k: d[k] for k in fields if k in d})
    want = device_identity() if device is None else device
    if table.device != want:
      raise ValueError(
        f"latency table {path} was measured on {table.device!r} but this process runs on "
        f"{want!r}; a latency table only holds for its own device kind: measure one here "
        f"(measure_table) or point lut.cache_dir elsewhere"
      )
    return table


# ----------------------------------------------------------------------------- timing
def _timing_variables(module, x, seed: int = 0):
  """Variables of ``module`` for timing, built without compiling anything.

  ``module.init`` run eagerly compiles every primitive of the init (one small XLA program per
  op and shape; a table of a few dozen configurations spent most of its set-up there), so the
  shapes come from ``jax.eval_shape`` and the values from numpy: ``N(0, 0.1^2)`` for weights and
  biases, BatchNorm ``scale = var = 1`` and ``mean = 0``. A latency does not depend on the values
  (all finite, none denormal).
  """
  import jax
  import jax.numpy as jnp

  shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), x, train=False))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = str(getattr(path[-1], "key", path[-1]))
    if name in ("scale", "var"):
      v = np.ones(leaf.shape, leaf.dtype)
    elif name == "mean":
      v = np.zeros(leaf.shape, leaf.dtype)
    else:
      v = (0.1 * rng.standard_normal(leaf.shape)).astype(leaf.dtype)
    return jnp.asarray(v)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def _block_fn(spec: Mapping[str, Any], mid: int, batch: int):
  import jax
  import jax.numpy as jnp

  from vision_jax.nas.layers import MBConv

  m = MBConv(
    spec["cin"],
    spec["cout"],
    mid,
    spec["kernel"],
    spec["stride"],
    spec["se"],
    spec["act"],
    "affine",
    dw_impl="xla",  # as the derived net and the stem are timed (what a deployed net runs)
  )
  x = jnp.ones((batch, spec["hw"], spec["hw"], spec["cin"]), jnp.float32)
  return jax.jit(lambda v, x: m.apply(v, x, train=False)), (_timing_variables(m, x), x)


def _stem_fn(spec, batch):
  import jax
  import jax.numpy as jnp

  from vision_jax.nas.layers import Stem

  m = Stem(
    spec["stem"], spec["stem_stride"], spec["stem_block"], spec["stem_block_se"], "affine", "xla"
  )
  x = jnp.ones((batch, spec["image_size"], spec["image_size"], spec["in_channels"]), jnp.float32)
  return jax.jit(lambda v, x: m.apply(v, x, train=False)), (_timing_variables(m, x), x)


def _head_fn(spec, batch):
  import jax
  import jax.numpy as jnp

  from vision_jax.nas.layers import Head

  m = Head(spec["head"], spec["num_classes"], 0.0, "affine")
  x = jnp.ones((batch, spec["hw"], spec["hw"], spec["cin"]), jnp.float32)
  return jax.jit(lambda v, x: m.apply(v, x, train=False)[0]), (_timing_variables(m, x), x)


def _net_fn(arch, batch):
  import jax
  import jax.numpy as jnp

  from vision_jax.nas.layers import derived_net

  m = derived_net(arch)
  x = jnp.ones((batch, arch["image_size"], arch["image_size"], arch["in_channels"]), jnp.float32)
  return jax.jit(lambda v, x: m.apply(v, x, train=False)[0]), (_timing_variables(m, x), x)


def _null_fn(batch):
  import jax
  import jax.numpy as jnp

  return jax.jit(lambda x: x + 1.0), (jnp.ones((batch,), jnp.float32),)


def time_interleaved(
  fns: Sequence[tuple[Any, tuple]], *, warmup: int = 10, rounds: int = 15, inner: int = 5, seed=0
) -> np.ndarray:
  """Times jitted ``f(*args)`` calls, ms per call, ``[rounds, len(fns)]``.

  Each ``f`` is compiled and called ``warmup`` times first; then every round visits all
  functions in a fresh random order and times ``inner`` calls of each, with
  ``block_until_ready`` after every call.
  """
  import jax

  for f, args in fns:
    jax.block_until_ready(f(*args))
  for _ in range(warmup):
    for f, args in fns:
      jax.block_until_ready(f(*args))
  rng = np.random.default_rng(seed)
  out = np.zeros((rounds, len(fns)))
  for r in range(rounds):
    for j in rng.permutation(len(fns)):
      f, args = fns[j]
      t0 = time.perf_counter()
      for _ in range(inner):
        jax.block_until_ready(f(*args))
      out[r, j] = (time.perf_counter() - t0) * 1e3 / inner
  return out


def _summ(t: np.ndarray) -> tuple[float, float]:
  med = float(np.median(t))
  q1, q3 = np.percentile(t, [25, 75])
  return med, float((q3 - q1) / med) if med > 0 else 0.0


def _run_request(req: Mapping[str, Any]) -> dict[str, Any]:
  """Times everything in ``req`` (in this process) and returns medians and spreads."""
  batch = int(req["batch_size"])
  fns, names = [_null_fn(batch)], ["dispatch"]
  if "table" in req:
    t = req["table"]
    fns += [_stem_fn(t["stem"], batch), _head_fn(t["head"], batch)]
    names += ["stem", "head"]
    for key, e in t["blocks"].items():
      for w in e["widths"]:
        fns.append(_block_fn(e["spec"], w, batch))
        names.append(f"{key}@{w}")
  for i, arch in enumerate(req.get("nets", [])):
    fns.append(_net_fn(arch, batch))
    names.append(f"net{i}")
  t0 = time.perf_counter()
  times = time_interleaved(
    fns, warmup=int(req["warmup"]), rounds=int(req["rounds"]), inner=int(req["inner"])
  )
  res = {n: _summ(times[:, j]) for j, n in enumerate(names)}
  return dict(results=res, device=device_identity(), seconds=time.perf_counter() - t0)


def _measure(req: dict[str, Any], isolated: bool) -> dict[str, Any]:
  if not isolated:
    return _run_request(req)
  import jax

  env = dict(os.environ)
  flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", ""))
  platform = jax.devices()[0].platform
  if platform == "cpu":
    flags += " " + SINGLE_THREAD_FLAGS
  env["XLA_FLAGS"] = flags.strip()
  env["JAX_PLATFORMS"] = platform
  with tempfile.TemporaryDirectory() as d:
    rp, op = os.path.join(d, "req.json"), os.path.join(d, "out.json")
    with open(rp, "w") as f:
      json.dump(req, f)
    proc = subprocess.run(
      [sys.executable, "-m", "vision_jax.nas.latency", rp, op],
      env=env,
      capture_output=True,
      text=True,
      check=False,
    )
    if proc.returncode != 0:
      raise RuntimeError(f"latency worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    with open(op) as f:
      return json.load(f)


def measure_table(
  space: SearchSpace,
  *,
  batch_size: int = 1,
  num_widths: int = 4,
  warmup: int = 10,
  rounds: int = 15,
  inner: int = 5,
  isolated: bool = True,
) -> LatencyTable:
  """Measures the table of ``space`` on JAX's default device (see the module docstring).

  Args:
    space: the search space.
    batch_size: images per timed call (1 on CPU as the code's CPU table; 32 for its GPU table).
    num_widths: measured mid widths per configuration (linear in between).
    warmup, rounds, inner: timing protocol (:func:`time_interleaved`).
    isolated: time in a fresh single-threaded subprocess (False: in this process, as is).
  """
  for name, v in (("batch_size", batch_size), ("num_widths", num_widths), ("rounds", rounds),
                  ("inner", inner)):  # fmt: skip
    if not isinstance(v, int) or v < 1:
      raise ValueError(f"measure_table: {name}={v!r} must be an int >= 1")
  t = table_requests(space, num_widths)
  req = dict(batch_size=batch_size, warmup=warmup, rounds=rounds, inner=inner, table=t)
  t0 = time.time()
  out = _measure(req, isolated)
  r = out["results"]
  blocks = {
    key: dict(
      widths=list(e["widths"]),
      ms=[r[f"{key}@{w}"][0] for w in e["widths"]],
      spread=[r[f"{key}@{w}"][1] for w in e["widths"]],
    )
    for key, e in t["blocks"].items()
  }
  spreads = [s for e in blocks.values() for s in e["spread"]]
  return LatencyTable(
    device=out["device"],
    batch_size=batch_size,
    threads="single" if isolated and out["device"].startswith("cpu") else "default",
    dispatch_ms=r["dispatch"][0],
    stem_ms=r["stem"][0],
    head_ms=r["head"][0],
    blocks=blocks,
    spread=dict(
      dispatch=r["dispatch"][1],
      stem=r["stem"][1],
      head=r["head"][1],
      block_median=float(np.median(spreads)),
      block_max=float(np.max(spreads)),
    ),
    meta=dict(
      warmup=warmup,
      rounds=rounds,
      inner=inner,
      num_widths=num_widths,
      date=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
      seconds=time.time() - t0,
    ),  # fmt: skip
  )


def measure_nets(
  archs: Sequence[Mapping[str, Any]],
  *,
  batch_size: int = 1,
  warmup: int = 10,
  rounds: int = 15,
  inner: int = 5,
  isolated: bool = True,
) -> list[tuple[float, float]]:
  """Times derived nets with the table's protocol; ``[(median ms, relative IQR)]`` per net."""
  archs = [validate_arch(a, where=f"archs[{i}]") for i, a in enumerate(archs)]
  req = dict(batch_size=batch_size, warmup=warmup, rounds=rounds, inner=inner, nets=archs)
  r = _measure(req, isolated)["results"]
  return [tuple(r[f"net{i}"]) for i in range(len(archs))]


def random_archs(space: SearchSpace, n: int, seed: int) -> list[dict]:
  """``n`` uniformly random architectures (op, depth and width per block) of ``space``."""
  from vision_jax.nas.space import arch_from_choices
  from vision_jax.nas.supernet import width_bounds

  if not isinstance(n, int) or n < 0:
    raise ValueError(f"random_archs: n={n!r} must be an int >= 0")
  rng = np.random.default_rng(seed)
  lo, hi = width_bounds(space)
  out = []
  for _ in range(n):
    ops = rng.integers(0, len(space.ops), space.num_blocks)
    depths = [int(rng.integers(1, st.max_blocks + 1)) for st in space.stages]
    widths = rng.integers(lo, hi + 1)
    out.append(arch_from_choices(space, ops, depths, widths))
  return out


def calibrate_table(
  table: LatencyTable,
  archs: Sequence[Mapping[str, Any]],
  measured_ms: Sequence[float] | None = None,
  **measure_kw,
) -> tuple[LatencyTable, dict[str, Any]]:
  """Scales ``table`` so that it predicts whole nets: ``s = median(t_net / LAT)`` over ``archs``.

  Args:
    table: a measured table (its own ``scale`` is ignored: the fit is against the raw sum).
    archs: parsed architectures of the table's space (e.g. :func:`random_archs`).
    measured_ms: their measured latencies; ``None`` times them with :func:`measure_nets`
      (``measure_kw``: the table's protocol).

  Returns:
    ``(calibrated table, fit)`` with ``fit = {"scale", "ratios", "predicted_raw_ms",
    "measured_ms", "measured_spread"}``.

  Raises:
    ValueError: no architectures, or measured times that are not finite and positive.
  """
  if len(archs) == 0:
    raise ValueError("calibrate_table: archs is empty; pass at least one architecture")
  spreads = [float("nan")] * len(archs)
  if measured_ms is None:
    meas = measure_nets(archs, **measure_kw)
    measured_ms, spreads = [m for m, _ in meas], [sp for _, sp in meas]
  if len(measured_ms) != len(archs):
    raise ValueError(
      f"calibrate_table: {len(measured_ms)} measured times for {len(archs)} architectures"
    )
  raw = table.with_scale(1.0)
  pred = [raw.predict(a) for a in archs]
  for i, m in enumerate(measured_ms):
    if not (np.isfinite(m) and m > 0):
      raise ValueError(f"calibrate_table: measured_ms[{i}]={m!r} must be finite and > 0")
  ratios = [float(m) / p for m, p in zip(measured_ms, pred)]
  s = float(np.median(ratios))
  fit = dict(
    scale=s, ratios=ratios, predicted_raw_ms=pred,
    measured_ms=[float(m) for m in measured_ms], measured_spread=spreads,
  )  # fmt: skip
  return table.with_scale(s, calibration=dict(scale=s, num_archs=len(archs))), fit


def cached_table(space: SearchSpace, cache_dir: str, **measure_kw) -> tuple[LatencyTable, str]:
  """Loads the table for (``space``, this device, protocol) from ``cache_dir`` or measures and
  stores it; returns ``(table, path)``."""
  ident = device_identity()
  sp = {k: v for k, v in space.to_dict().items() if k not in ("dropout",)}
  h = hashlib.sha1(json.dumps([sp, sorted(measure_kw.items())], sort_keys=True).encode())
  slug = re.sub(r"[^A-Za-z0-9]+", "-", ident).strip("-")[:80]
  path = os.path.join(cache_dir, f"lut_{slug}_{h.hexdigest()[:10]}.json")
  if os.path.exists(path):
    return LatencyTable.load(path, device=ident), path
  table = measure_table(space, **measure_kw)
  table.save(path)
  return table, path


def main(argv=None):
  """Worker entry: ``python -m vision_jax.nas.latency request.json out.json``."""
  rp, op = (argv or sys.argv[1:])[:2]
  with open(rp) as f:
    req = json.load(f)
  out = _run_request(req)
  with open(op, "w") as f:
    json.dump(out, f)


if __name__ == "__main__":
  main()
