"""Every experiment config is validated by load_config before any work: ConfigError naming the key."""

import time

import pytest

from vision_jax.utils import ConfigError, load_config, parse_launch_args

SLUGS = (
  "avq",
  "classification",
  "crn",
  "dmuh",
  "dvg_face",
  "hambox",
  "ir_softmax",
  "lrpea",
  "tf_nas",
)


@pytest.mark.parametrize("slug", SLUGS)
@pytest.mark.parametrize("preset", ["smoke", "default"])
def test_presets_pass_validation(slug, preset):
  load_config(slug, preset)


@pytest.mark.parametrize("slug", ["classification", "crn", "dmuh", "ir_softmax", "lrpea", "tf_nas"])
def test_paper_presets_pass_validation(slug):
  load_config(slug, "paper")


def test_avq_paper_needs_the_hdf5_file(tmp_path):
  with pytest.raises(ConfigError, match=r"--config.data.hdf5_path='' is invalid.*hdf5"):
    load_config("avq", "paper")
  missing = str(tmp_path / "glove-100-angular.hdf5")
  with pytest.raises(ConfigError, match=rf"--config.data.hdf5_path='{missing}' is invalid"):
    load_config("avq", "paper", {"data.hdf5_path": missing})
  (tmp_path / "glove-100-angular.hdf5").write_bytes(b"")
  load_config("avq", "paper", {"data.hdf5_path": missing})


