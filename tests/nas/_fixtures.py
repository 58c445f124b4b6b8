"""A tiny search space and a synthetic (linear-in-width) latency table shared by the NAS tests."""

import numpy as np

from vision_jax.nas import LatencyTable, SearchSpace, Stage
from vision_jax.nas.latency import table_requests

TINY = SearchSpace(
  image_size=8, in_channels=1, num_classes=4, stem=4, stem_stride=1, stem_block=4,
  stem_block_se=2, stages=(Stage(8, 2, 2, "relu"), Stage(8, 1, 1, "swish")), head=16,
)  # fmt: skip


def synthetic_table(space=TINY, device="test:device", dispatch=0.01):
  """Block ``key`` at width ``w`` costs ``dispatch + 0.001 * (k^2 + 1 + [se]) * w * hw^2 / 64``."""
  req = table_requests(space, 3)
  blocks = {}
  for key, e in req["blocks"].items():
    s = e["spec"]
    c = 0.001 * (s["kernel"] ** 2 + 1 + (s["se"] > 0)) * s["hw"] ** 2 / 64
    blocks[key] = dict(
      widths=e["widths"],
      ms=[dispatch + c * w for w in e["widths"]],
      spread=[0.0] * len(e["widths"]),
    )
  return LatencyTable(device, 1, "single", dispatch, 0.05, 0.03, blocks, {"block_median": 0.0})


def brute_force_latency(space, op_w, depth_w, lat, base):
  """``base + sum_s sum_d p_d sum_{b<=d} sum_o w L``, by explicit loops."""
  total = base
  for si, st in enumerate(space.stages):
    idx = [s.index for s in space.slots if s.stage == si]
    for d in range(st.max_blocks):
      inner = sum(float(np.dot(op_w[idx[j]], lat[idx[j]])) for j in range(d + 1))
      total += float(depth_w[si][d]) * inner
  return total
