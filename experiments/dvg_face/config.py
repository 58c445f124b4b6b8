"""DVG-Face: generated paired heterogeneous faces for heterogeneous face recognition (HFR).

Run (embedded default, offline, 2-core CPU)::

    python -m experiments.dvg_face --preset=default --workdir=runs/dvg_face/default

Pipeline (each stage one run of the shared trainer, resumable): (1) identity network LightCNN-9
at 32 px trained with CE on the *photo* modality of the train identities (the stand-in for the
MS-Celeb-1M LightCNN); (2) identity sampler VAE on its features; (3) dual generator
(``Update("g")``, plus ``Update("d")`` when ``gen.adversarial``); (4) ``sample.num_pairs``
generated pairs (identity from noise, attributes from real images) and ``generated_pairs.png``;
(5) recognition: stage I trains only ``fc2`` (shared by all methods; evaluated as
``pretrained``), stage II fine-tunes the whole LightCNN with CE on real sketch + photo images
(``real``, the HFR baseline) or CE + the contrastive loss on generated pairs with the official
weight 0.001 (``generated``) or 0.1 (``generated_strong``, an ablation). Prints Rank-1 and VR@FAR=1e-2/1e-3/1e-4 (mean ± std over 10 folds) of
sketch probes vs a photo gallery on unseen identities.

Data: photo ↔ sketch (XDoG) pseudo-identities built from the IR-Softmax pseudo-identity images
(see experiments/dvg_face/data.py); NOT CASIA NIR-VIS 2.0.

Hardware / expected (default): 2-core x86 CPU. Measured (docs/dvg_face.md, 2026-12-02): Rank-1
of the real-pairs baseline 27.2 ± 2.2 % (10 folds), + generated pairs (official weight 0.001)
26.5 ± 1.7 %, weight 0.1 27.4 ± 1.9 %, photo-only identity net 9.5 %; VR@FAR=1e-2 19-23 %.
Expect Rank-1 within ± 3 points of these (runs differ by float summation order only); the
real/generated rows agree within their fold std at this budget. Wall time 7.4 min on a quiet
2-core machine (635 s of user CPU); 44 min when other jobs share the cores.

Presets:
  smoke    tiny widths, shallow nets, a few steps per stage, one device (run by tests;
           compile-bound: about 40 CPU-seconds on 2 cores, docs/dvg_face.md)
  default  the embedded setting above
  paper    CASIA NIR-VIS 2.0 View 2 (10 folds) with LightCNN-29v2 at 128 px (GPU), e.g.
           --config.paper.root=/data/NIR-VIS-2.0 (aligned 128x128 crops + protocols/) and
           --config.idnet.checkpoint=/ckpt/lightcnn29v2_msceleb.msgpack (flax params of
           vision_jax.models.LightCNN29v2(num_classes=...); converted MS-Celeb-1M weights).
           Paper (DVG-Face, TPAMI 2021, CASIA NIR-VIS 2.0, LightCNN-29, 10 folds): Rank-1 and
           VR@FAR=0.1 % both about 99.8-99.9 % (recalled in the project notes, not verified
           against the PDF); DVG's simplified code README, fold 1 only: Rank-1 99.9 %,
           VR@FAR=0.1 % 99.8 %, VR@FAR=0.01 % 98.9 %. See docs/dvg_face.md.
"""

import ml_collections

PRESETS = ("smoke", "default", "paper")
METHODS = ("real", "generated", "generated_strong")


def _optim(**kw):
  return ml_collections.ConfigDict(kw)