_CASES = [
  # lrpea: unknown method / case, bad cells, spike, correlations, solver
  ("lrpea", {"methods": "('lrpea','svd')"}, r"--config.methods=\('lrpea', 'svd'\).*unknown: 'svd'"),
  ("lrpea", {"methods": "()"}, r"--config.methods=\(\) is invalid: expected a non-empty"),
  ("lrpea", {"cases": "('toeplitz',)"}, r"--config.cases=\('toeplitz',\).*unknown: 'toeplitz'"),
  ("lrpea", {"cells": "((6,6,7),)"}, r"--config.cells=\(\(6, 6, 7\),\).*1 <= r <= min\(p1, p2\)"),
  ("lrpea", {"cells": "((0,6,1),)"}, r"--config.cells=\(\(0, 6, 1\),\).*element 0 is \(0, 6, 1\)"),
  ("lrpea", {"cells": "((6,6),)"}, r"--config.cells=.*\(p1, p2, r\)"),
  ("lrpea", {"structured_shapes": "((6,),)"}, r"--config.structured_shapes=.*\(p1, p2\)"),
  ("lrpea", {"spike": "-3"}, r"--config.spike=-3.0 is invalid: expected a finite number in \(0"),
  ("lrpea", {"spike": "0"}, r"--config.spike=0.0"),
  ("lrpea", {"circulant_rho": "1.0"}, r"--config.circulant_rho=1.0"),
  ("lrpea", {"kronecker_rho": "-1.0"}, r"--config.kronecker_rho=-1.0"),
  ("lrpea", {"n_fractions": "(0.5, -1.0)"}, r"--config.n_fractions=.*element 1 is -1.0"),
  ("lrpea", {"num_seeds": "0"}, r"--config.num_seeds=0"),
  ("lrpea", {"solver.tol": "0.0"}, r"--config.solver.tol=0.0"),
  ("lrpea", {"solver.num_restarts": "0"}, r"--config.solver.num_restarts=0"),
  ("lrpea", {"tpower.cardinality": "many"}, r"--config.tpower.cardinality='many'.*'dof'"),
  ("lrpea", {"sparsepca.num_seeds": "0"}, r"--config.sparsepca.num_seeds=0"),
  # ir_softmax: ratios below 1, unknown methods / settings, loss ranges, model
  ("ir_softmax", {"closed.imbalance_ratios": "(0.5,)"}, r"imbalance_ratios=\(0.5,\).*\[1, inf\)"),
  ("ir_softmax", {"closed.imbalance_ratios": "()"}, r"imbalance_ratios=\(\)"),
  ("ir_softmax", {"closed.imbalance_ratios": "(10.0, 10)"}, r"imbalance_ratios=.*distinct"),
  ("ir_softmax", {"methods": "softmax,ir_svd"}, r"--config.methods='softmax,ir_svd'.*'ir_svd'"),
  ("ir_softmax", {"settings": "closed,cifar"}, r"--config.settings='closed,cifar'.*'cifar'"),
  ("ir_softmax", {"open.far": "1.5"}, r"--config.open.far=1.5"),
  ("ir_softmax", {"open.train_fraction": "1.0"}, r"--config.open.train_fraction=1.0"),
  ("ir_softmax", {"open.imbalance_ratio": "0.5"}, r"--config.open.imbalance_ratio=0.5"),
  ("ir_softmax", {"loss.arc_margin": "2.0"}, r"--config.loss.arc_margin=2.0"),
  ("ir_softmax", {"loss.a_margin": "0"}, r"--config.loss.a_margin=0"),
  ("ir_softmax", {"loss.center_momentum": "1.5"}, r"--config.loss.center_momentum=1.5"),
  ("ir_softmax", {"model.name": "vgg16"}, r"--config.model.name='vgg16'.*convnet"),
  ("ir_softmax", {"model.embed_dim": "0"}, r"--config.model.embed_dim=0"),
  # classification: model.dtype lists the valid dtypes
  (
    "classification",
    {"model.dtype": "float12"},
    r"--config.model.dtype='float12' is invalid: expected one of 'float32', 'bfloat16', 'float16'",
  ),
  ("classification", {"model.conv_impl": "cudnn"}, r"--config.model.conv_impl='cudnn'"),
  ("classification", {"model.widths": "(8, 0)"}, r"--config.model.widths=\(8, 0\)"),
  # dmuh
  ("dmuh", {"dmuh.bit_weight": "-1"}, r"--config.dmuh.bit_weight=-1.0.*\[0, inf\)"),
  ("dmuh", {"dmuh.base": "triplet"}, r"--config.dmuh.base='triplet'.*'center', 'pairwise'"),
  ("dmuh", {"methods": "dpsh,hashnet"}, r"--config.methods='dpsh,hashnet'.*'hashnet'"),
  ("dmuh", {"bits": "(16, 0)"}, r"--config.bits=\(16, 0\)"),
  ("dmuh", {"dmuh.momentum": "1.2"}, r"--config.dmuh.momentum=1.2"),
  ("dmuh", {"dmuh.discrepancy": "kl"}, r"--config.dmuh.discrepancy='kl'"),
  # avq
  (
    "avq",
    {"num_centers": "8"},
    r"--config.num_centers=8 is invalid: expected one of 2, 4, 16, 256",
  ),
  ("avq", {"thresholds": "(0.0, 1.0)"}, r"--config.thresholds=\(0.0, 1.0\)"),
  ("avq", {"threshold_mode": "relative"}, r"--config.threshold_mode='relative'"),
  ("avq", {"data.source": "glove"}, r"--config.data.source='glove'"),
  ("avq", {"codebook_update": "lloyd"}, r"--config.codebook_update='lloyd'"),
  ("avq", {"k": "0"}, r"--config.k=0"),
  # crn: methods, metric, episode counts, CRN weights, split fractions
  ("crn", {"methods": "protonet,maml"}, r"--config.methods='protonet,maml'.*unknown: 'maml'"),
  ("crn", {"protonet.metric": "l1"}, r"--config.protonet.metric='l1'.*'sqeuclidean', 'cosine'"),
  ("crn", {"episode.ways": "1"}, r"--config.episode.ways=1.*\[2, inf\)"),
  ("crn", {"eval.shots": "(1, 0)"}, r"--config.eval.shots=\(1, 0\).*element 1 is 0"),
  ("crn", {"crn.mix": "1.5"}, r"--config.crn.mix=1.5"),
  ("crn", {"crn.base_weight": "-1"}, r"--config.crn.base_weight=-1.0"),
  ("crn", {"data.fractions": "(0.6, 0.3, 0.3)"}, r"--config.data.fractions=.*summing to <= 1"),
  ("crn", {"data.name": "tiered"}, r"--config.data.name='tiered'"),
  # dvg_face: methods, modality, loss weights, sampling
  ("dvg_face", {"methods": "real,fake"}, r"--config.methods='real,fake'.*unknown: 'fake'"),
  ("dvg_face", {"data.modality": "thermal"}, r"--config.data.modality='thermal'.*'sketch', 'nir'"),
  ("dvg_face", {"gen.w_pix": "-1"}, r"--config.gen.w_pix=-1.0"),
  ("dvg_face", {"sample.attributes": "mixed"}, r"--config.sample.attributes='mixed'"),
  ("dvg_face", {"model.name": "resnet50"}, r"--config.model.name='resnet50'"),
  # m2fpa: methods, split sizes, yaw bins, GAN objective
  ("m2fpa", {"methods": "baseline,cyclegan"}, r"--config.methods=.*unknown: 'cyclegan'"),
  ("m2fpa", {"data.num_test": "60"}, r"--config.data.num_test=60.*below data.num_identities"),
  ("m2fpa", {"gen.adversarial": "wgan"}, r"--config.gen.adversarial='wgan'"),
  ("m2fpa", {"data.large_yaw": "10"}, r"--config.data.large_yaw=10.0"),
  ("m2fpa", {"gen.w_pixel": "-1"}, r"--config.gen.w_pixel=-1.0"),
  ("m2fpa", {"recog.model": "vgg"}, r"--config.recog.model='vgg'"),
  # hambox: thresholds, anchors, data ranges
  ("hambox", {"detection.t2": "0.2"}, r"--config.detection.t2=0.2.*\[0.35, 1\]"),
  ("hambox", {"model.sizes": "(16,)"}, r"--config.model.sizes=\(16,\).*one anchor size per stride"),
  ("hambox", {"methods": "standard,retina"}, r"--config.methods=.*unknown: 'retina'"),
  ("hambox", {"data.faces_per_image": "(5, 2)"}, r"--config.data.faces_per_image=\(5, 2\)"),
  ("hambox", {"detection.k": "0"}, r"--config.detection.k=0"),
  ("hambox", {"test.scales": "(1.0, 0.0)"}, r"--config.test.scales=.*element 1 is 0.0"),
  # tf_nas: table protocol, targets, search schedule, retrain
  ("tf_nas", {"lut.calibrate_archs": "-1"}, r"--config.lut.calibrate_archs=-1.*\[0, inf\)"),
  ("tf_nas", {"lut.rounds": "0"}, r"--config.lut.rounds=0"),
  ("tf_nas", {"target_fractions": "(0.5, 1.5)"}, r"--config.target_fractions=.*element 1 is 1.5"),
  ("tf_nas", {"targets_ms": "(2.0, -1.0)"}, r"--config.targets_ms=.*element 1 is -1.0"),
  (
    "tf_nas",
    {"search.warmup_epochs": "2"},
    r"--config.search.warmup_epochs=2.*below search.epochs=2",
  ),
  ("tf_nas", {"search.tau_decay": "1.5"}, r"--config.search.tau_decay=1.5"),
  ("tf_nas", {"retrain.dropout": "1.0"}, r"--config.retrain.dropout=1.0"),
]


