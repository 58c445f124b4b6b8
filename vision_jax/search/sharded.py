"""AVQ search with the database sharded over a device-mesh axis.

Each device holds ~1/D of the datapoints (their codes, originals and ids) and runs the XLA search
path on them under ``jax.shard_map``; the leaf centres and codebooks are replicated. Points are
dealt round-robin *within each leaf* (the j-th member of a leaf goes to device ``j mod D``), so
every device owns a slice of every leaf and probing L leaves costs each device ~1/D of the
candidates; per-device rows differ by at most ``num_leaves``.

Search (per query batch, replicated queries):

1. every device scores the same probed leaves (replicated centres) and runs ADC over its own
   members of them, keeping its local top ``R`` (``R = reorder`` or ``k``);
2. ``all_gather`` of the D·R (score, global id, owner, local row) and a global ``top_k(R)`` —
   exactly the unsharded top-R ADC candidates (ties aside);
3. with ``reorder``: each device re-scores the global candidates it owns exactly, the others are
   ``-inf``; a ``pmax`` over the axis assembles all R exact scores and ``top_k(k)`` finishes.

So ids and scores equal :meth:`AVQIndex.search` with ``backend="xla"`` (up to tie order).

Choice: leaf-round-robin rather than whole leaves per device — whole-leaf partitioning would need
the probe (and its load) to be spread across devices by luck, and k-means leaves are unbalanced.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from vision_jax.search.index import AVQIndex, adc_scores, lookup_tables


class ShardedAVQIndex:
  """An :class:`AVQIndex` whose database arrays are split over mesh axis ``axis``.

  Attributes:
    members: ``[D, num_leaves, ceil(m/D)]`` int32 local row ids per leaf (``-1`` padded).
    codes: ``[D, n_loc, K]`` uint8; database: ``[D, n_loc, d]`` float32; ids: ``[D, n_loc]``
      int32 global ids (``-1`` for padding rows). All sharded on their leading axis, so each
      device stores one ``[n_loc, ...]`` slice, ``n_loc ≤ ceil(n/D) + num_leaves``.
    leaf_centers, codebooks: replicated.
  """

  def __init__(self, index: AVQIndex, mesh: jax.sharding.Mesh, *, axis: str = "data"):
    if axis not in mesh.axis_names:
      raise ValueError(f"axis={axis!r} is not a mesh axis (mesh axes: {mesh.axis_names})")
    nd = int(mesh.shape[axis])
    mem = np.asarray(index.members)
    nl, m = mem.shape
    m_loc = -(-m // nd)
    pad_cols = np.full((nl, m_loc * nd - m), -1, np.int32)
    # [nl, m_loc, D]: column j of a leaf goes to device j mod D.
    dealt = np.concatenate([mem, pad_cols], axis=1).reshape(nl, m_loc, nd)
    rows, local_members = [], []
    for dev in range(nd):
      glob = dealt[:, :, dev]
      valid = glob >= 0
      rows.append(glob[valid])  # leaf by leaf
      loc = np.full(glob.shape, -1, np.int32)
      loc[valid] = np.arange(valid.sum(), dtype=np.int32)
      local_members.append(loc)
    n_loc = max(1, max(len(r) for r in rows))
    gids = np.full((nd, n_loc), -1, np.int32)
    for dev, r in enumerate(rows):
      gids[dev, : len(r)] = r
    safe = np.maximum(gids, 0)
    codes = np.where((gids >= 0)[..., None], np.asarray(index.codes)[safe], 0).astype(np.uint8)
    db = np.where((gids >= 0)[..., None], np.asarray(index.database)[safe], 0).astype(np.float32)

    shard = NamedSharding(mesh, P(axis))
    rep = NamedSharding(mesh, P())
    self.mesh, self.axis, self.num_points, self.dim = mesh, axis, index.num_points, index.dim
    self.max_leaf_size = m
    self.members = jax.device_put(np.stack(local_members), shard)
    self.codes = jax.device_put(codes, shard)
    self.database = jax.device_put(db, shard)
    self.ids = jax.device_put(gids, shard)
    self.leaf_centers = jax.device_put(np.asarray(index.leaf_centers), rep)
    self.codebooks = jax.device_put(np.asarray(index.codebooks), rep)
    self.info = {k: v for k, v in index.info.items() if k != "leaf_of"}

  @property
  def num_leaves(self) -> int:
    return int(self.leaf_centers.shape[0])

  def search(
    self, queries, k: int, *, leaves_to_search: int | None = None, reorder: int = 0
  ) -> tuple[jax.Array, jax.Array]:
    """Same contract as :meth:`AVQIndex.search` (XLA path), computed over the sharded database.

    Args:
      queries: ``[nq, d]`` (replicated to every device).
      k, leaves_to_search, reorder: as in :meth:`AVQIndex.search`.

    Returns:
      ``(ids [nq, k] int32, scores [nq, k] float32)``, replicated; ``-1`` / ``-inf`` where fewer
      candidates were probed.

    Raises:
      ValueError: dimension mismatch, k outside [1, n], bad leaves_to_search or reorder.
    """
    q = np.asarray(queries, np.float32)
    if q.ndim == 1:
      q = q[None]
    if q.ndim != 2 or q.shape[1] != self.dim:
      raise ValueError(f"queries must be [nq, d={self.dim}], got shape {q.shape}")
    if not np.all(np.isfinite(q)):
      raise ValueError("queries contains non-finite values")
    if not isinstance(k, int | np.integer) or not 1 <= k <= self.num_points:
      raise ValueError(f"k={k!r} must be an integer in [1, database size={self.num_points}]")
    nl = self.num_leaves
    leaves_to_search = nl if leaves_to_search is None else leaves_to_search
    if not 1 <= leaves_to_search <= nl:
      raise ValueError(f"leaves_to_search={leaves_to_search!r} must be in [1, num_leaves={nl}]")
    cand = leaves_to_search * self.max_leaf_size
    if reorder and reorder < k:
      raise ValueError(f"reorder={reorder!r} must be 0 or >= k={k}")
    if k > cand:
      raise ValueError(
        f"k={k} exceeds the {cand} candidate slots of leaves_to_search={leaves_to_search}"
      )
    reorder = int(min(reorder, cand)) if reorder else 0
    fn = _sharded_fn(self.mesh, self.axis, int(k), int(leaves_to_search), reorder)
    return fn(
      jnp.asarray(q),
      self.leaf_centers,
      self.codebooks,
      self.members,
      self.codes,
      self.database,
      self.ids,
    )


def shard_index(index: AVQIndex, mesh: jax.sharding.Mesh, *, axis: str = "data"):
  """Splits ``index``'s database over mesh axis ``axis`` (see :class:`ShardedAVQIndex`)."""
  return ShardedAVQIndex(index, mesh, axis=axis)


