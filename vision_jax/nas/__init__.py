"""vision_jax.nas: TF-NAS latency-constrained differentiable architecture search.

Search space and parsed configs (:mod:`~vision_jax.nas.space`), masked MBConv and the derived net
(:mod:`~vision_jax.nas.layers`), the supernet with bi-sampling and sink-connecting depth
(:mod:`~vision_jax.nas.supernet`), the measured latency table (:mod:`~vision_jax.nas.latency`),
elasticity scaling (:mod:`~vision_jax.nas.elastic`) and the search Task
(:mod:`~vision_jax.nas.search`).
"""

from vision_jax.nas.elastic import elastic_scale
from vision_jax.nas.latency import (
  LatencyTable,
  cached_table,
  calibrate_table,
  device_identity,
  measure_nets,
  measure_table,
  random_archs,
  time_interleaved,
)
from vision_jax.nas.layers import DepthwiseConv, DerivedNet, MBConv, derived_net, search_norm
from vision_jax.nas.search import search_from_warmup, search_task, temperature
from vision_jax.nas.space import (
  OPS,
  SearchSpace,
  Stage,
  arch_from_choices,
  count_flops,
  count_params,
  load_arch,
  paper_space,
  parse_op,
  validate_arch,
)
from vision_jax.nas.supernet import (
  Supernet,
  bi_sample,
  expected_latency,
  gumbel_weights,
  init_arch,
  parse_arch,
  ranked_masks,
)

__all__ = [
  "OPS",
  "DepthwiseConv",
  "DerivedNet",
  "LatencyTable",
  "MBConv",
  "SearchSpace",
  "Stage",
  "Supernet",
  "arch_from_choices",
  "bi_sample",
  "cached_table",
  "calibrate_table",
  "count_flops",
  "count_params",
  "derived_net",
  "device_identity",
  "elastic_scale",
  "expected_latency",
  "gumbel_weights",
  "init_arch",
  "load_arch",
  "measure_nets",
  "measure_table",
  "paper_space",
  "random_archs",
  "parse_arch",
  "parse_op",
  "ranked_masks",
  "search_norm",
  "search_from_warmup",
  "search_task",
  "temperature",
  "time_interleaved",
  "validate_arch",
]
