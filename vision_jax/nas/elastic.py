"""Elasticity scaling (TF-NAS width level): move the parsed net's widths towards the target.

With the parsed net (argmax op ``o_b`` per block, argmax depth per stage), its widths
``mc_b = widths[b, o_b]``, and ``LAT(mc) = base + sum_{active b} curve[b, o_b, mc_b]``:

1. step ``delta_b = max(round(mc_b / min_{active} mc), 1)`` (proportional to each block's width);
2. if ``LAT > T``: shrink every active block by ``delta_b`` (clipped to ``[lo, hi]``) until
   ``LAT <= T`` or nothing moves; else expand every active block by ``delta_b`` while the result
   stays ``<= T``;
3. progressively fine-grained: expand only stages ``2..S``, then ``3..S``, ..., then ``S`` alone,
   each time while the result stays ``<= T``.

Pure ``jax.numpy`` with ``lax.while_loop``: it runs inside the jitted step (``post_update`` at
epoch boundaries) and eagerly on the host alike.

Choice: the code rebuilds resized layers physically; here only the 0/1 masks change (the channel
ranking, largest depthwise L1 norm first, is the code's), so the step never recompiles.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.nas.space import SearchSpace


def _expand(mc, sel, step, lo, hi, lat_fn, target):
  def cond(c):
    return c[1]

  def body(c):
    mc, _ = c
    new = jnp.clip(mc + step * sel, lo, hi)
    ok = (lat_fn(new) <= target) & jnp.any(new != mc)
    return jnp.where(ok, new, mc), ok

  return jax.lax.while_loop(cond, body, (mc, jnp.ones((), bool)))[0]


def _shrink(mc, step, active, lo, hi, lat_fn, target):
  def cond(c):
    mc, moved = c
    return moved & (lat_fn(mc) > target)

  def body(c):
    mc, _ = c
    new = jnp.clip(mc - step * active, lo, hi)
    return new, jnp.any(new != mc)

  return jax.lax.while_loop(cond, body, (mc, jnp.ones((), bool)))[0]


def elastic_scale(
  space: SearchSpace,
  widths: jax.Array,
  ops: jax.Array,
  depths: jax.Array,
  curve: jax.Array,
  base,
  target,
  lo: jax.Array,
  hi: jax.Array,
) -> jax.Array:
  """New widths ``[num_blocks, N]`` after one elasticity-scaling pass (see the module docstring).

  Args:
    space: the search space (static).
    widths: int ``[num_blocks, N]`` current mid widths.
    ops: int ``[num_blocks]`` parsed op per block.
    depths: int ``[num_stages]`` parsed depth per stage (1-based).
    curve: ``[num_blocks, N, W + 1]`` LUT latency at every mid width (ms).
    base: stem + head latency (ms).
    target: target latency (ms).
    lo, hi: int ``[num_blocks, N]`` width bounds.

  Returns:
    int32 ``[num_blocks, N]``: only the parsed op of each active block changes.
  """
  slots = space.slots
  n = len(slots)
  rows = jnp.arange(n)
  stage_of = jnp.asarray(np.array([s.stage for s in slots], np.int32))
  depth_of = jnp.asarray(np.array([s.depth for s in slots], np.int32))
  active = (depth_of < jnp.asarray(depths)[stage_of]).astype(jnp.int32)
  ops = jnp.asarray(ops, jnp.int32)
  widths = jnp.asarray(widths, jnp.int32)
  mc = widths[rows, ops]
  lo_b, hi_b = jnp.asarray(lo)[rows, ops], jnp.asarray(hi)[rows, ops]
  cur = jnp.asarray(curve)[rows, ops]  # [n, W + 1]

  def lat_fn(m):
    return base + jnp.sum(active * cur[rows, m])

  min_mc = jnp.min(jnp.where(active > 0, mc, jnp.iinfo(jnp.int32).max))
  step = jnp.maximum(jnp.round(mc / min_mc).astype(jnp.int32), 1)
  mc = jax.lax.cond(
    lat_fn(mc) > target,
    lambda m: _shrink(m, step, active, lo_b, hi_b, lat_fn, target),
    lambda m: _expand(m, active, step, lo_b, hi_b, lat_fn, target),
    mc,
  )
  for first in range(1, len(space.stages)):
    sel = active * (stage_of >= first).astype(jnp.int32)
    mc = _expand(mc, sel, step, lo_b, hi_b, lat_fn, target)
  return widths.at[rows, ops].set(mc)
