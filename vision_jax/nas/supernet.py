"""The TF-NAS supernet: masked MBConv ops per block, sink-connecting stages, bi-sampling.

Every block holds the ``N = len(space.ops)`` candidate ops of the space (the paper's 8 by default).

Operation level (bi-sampling). Weight step: per block one op by Gumbel-max on
``log_softmax(log alpha)`` plus a second op drawn uniformly from the remaining ``N - 1``, each run as a
single path (``nn.switch``, one branch executed); loss ``CE(path_1) + CE(path_2)``. Architecture
step: every op of every block, mixed with Gumbel-softmax weights

.. math::
   w_{b,o} = \\mathrm{softmax}_o\\big((\\log\\alpha_{b,o} + g_{b,o}) / \\tau\\big),
   \\quad g \\sim \\mathrm{Gumbel}(0, 1).

Depth level (sink-connecting): stage ``s`` outputs ``sum_d softmax(beta_s)_d out_{s,d}``, the
output after its ``d``-th block, ``d = 1..D_s``.

Width level: each op is built at its maximum mid width and multiplied by a 0/1 channel mask
(``extra["masks"]``) that elasticity scaling rewrites; shapes never change, so the step never
recompiles.

References:
  Hu, Wu, He. "TF-NAS: Rethinking Three Search Freedoms of Latency-Constrained Differentiable
  Neural Architecture Search." ECCV 2020. arXiv:2008.05314.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.nas.layers import Head, MBConv, Stem
from vision_jax.nas.space import OPS, SearchSpace, arch_from_choices, parse_op

NUM_OPS = len(OPS)  # of the paper's full space; a SearchSpace may hold fewer (space.ops)


def num_ops(space: SearchSpace) -> int:
  return len(space.ops)


def block_key(b: int) -> str:
  return f"b{b}"


class Supernet(nn.Module):
  """The searchable net over ``space``.

  ``apply({"params": p}, x, masks, depth_w, op_index=..., op_weights=...)``:

  Args (of ``__call__``):
    x: ``[B, H, W, C]`` float images.
    masks: ``{"b<i>": {op name: [max mid] 0/1}}`` channel masks.
    depth_w: per stage ``[D_s]`` depth weights (``softmax(beta_s)``), a sequence.
    op_index: int ``[num_blocks]``: run exactly that op per block (single path).
    op_weights: ``[num_blocks, len(space.ops)]``: mix all ops with these weights (give one of the two).

  Returns:
    logits ``[B, num_classes]``.

  ``dw_impl``: the depthwise convolution (:class:`~vision_jax.nas.layers.DepthwiseConv`):
  ``"taps"`` (default; its backward is ~8x faster on XLA:CPU) or ``"xla"`` (one grouped
  convolution: the same outputs, about half the compile time of the search step).
  """

  space: SearchSpace
  dw_impl: str = "taps"

  def setup(self):
    sp = self.space
    self.stem = Stem(
      sp.stem, sp.stem_stride, sp.stem_block, sp.stem_block_se, "search", self.dw_impl
    )
    ops = []
    for slot in sp.slots:
      row = []
      for op in sp.op_specs:
        row.append(
          MBConv(
            slot.cin,
            slot.cout,
            op.max_mid(slot.cin),
            op.kernel,
            slot.stride,
            op.se_width(slot.cin),
            slot.act,
            "search",
            dw_impl=self.dw_impl,
          )  # fmt: skip
        )
      ops.append(row)
    self.ops = ops
    self.head = Head(sp.head, sp.num_classes, 0.0, "search")

  def __call__(self, x, masks, depth_w, op_index=None, op_weights=None):
    if (op_index is None) == (op_weights is None):
      raise ValueError("Supernet: give exactly one of op_index= (single path) or op_weights= (mix)")
    h = self.stem(x)
    slots = self.space.slots
    for si, stage in enumerate(self.space.stages):
      outs = []
      for slot in (s for s in slots if s.stage == si):
        b = slot.index
        m = tuple(masks[block_key(b)][name] for name in self.space.ops)
        n = len(m)
        if op_weights is not None:
          h = sum(op_weights[b, i] * self.ops[b][i](h, m[i]) for i in range(n))
        else:
          branches = [lambda mdl, h, m, b=b, i=i: mdl.ops[b][i](h, m[i]) for i in range(n)]
          h = nn.switch(op_index[b], branches, self, h, m)
        outs.append(h)
      w = depth_w[si]
      h = sum(w[d] * outs[d] for d in range(stage.max_blocks))
    logits, _ = self.head(h)
    return logits


# ----------------------------------------------------------------------------- arch state
def init_arch(space: SearchSpace) -> dict[str, Any]:
  """Architecture parameters: ``alpha`` = ``log(1/N)`` ``[num_blocks, N]`` (log-probabilities,
  as the code's ``log_alphas``; ``N = len(space.ops)``) and ``beta = {"s<i>": zeros [D_i]}``."""
  n = num_ops(space)
  return {
    "alpha": jnp.full((space.num_blocks, n), -np.log(n), jnp.float32),
    "beta": {
      f"s{i}": jnp.zeros((st.max_blocks,), jnp.float32) for i, st in enumerate(space.stages)
    },
  }


def depth_weights(arch: Mapping[str, Any], space: SearchSpace) -> list[jax.Array]:
  """``[softmax(beta_s) for each stage]``."""
  return [jax.nn.softmax(arch["beta"][f"s{i}"]) for i in range(len(space.stages))]


def width_bounds(space: SearchSpace) -> tuple[np.ndarray, np.ndarray]:
  """``(lo, hi)`` int arrays ``[num_blocks, len(space.ops)]`` of the searchable mid widths."""
  lo = np.zeros((space.num_blocks, num_ops(space)), np.int32)
  hi = np.zeros_like(lo)
  for slot in space.slots:
    for o, op in enumerate(space.op_specs):
      lo[slot.index, o], hi[slot.index, o] = space.width_bounds(slot, op)
  return lo, hi


def nominal_widths(space: SearchSpace) -> np.ndarray:
  """Initial mid widths ``e * c_in`` (3/4 of each op's maximum), int32 ``[num_blocks, N]``."""
  w = np.zeros((space.num_blocks, num_ops(space)), np.int32)
  for slot in space.slots:
    for o, op in enumerate(space.op_specs):
      w[slot.index, o] = op.nominal_mid(slot.cin)
  return w


def prefix_masks(space: SearchSpace, widths) -> dict[str, dict[str, jax.Array]]:
  """Masks whose first ``widths[b, o]`` channels are on.

  Choice: the initial active channels are the first ``e c_in`` ones (the code starts every op at
  its nominal width); later ones follow the depthwise-L1 ranking (:func:`ranked_masks`).
  """
  widths = np.asarray(widths)
  out = {}
  for slot in space.slots:
    out[block_key(slot.index)] = {
      name: jnp.asarray(
        np.arange(parse_op(name).max_mid(slot.cin)) < widths[slot.index, o], jnp.float32
      )
      for o, name in enumerate(space.ops)
    }
  return out


def _dw_kernel(net_params, b: int, o: int) -> jax.Array:
  return net_params[f"ops_{b}_{o}"]["dw"]["kernel"]


def ranked_masks(space: SearchSpace, net_params, widths, old_masks=None, changed=None):
  """Masks keeping, per op, the ``widths[b, o]`` channels with the largest depthwise-filter L1
  norm ``sum |W_dw[:, :, 0, c]|`` (the code's channel ranking when it rebuilds a layer).

  Where ``changed[b, o]`` is False the old mask is kept (the code only rebuilds resized layers).
  Traceable (``argsort``; ties broken by channel index).
  """
  widths = jnp.asarray(widths)
  out = {}
  for slot in space.slots:
    b = slot.index
    row = {}
    for o, name in enumerate(space.ops):
      l1 = jnp.sum(jnp.abs(_dw_kernel(net_params, b, o)), axis=(0, 1, 2))
      rank = jnp.argsort(jnp.argsort(-l1, stable=True), stable=True)
      m = (rank < widths[b, o]).astype(jnp.float32)
      if old_masks is not None and changed is not None:
        m = jnp.where(changed[b, o], m, old_masks[block_key(b)][name])
      row[name] = m
    out[block_key(b)] = row
  return out


# ----------------------------------------------------------------------------- sampling
def gumbel_weights(log_alpha: jax.Array, rng: jax.Array, tau) -> jax.Array:
  """Soft Gumbel-softmax ``softmax((log_softmax(log alpha) + g) / tau)``, ``[num_blocks, N]``."""
  g = jax.random.gumbel(rng, log_alpha.shape, jnp.float32)
  return jax.nn.softmax((jax.nn.log_softmax(log_alpha, -1) + g) / tau, axis=-1)


def bi_sample(log_alpha: jax.Array, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The two paths of the weight step, int ``[num_blocks]`` each.

  ``first = argmax(log_softmax(log alpha) + g)`` (Gumbel-max; the temperature does not change an
  argmax); ``second`` uniform over the other ``N - 1`` ops (``N = log_alpha.shape[-1]``):
  ``r ~ U{0..N-2}``, ``second = r + [r >= first]``, so ``second != first`` always.
  """
  n = log_alpha.shape[-1]
  if n < 2:
    raise ValueError(f"bi_sample: log_alpha has {n} op(s) per block; bi-sampling needs >= 2")
  k1, k2 = jax.random.split(rng)
  g = jax.random.gumbel(k1, log_alpha.shape, jnp.float32)
  first = jnp.argmax(jax.nn.log_softmax(log_alpha, -1) + g, axis=-1).astype(jnp.int32)
  r = jax.random.randint(k2, first.shape, 0, n - 1, jnp.int32)
  return first, r + (r >= first).astype(jnp.int32)


# ----------------------------------------------------------------------------- latency
def block_latencies(curve: jax.Array, widths: jax.Array) -> jax.Array:
  """``L[b, o] = curve[b, o, widths[b, o]]`` (ms), ``[num_blocks, N]``."""
  return jnp.take_along_axis(curve, jnp.asarray(widths)[..., None], axis=-1)[..., 0]


def expected_latency(
  space: SearchSpace, op_w: jax.Array, depth_w: Sequence[jax.Array], lat: jax.Array, base
) -> jax.Array:
  """Differentiable latency of the supernet.

  .. math::
     \\mathrm{LAT}(\\alpha, \\beta) = \\mathrm{base} + \\sum_s \\sum_{d=1}^{D_s}
       \\mathrm{softmax}(\\beta_s)_d \\sum_{b \\le d} \\sum_o w_{s,b,o}\\, L_{s,b,o}

  Args:
    op_w: ``[num_blocks, N]`` op weights (Gumbel-softmax in the architecture step).
    depth_w: per stage ``[D_s]``.
    lat: ``[num_blocks, N]`` LUT latency at the current widths (:func:`block_latencies`).
    base: latency of stem + second stem + head (ms).
  """
  per_block = jnp.sum(op_w * lat, axis=-1)
  total = jnp.asarray(base, jnp.float32)
  for si in range(len(space.stages)):
    idx = [s.index for s in space.slots if s.stage == si]
    cum = jnp.cumsum(per_block[jnp.asarray(idx)])
    total = total + jnp.sum(depth_w[si] * cum)
  return total


# ----------------------------------------------------------------------------- parsing
def parse_arch(space: SearchSpace, arch_params: Mapping[str, Any], widths) -> dict[str, Any]:
  """The derived architecture: argmax op per block, argmax depth per stage (blocks beyond it
  deleted), each chosen op at its current mask width."""
  ops = np.asarray(jnp.argmax(arch_params["alpha"], -1))
  depths = [
    int(np.argmax(np.asarray(arch_params["beta"][f"s{i}"]))) + 1 for i in range(len(space.stages))
  ]
  return arch_from_choices(space, ops, depths, np.asarray(widths))