@functools.lru_cache(maxsize=64)
def _sharded_fn(mesh, axis: str, k: int, nprobe: int, reorder: int):
  r = reorder or k

  def local(q, centers, codebooks, members, codes, db, gids):
    members, codes, db, gids = members[0], codes[0], db[0], gids[0]
    b, m = q.shape[0], members.shape[1]
    me = lax.axis_index(axis)
    luts = lookup_tables(q, codebooks)
    bias, leaves = lax.top_k(q @ centers.T, nprobe)
    cand = members[leaves].reshape(b, nprobe * m)
    valid = cand >= 0
    safe = jnp.maximum(cand, 0)
    scores = adc_scores(luts, codes[safe]) + jnp.repeat(bias, m, axis=1)
    scores = jnp.where(valid, scores, -jnp.inf)
    s, pos = lax.top_k(scores, min(r, nprobe * m))
    row = jnp.take_along_axis(safe, pos, axis=1)
    gid = jnp.where(s > -jnp.inf, gids[row], -1)
    owner = jnp.full(row.shape, me, jnp.int32)
    # Global top-R ADC candidates over all devices' local top-R.
    s, gid, owner, row = (lax.all_gather(a, axis, axis=1, tiled=True) for a in (s, gid, owner, row))
    s, pos = lax.top_k(s, r)
    gid, owner, row = (jnp.take_along_axis(a, pos, axis=1) for a in (gid, owner, row))
    if not reorder:
      return jnp.where(s > -jnp.inf, gid, -1), s
    mine = (owner == me) & (gid >= 0)
    exact = jnp.einsum("bd,brd->br", q, db[row])
    exact = lax.pmax(jnp.where(mine, exact, -jnp.inf), axis)
    es, p2 = lax.top_k(exact, k)
    out = jnp.take_along_axis(gid, p2, axis=1)
    return jnp.where(es > -jnp.inf, out, -1), es

  spec = P(axis)
  return jax.jit(
    jax.shard_map(
      local,
      mesh=mesh,
      in_specs=(P(), P(), P(), spec, spec, spec, spec),
      out_specs=(P(), P()),
      check_vma=False,
    )
  )
