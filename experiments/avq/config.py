"""AVQ experiment: Recall vs bits for reconstruction-loss PQ (T=0) vs anisotropic PQ (T>0).

Run (embedded default, offline, 2-core CPU, a few minutes)::

    python -m experiments.avq --preset=default --workdir=runs/avq/default

Setting (like the paper's Fig. 3): quantization quality only, no partition tree, exhaustive ADC
over the whole database, no re-ranking. Data for ``default``: the word2vec sample shipped in the
PyPI package ``wefe`` (13,013 x 300, unnormalised; 1,000 rows held out as queries, queries
L2-normalised, which leaves the MIPS ranking unchanged). Bits per vector = 4 * 300 /
dims_per_block with 16-centre (LUT16) codebooks: 60, 100, 200, 300, 400. For every T the same
pipeline runs: per-block k-means codebooks, then ``codebook_update_rounds`` alternations of
(encode, least-squares codebook update) under the score-aware loss with eta(T), then encoding of
the database; T=0 is eta=1, i.e. plain PQ with extra Lloyd steps. Metrics: Recall1@10 (true top-1
in the ADC top-10), Recall10@10, and the relative error |<q,x~*> - <q,x*>| / |<q,x*>| of the
estimated inner product of the true top-1 x*.

Threshold semantics (``threshold_mode``): "absolute" is ScaNN's (eta per point from its own norm,
T must be < min||x||); "cosine" applies T to unit-normalised points, i.e. one eta =
(d-1) T^2 / (1 - T^2) for all points. word2vec has a point of norm 0.016, so ScaNN's absolute T
in {0.1, 0.2, 0.3} is undefined there; default therefore uses "cosine" (d=300: eta = 3.0, 12.5,
29.6). For unit-norm data (glove) the two modes coincide.

Hardware: 2-core x86 CPU; measured 562 s wall, 132 s CPU (shared, loaded VM; recorded 2026-11-28,
commit ``b781869``; docs/avq.md holds the full tables).

Expected result of ``default`` (+- 0.02): at 200 bits Recall1@10 0.876 (T=0) -> 0.909 (T=0.2),
Recall10@10 0.564 -> 0.611, and the relative top-1 error falls from 0.46 to 0.09; anisotropic
T=0.1/0.2 beats T=0 at every bitrate measured here (see the table for T=0.3). Encoding-only
anisotropic quantization with k-means codebooks (stock ScaNN, the ``encode_only`` ablation) is
*worse* than T=0 here.

Paper claim (Guo et al., ICML 2020, Fig. 3, Glove-1.2M, d=100, T=0.2): anisotropic beats
reconstruction at every bitrate; Recall1@10 about 0.83 -> 0.91 at 200 bits (read off the plot).

Presets:
  smoke    synthetic clustered 1,500 x 24, 2 bitrates, T in {0, 0.3}; seconds (run by tests)
  default  word2vec (wefe), 5 bitrates, T in {0, 0.1, 0.2, 0.3}, + encode-only ablation at 0.2
  paper    glove-100-angular from ``--config.data.hdf5_path=/path/glove-100-angular.hdf5``
           (not downloadable here), 100/200 bits, T in {0, 0.2}, 1,000 test queries, codebooks
           on a 100k sample; exhaustive ADC over 1.18M points (about an hour on 2 cores)
"""

import os

import ml_collections

from vision_jax.utils.config_checks import (
  check_choice,
  check_number,
  check_numbers,
  config_error,
)

PRESETS = ("smoke", "default", "paper")


def get_config(preset: str = "default") -> ml_collections.ConfigDict:
  cfg = ml_collections.ConfigDict()
  cfg.seed = 0
  cfg.data = ml_collections.ConfigDict(
    dict(
      source="word2vec",  # word2vec | synthetic | hdf5
      hdf5_path="",
      num_queries=1000,
      normalize_queries=True,
      normalize_database=False,
      synthetic_n=1500,
      synthetic_dim=24,
    )
  )
  cfg.dims_per_block = (20, 12, 6, 4, 3)
  cfg.num_centers = 16
  cfg.thresholds = (0.0, 0.1, 0.2, 0.3)
  cfg.threshold_mode = "cosine"  # cosine | absolute
  cfg.training_iterations = 10
  cfg.training_sample_size = 100_000
  cfg.codebook_update = "blockwise"  # none | blockwise | joint
  cfg.codebook_update_rounds = 3
  cfg.encode_only_threshold = 0.2  # extra row: anisotropic encoding only (stock ScaNN); <0 = off
  cfg.k = 10
  if preset == "smoke":
    cfg.data.source = "synthetic"
    cfg.data.num_queries = 50
    cfg.dims_per_block = (4, 2)
    cfg.thresholds = (0.0, 0.3)
    cfg.training_iterations = 4
    cfg.codebook_update_rounds = 1
    cfg.encode_only_threshold = 0.3
  elif preset == "paper":
    cfg.data.source = "hdf5"
    cfg.data.normalize_database = True
    cfg.dims_per_block = (4, 2)
    cfg.thresholds = (0.0, 0.2)
    cfg.threshold_mode = "absolute"
  return cfg


def validate(cfg: ml_collections.ConfigDict) -> None:
  """Rejects invalid quantization settings (and a missing HDF5 file) before any data is read.

  Raises:
    ConfigError: naming ``--config.<key>`` and its value.
  """
  d = "data"
  source = check_choice(cfg, f"{d}.source", ("word2vec", "synthetic", "hdf5"))
  if source == "hdf5" and not os.path.isfile(cfg.data.hdf5_path):
    raise config_error(
      f"{d}.hdf5_path",
      cfg.data.hdf5_path,
      "an existing ann-benchmarks .hdf5 file (e.g. glove-100-angular.hdf5) for data.source='hdf5'",
    )
  check_number(cfg, f"{d}.num_queries", low=1, integer=True)
  check_number(cfg, f"{d}.synthetic_n", low=2, integer=True)
  check_number(cfg, f"{d}.synthetic_dim", low=1, integer=True)
  check_numbers(cfg, "dims_per_block", low=1, integer=True)
  check_choice(cfg, "num_centers", (2, 4, 16, 256))
  check_numbers(cfg, "thresholds", low=0.0, high=1.0, high_open=True)
  check_choice(cfg, "threshold_mode", ("cosine", "absolute"))
  check_number(cfg, "training_iterations", low=1, integer=True)
  check_number(cfg, "training_sample_size", low=1, integer=True)
  check_choice(cfg, "codebook_update", ("none", "blockwise", "joint"))
  check_number(cfg, "codebook_update_rounds", low=0, integer=True)
  check_number(cfg, "encode_only_threshold", high=1.0, high_open=True)
  check_number(cfg, "k", low=1, integer=True)
