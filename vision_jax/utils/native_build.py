"""Lazy build, cache and registration of C++ XLA FFI kernel libraries.

A :class:`NativeLibrary` compiles one C++ source on first use with
``g++ -O3 -std=c++17 -shared -fPIC [flags] -I<jax.ffi.include_dir()> -I<this folder>`` into
``<cache>/native/<name>_<hash>.so``; the hash covers the source and the headers it names, the
compiler command and the jaxlib version. The library is written to a temporary name and moved
into place with an atomic rename, so parallel processes (pytest workers) may compile
concurrently without seeing a half-written file. Nothing is downloaded. If no compiler is found
or the build fails, :meth:`NativeLibrary.available` returns ``False``, a warning names the reason
once, and callers fall back to their pure-XLA path. ``$CXX`` picks the compiler and
``VISION_JAX_NATIVE=0`` disables every native library without a warning.

Variants for different CPU features live in the same library (functions compiled with
``__attribute__((target(...)))``) and are picked at run time by the kernel itself through the
shared header ``native_cpu.h`` (next to this file, on the include path of every library), so one
cached build serves every machine of the same architecture. :data:`CPU_VARIANTS` names them;
:func:`variant_code` turns a name into the kernels' ``variant`` attribute.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence

import jax

CPU_VARIANTS = ("scalar", "avx2", "avx512")  # kernel attribute codes 1, 2, 3 (0 = auto)
CPU_HEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "native_cpu.h")


def variant_code(variant: str | None) -> int:
  """``None`` → 0 (the kernel picks the fastest the CPU supports), else 1 + index in
  :data:`CPU_VARIANTS`.

  Raises:
    ValueError: unknown variant name.
  """
  if variant is None:
    return 0
  if variant not in CPU_VARIANTS:
    raise ValueError(f"variant={variant!r} must be None or one of {CPU_VARIANTS}.")
  return CPU_VARIANTS.index(variant) + 1


def default_num_threads() -> int:
  """Cores this process may run on (``os.sched_getaffinity``, else ``os.cpu_count()``)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1


class NativeLibrary:
  """One lazily compiled FFI kernel library.

  Args:
    name: file stem of the cached library (``<name>_<hash>.so``).
    label: what the kernels belong to, for warnings and errors (e.g. ``"vision_jax.search"``).
    source: path of the C++ source.
    targets: FFI handler symbols registered for the CPU platform after loading.
    cache_dir: zero-argument callable giving the cache root (read at build time, so
      ``$VISION_JAX_CACHE`` set by a test is honoured).
    headers: extra files the source includes; their contents enter the hash.
    flags: extra compiler flags (e.g. ``("-pthread",)``).
  """

  def __init__(
    self,
    name: str,
    label: str,
    source: str,
    targets: Sequence[str],
    *,
    cache_dir: Callable[[], str],
    headers: Sequence[str] = (),
    flags: Sequence[str] = (),
  ):
    self.name, self.label, self.source, self.targets = name, label, source, tuple(targets)
    self.headers, self.flags, self._cache_dir = tuple(headers), tuple(flags), cache_dir
    self._lock = threading.Lock()
    self._state: dict = {}

  def compile_command(self, cxx: str, src: str, out: str) -> list[str]:
    inc = ["-I", jax.ffi.include_dir(), "-I", os.path.dirname(CPU_HEADER)]
    return [cxx, "-O3", "-std=c++17", "-shared", "-fPIC", *self.flags, *inc, src, "-o", out]

  def library_path(self) -> str:
    """Where the compiled library lives (``<cache>/native/<name>_<hash>.so``)."""
    import jaxlib

    cxx = os.environ.get("CXX", "g++")
    h = hashlib.sha256()
    for path in (self.source, CPU_HEADER, *self.headers):
      with open(path, "rb") as f:
        h.update(f.read())
    h.update(" ".join(self.compile_command(cxx, "SRC", "OUT")).encode())
    h.update(jaxlib.__version__.encode())
    return os.path.join(self._cache_dir(), "native", f"{self.name}_{h.hexdigest()[:16]}.so")

  def build(self) -> str:
    """Compiles the library unless the cached file exists; returns its path.

    Raises:
      RuntimeError: no compiler on ``PATH`` or the compiler failed (its stderr tail included).
    """
    path = self.library_path()
    if os.path.exists(path):
      return path
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
      raise RuntimeError(f"no C++ compiler: {cxx!r} not found on PATH (set $CXX or install g++)")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(path))
    os.close(fd)
    try:
      proc = subprocess.run(
        self.compile_command(cxx, self.source, tmp), capture_output=True, text=True, timeout=300
      )
      if proc.returncode != 0:
        raise RuntimeError(f"{cxx} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
      os.replace(tmp, path)  # atomic: concurrent builders each publish a complete file
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)
    return path

  def available(self) -> bool:
    """Compiles (once per process and source version), loads and registers the kernels.

    Returns ``False`` (with one warning naming the reason) when that fails; the env var
    ``VISION_JAX_NATIVE=0`` disables the native kernels without a warning.
    """
    with self._lock:
      if "ok" in self._state:
        return self._state["ok"]
      if os.environ.get("VISION_JAX_NATIVE", "1") == "0":
        self._state.update(ok=False, reason="disabled by VISION_JAX_NATIVE=0")
        return False
      try:
        lib = ctypes.cdll.LoadLibrary(self.build())
        for t in self.targets:
          jax.ffi.register_ffi_target(t, jax.ffi.pycapsule(getattr(lib, t)), platform="cpu")
        self._state.update(ok=True, lib=lib, reason="")
      except Exception as e:  # noqa: BLE001 — any build/load failure means "use the XLA path"
        self._state.update(ok=False, reason=f"{type(e).__name__}: {e}")
        warnings.warn(
          f"{self.label} native kernels unavailable ({self._state['reason']}); "
          "falling back to the XLA path",
          RuntimeWarning,
          stacklevel=3,
        )
      return self._state["ok"]

  def unavailable_reason(self) -> str:
    """Why :meth:`available` returned ``False`` (empty if it did not, or was not called)."""
    return self._state.get("reason", "")

  def reset(self) -> None:
    """Forgets the load result, so the next :meth:`available` tries again (tests)."""
    with self._lock:
      self._state = {}

  @property
  def lib(self) -> ctypes.CDLL:
    """The loaded library (call :meth:`available` first)."""
    if not self.available():
      raise RuntimeError(f"{self.label} native kernels unavailable ({self.unavailable_reason()})")
    return self._state["lib"]