@pytest.mark.parametrize(
  "slug,overrides,match", _CASES, ids=[f"{c[0]}-{next(iter(c[1]))}" for c in _CASES]
)
def test_bad_value_names_key(slug, overrides, match):
  with pytest.raises(ConfigError, match=match):
    load_config(slug, "smoke", overrides)


def test_lrpea_cardinality_accepts_dof_and_digits():
  assert load_config("lrpea", "smoke", {"tpower.cardinality": "40"}).tpower.cardinality == "40"
  with pytest.raises(ConfigError, match=r"--config.tpower.cardinality='0'"):
    load_config("lrpea", "smoke", {"tpower.cardinality": "0"})


def test_validation_happens_before_any_work():
  # The lrpea case that used to fail after ~11 s of sampling now fails at launch.
  t = time.perf_counter()
  with pytest.raises(ConfigError, match="toeplitz"):
    parse_launch_args("lrpea", ["--preset=default", "--config.cases=('spiked','toeplitz')"])
  assert time.perf_counter() - t < 5.0


def test_lrpea_study_validates_an_edited_config(tmp_path):
  from experiments.lrpea import study

  cfg = load_config("lrpea", "smoke")
  cfg.methods = ("lrpea", "svd")
  with pytest.raises(ConfigError, match="unknown: 'svd'"):
    study.run(cfg, str(tmp_path))
  assert not (tmp_path / "summary.json").exists()


def test_ir_softmax_fractional_ratio_is_kept():
  # 2.5 is a valid ratio and must run as 2.5 (it used to run as int(2.5) = 2).
  cfg = load_config("ir_softmax", "smoke", {"closed.imbalance_ratios": "(2.5, 10)"})
  assert tuple(cfg.closed.imbalance_ratios) == (2.5, 10.0)
  names = [f"closed_lt{float(r):g}" for r in cfg.closed.imbalance_ratios]
  assert names == ["closed_lt2.5", "closed_lt10"]
  assert float(names[0][len("closed_lt") :]) == 2.5


def test_compute_dtype_helper():
  import jax.numpy as jnp

  from vision_jax.models import compute_dtype, get_model

  assert compute_dtype("bfloat16") == jnp.bfloat16
  with pytest.raises(
    ValueError, match=r"model.dtype='float12' is not a compute dtype; valid: float32"
  ):
    compute_dtype("float12", key="model.dtype")
  with pytest.raises(ValueError, match=r"dtype='float12'"):
    get_model("convnet", num_classes=10, dtype="float12")
  assert get_model("convnet", num_classes=10, dtype="bfloat16").dtype == jnp.bfloat16


@pytest.mark.parametrize(
  "module,flag,match",
  [
    ("experiments.lrpea.__main__", "--config.methods=('lrpea','svd')", "unknown: 'svd'"),
    ("experiments.classification.__main__", "--config.model.dtype=float12", "model.dtype"),
    ("experiments.ir_softmax.__main__", "--config.closed.imbalance_ratios=(0.5,)", "ratios"),
  ],
)
def test_cli_exits_with_the_config_error(module, flag, match, tmp_path):
  import importlib

  main = importlib.import_module(module).main
  with pytest.raises(SystemExit) as e:
    main(["--preset=smoke", f"--workdir={tmp_path}", flag])
  assert str(e.value).startswith("error: --config.") and match in str(e.value)
  assert not any(tmp_path.iterdir())  # nothing was written: no work started
