"""Config presets and ``--config.a.b=value`` overrides: typed parsing and clear errors."""

import pytest

from vision_jax.utils import ConfigError, load_config, parse_launch_args


def test_override_types_are_parsed():
  cfg, args = parse_launch_args(
    "classification",
    [
      "--preset=smoke",
      "--workdir=/tmp/x",
      "--config.optim.lr=0.5",
      "--config.train.num_steps=3",
      "--config.data.flip=false",
      "--config.model.widths=(4,4,8,8)",
      "--config.optim.name=sgd",
    ],
  )
  assert cfg.optim.lr == 0.5 and isinstance(cfg.optim.lr, float)
  assert cfg.train.num_steps == 3 and cfg.data.flip is False
  assert tuple(cfg.model.widths) == (4, 4, 8, 8) and cfg.optim.name == "sgd"
  assert args.workdir == "/tmp/x" and cfg.preset == "smoke"


def test_int_to_float_field():
  cfg = load_config("classification", "smoke", {"optim.lr": "1"})
  assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)


def test_unknown_preset_lists_choices():
  with pytest.raises(ConfigError, match=r"unknown preset 'fast'.*smoke, default, paper"):
    load_config("classification", "fast")


def test_unknown_key_suggests_close_match():
  with pytest.raises(ConfigError, match=r"unknown config key 'optim.lrr'.*Did you mean optim.lr"):
    load_config("classification", "smoke", {"optim.lrr": "0.1"})


def test_bad_value_type():
  with pytest.raises(ConfigError, match=r"train.num_steps=abc.*int"):
    load_config("classification", "smoke", {"train.num_steps": "abc"})
  with pytest.raises(ConfigError, match=r"boolean"):
    load_config("classification", "smoke", {"data.flip": "maybe"})


def test_unknown_experiment():
  with pytest.raises(ConfigError, match="no experiment 'nope'"):
    load_config("nope", "smoke")


def test_cli_rejects_stray_argument():
  with pytest.raises(SystemExit):
    parse_launch_args("classification", ["--preset=smoke", "--lr=3"])


def test_runtime_flags(tmp_path, monkeypatch):
  import jax

  from vision_jax.train import setup_runtime

  monkeypatch.setenv("VISION_JAX_DISTRIBUTED", "1")
  _, args = parse_launch_args("classification", ["--preset=smoke"])
  assert args.distributed is True and args.workdir.endswith("classification/smoke")
  old = jax.config.jax_compilation_cache_dir
  try:
    setup_runtime(compilation_cache=str(tmp_path / "cc"))
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "cc")
    assert (tmp_path / "cc").is_dir()
  finally:
    jax.config.update("jax_compilation_cache_dir", old)


def test_launcher_exits_with_the_config_error(capsys):
  from experiments.classification.__main__ import main

  with pytest.raises(SystemExit, match=r"error: unknown config key 'train.num_stepz'"):
    main(["--preset=smoke", "--config.train.num_stepz=3"])


def test_launcher_runs_and_reports(tmp_path, capsys):
  from experiments.lrpea.__main__ import main

  main(["--preset=smoke", f"--workdir={tmp_path}"])
  out = capsys.readouterr().out
  assert "Total wall time" in out and str(tmp_path) in out
  assert (tmp_path / "summary.json").exists()