def get_config(preset: str = "default") -> ml_collections.ConfigDict:
  cfg = ml_collections.ConfigDict()
  cfg.seed = 0
  cfg.methods = ",".join(METHODS)
  # flax: the modules' initialisers; host: random kernels drawn with NumPy (smoke: no threefry
  # kernels to compile in the init programs; see vision_jax.hfr.host_param_init)
  cfg.param_init = "flax"
  cfg.setting = "embedded"  # embedded | casia
  cfg.data = ml_collections.ConfigDict(
    dict(
      image_size=32,
      modality="sketch",  # sketch (XDoG) | nir
      train_fraction=0.6,
      train_views=6,
      test_photos=3,
      test_probes=6,
      max_identities=0,
      num_folds=10,
      probe_fraction=0.5,
      eval_batch_size=256,
    )
  )
  # num_groups: MFM groups of LightCNN-9 (4 = the full net; fewer only for lightcnn9, smoke)
  cfg.model = ml_collections.ConfigDict(
    dict(name="lightcnn9", dropout_rate=0.5, conv_impl="auto", num_groups=4)
  )
  cfg.idnet = ml_collections.ConfigDict(
    dict(
      num_steps=480,
      batch_size=32,
      checkpoint="",  # a flax-msgpack params file replaces training (must match cfg.model)
      optim=_optim(name="adam", lr=2e-3, schedule="cosine", warmup_steps=20, weight_decay=1e-4),
    )
  )
  cfg.sampler = ml_collections.ConfigDict(
    dict(
      noise_dim=256,
      hidden=(1024, 1024, 512),
      kl_weight=1e-3,
      num_steps=400,
      batch_size=64,
      optim=_optim(name="adam", lr=1e-3, schedule="cosine"),
    )
  )
  cfg.gen = ml_collections.ConfigDict(
    dict(
      width=16,
      style_hidden=(256, 512),
      mid_res_blocks=1,  # decoder residual blocks per intermediate stage (official 1)
      last_res_blocks=2,  # ... of the last, AdaIN stage (official 2)
      variational=False,
      adversarial=False,
      disc_width=16,
      num_steps=480,
      batch_size=8,
      # official train_generator.py weights; kl / adv are the paper's extra terms (0 = off)
      w_ort=50.0,
      w_pix=100.0,
      w_swap=0.1,
      w_fake=0.1,
      w_ip=0.1,
      w_pair=0.05,
      w_kl=0.01,
      w_adv=0.1,
      optim_g=_optim(name="adam", lr=2e-4, b1=0.5, b2=0.999),
      optim_d=_optim(name="adam", lr=2e-4, b1=0.5, b2=0.999),
    )
  )
  cfg.sample = ml_collections.ConfigDict(
    dict(num_pairs=512, batch_size=64, attributes="real", grid_pairs=24)
  )
  cfg.recog = ml_collections.ConfigDict(
    dict(
      stage1_steps=30,
      stage2_steps=240,
      batch_size=32,  # real images per step
      fake_batch_size=16,  # generated pairs per step (methods "generated*")
      contrastive_weight=0.001,  # official train_lightcnn.py (method "generated")
      strong_contrastive_weight=0.1,  # ablation (method "generated_strong"), 100x official
      margin=0.5,
      negative_weight=0.1,
      optim_head=_optim(name="sgd", lr=1e-2, momentum=0.9, weight_decay=2e-4),
      optim=_optim(name="sgd", lr=3e-3, momentum=0.9, weight_decay=2e-4, schedule="cosine"),
    )
  )
  cfg.paper = ml_collections.ConfigDict(
    dict(root="", protocol="casia_nir_vis_2", folds=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10))
  )
  cfg.train = ml_collections.ConfigDict(
    dict(log_every=50, eval_every=0, checkpoint_every=0, keep_checkpoints=1, prefetch=2)
  )
  cfg.mesh = ml_collections.ConfigDict(dict(model=1))
  if preset == "smoke":
    cfg.data.image_size = 8  # the smallest the encoders and decoder build (one halving to 4x4)
    cfg.data.max_identities = 16
    cfg.data.train_views = 2
    cfg.data.test_photos = 2
    cfg.data.test_probes = 2
    cfg.data.num_folds = 2
    cfg.data.eval_batch_size = 32
    cfg.idnet.num_steps = 3
    cfg.idnet.optim.warmup_steps = 1
    cfg.idnet.batch_size = 16
    cfg.sampler.hidden = (16,)
    cfg.sampler.noise_dim = 8
    cfg.sampler.num_steps = 3
    cfg.sampler.batch_size = 16
    cfg.param_init = "host"
    cfg.model.num_groups = 1
    cfg.model.dropout_rate = 0.0
    cfg.model.conv_impl = "xla"  # the stock conv backward: fewer ops to compile
    cfg.gen.width = 4
    cfg.gen.style_hidden = (8,)
    cfg.gen.mid_res_blocks = 0
    cfg.gen.last_res_blocks = 0
    cfg.gen.disc_width = 4
    cfg.methods = "real,generated"
    cfg.gen.num_steps = 2
    cfg.gen.batch_size = 8
    cfg.sample.num_pairs = 16
    cfg.sample.batch_size = 8
    cfg.sample.grid_pairs = 4
    cfg.recog.stage1_steps = 2
    cfg.recog.stage2_steps = 2
    cfg.recog.batch_size = 16
    cfg.recog.fake_batch_size = 8
    cfg.train.log_every = 1
    cfg.mesh.data = 1  # one device: the smoke run checks plumbing, not sharding
  elif preset == "paper":
    cfg.setting = "casia"
    cfg.data.image_size = 128
    cfg.model.name = "lightcnn29v2"
    cfg.gen.width = 32
    cfg.gen.style_hidden = (1024, 2048)
    cfg.gen.batch_size = 8
    cfg.gen.num_steps = 20000  # ~5 epochs of the CASIA train lists at batch 8
    cfg.sample.num_pairs = 100000
    cfg.sample.batch_size = 50
    cfg.recog.batch_size = 64
    cfg.recog.fake_batch_size = 64
    cfg.recog.stage1_steps = 2000
    cfg.recog.stage2_steps = 23000
    cfg.recog.optim_head = _optim(name="sgd", lr=1e-3, momentum=0.9, weight_decay=2e-4)
    cfg.recog.optim = _optim(
      name="sgd", lr=1e-3, momentum=0.9, weight_decay=2e-4, schedule="step",
      decay_steps=(7667, 15333, 23000), decay_factor=0.457305051927326,
    )  # fmt: skip
  return cfg


