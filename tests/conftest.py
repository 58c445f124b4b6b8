"""Strict test configuration: 8 fake CPU devices, rank promotion raises.

The device count must be set before JAX initialises its backends, so this runs at import time of
the conftest (pytest imports it before any test module).
"""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session")
def num_devices():
  n = jax.device_count()
  assert n == 8, f"tests expect 8 fake CPU devices, got {n}; is XLA_FLAGS overridden?"
  return n


@pytest.fixture
def compile_cache(tmp_path_factory):
  """A persistent XLA compilation cache private to one test, so the programs its runs share
  (the same init and eval step of every method in a sweep, the same model on two data settings)
  compile once. Removed again after the test."""
  from jax.experimental.compilation_cache import compilation_cache as cc

  old = jax.config.jax_compilation_cache_dir
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("xla_cache")))
  cc.reset_cache()
  yield
  jax.config.update("jax_compilation_cache_dir", old)
  cc.reset_cache()
