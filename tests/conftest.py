"""Strict test configuration: 8 fake CPU devices, rank promotion raises, one compilation cache.

The device count must be set before JAX initialises its backends, so this runs at import time of
the conftest (pytest imports it before any test module).

Many tests compile the same programs (the same model's init, train and eval steps in several
tests, a killed run and its resume in two subprocesses), so each pytest process (each xdist
worker) keeps a persistent XLA compilation cache in a private temporary directory for the
session, and the subprocesses tests launch share it through ``VISION_JAX_COMPILATION_CACHE``
(read by the launcher). A cached executable is the one the compiler produced, so results do not
change; an entry left half-written by a killed subprocess is reported by JAX as unreadable and
compiled again.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

_XLA_CACHE = tempfile.mkdtemp(prefix="vision_jax_test_xla_cache_")
atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)
os.environ["VISION_JAX_COMPILATION_CACHE"] = _XLA_CACHE
jax.config.update("jax_compilation_cache_dir", _XLA_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(scope="session")
def num_devices():
  n = jax.device_count()
  assert n == 8, f"tests expect 8 fake CPU devices, got {n}; is XLA_FLAGS overridden?"
  return n