def validate(cfg: ml_collections.ConfigDict) -> None:
  """Rejects invalid method / data / model / stage settings before any data is built.

  (The shared trainer checks each stage's ``optim*``, ``train`` and ``mesh``; the CASIA builder
  checks ``paper.root`` and the fold lists.)

  Raises:
    ConfigError: naming ``--config.<key>`` and its value.
  """
  from vision_jax.utils.config_checks import (
    check_choice,
    check_choices,
    check_number,
    check_numbers,
    config_error,
  )

  check_choices(cfg, "methods", METHODS)
  check_choice(cfg, "setting", ("embedded", "casia"))
  check_choice(cfg, "param_init", ("flax", "host"))
  d = "data"
  check_number(cfg, f"{d}.image_size", low=8, integer=True)
  check_choice(cfg, f"{d}.modality", ("sketch", "nir"))
  check_number(cfg, f"{d}.train_fraction", low=0, high=1, low_open=True, high_open=True)
  check_number(cfg, f"{d}.probe_fraction", low=0, high=1, low_open=True, high_open=True)
  for key in ("train_views", "test_photos", "test_probes", "num_folds", "eval_batch_size"):
    check_number(cfg, f"{d}.{key}", low=1, integer=True)
  check_number(cfg, f"{d}.max_identities", low=0, integer=True)
  check_choice(cfg, "model.name", ("lightcnn9", "lightcnn29v2"))
  check_choice(cfg, "model.conv_impl", ("auto", "xla", "einsum"))
  check_number(cfg, "model.dropout_rate", low=0, high=1, high_open=True)
  groups = check_number(cfg, "model.num_groups", low=1, high=4, integer=True)
  if groups != 4 and cfg.model.name != "lightcnn9":
    raise config_error(
      "model.num_groups", groups, f"4 with model.name={cfg.model.name!r} (fewer: lightcnn9 only)"
    )
  for sec in ("idnet", "sampler", "gen"):
    check_number(cfg, f"{sec}.num_steps", low=0 if sec == "idnet" else 1, integer=True)
    check_number(cfg, f"{sec}.batch_size", low=2, integer=True)
  check_number(cfg, "sampler.noise_dim", low=1, integer=True)
  check_numbers(cfg, "sampler.hidden", low=1, integer=True)
  check_number(cfg, "sampler.kl_weight", low=0)
  check_number(cfg, "gen.width", low=1, integer=True)
  check_number(cfg, "gen.disc_width", low=1, integer=True)
  check_numbers(cfg, "gen.style_hidden", low=1, integer=True)
  check_number(cfg, "gen.mid_res_blocks", low=0, integer=True)
  check_number(cfg, "gen.last_res_blocks", low=0, integer=True)
  for key in ("w_ort", "w_pix", "w_swap", "w_fake", "w_ip", "w_pair", "w_kl", "w_adv"):
    check_number(cfg, f"gen.{key}", low=0)
  check_number(cfg, "sample.num_pairs", low=1, integer=True)
  check_number(cfg, "sample.batch_size", low=1, integer=True)
  check_number(cfg, "sample.grid_pairs", low=0, integer=True)
  check_choice(cfg, "sample.attributes", ("real", "noise"))
  for key in ("stage1_steps", "stage2_steps"):
    check_number(cfg, f"recog.{key}", low=0, integer=True)
  for key in ("batch_size", "fake_batch_size"):
    check_number(cfg, f"recog.{key}", low=2, integer=True)
  for key in ("contrastive_weight", "strong_contrastive_weight", "negative_weight"):
    check_number(cfg, f"recog.{key}", low=0)
  check_number(cfg, "recog.margin", low=-1, high=1)
