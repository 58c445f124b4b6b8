"""Native CPU Hamming top-k (C++ through the XLA FFI) with run-time CPU dispatch.

The source ``native_hamming.cc`` (next to this file) is compiled on first use into
``<cache>/native/vj_hamming_<hash>.so`` by :class:`vision_jax.utils.native_build.NativeLibrary`
(cached, atomic publish, nothing downloaded). If no compiler is found or the build fails,
:func:`available` returns ``False`` with one warning and :func:`~vision_jax.hashing.hamming_topk`
falls back to its XLA path.

The kernel XORs and popcounts packed codes in database blocks of ~256 KiB that stay in L2 while
every query of a thread passes over them (four queries per pass), keeps each query's best ``k`` in
a buffer of ``2k + 32`` integer keys ``distance << 32 | index`` cut back with ``nth_element``, and
splits the queries over ``num_threads`` threads. The variant is picked at run time from the
CPU's features (:func:`best_variant`), or forced:

* ``"scalar"``: portable C++, any code length.
* ``"avx2"``: 8- and 16-byte codes with 256-bit nibble-table popcounts (``pshufb`` + ``sad``);
  other lengths one code at a time with the ``popcnt`` instruction.
* ``"avx512"``: 8- and 16-byte codes with 512-bit ``VPOPCNTQ`` (AVX-512F + VPOPCNTDQ); other
  lengths as ``"avx2"``.

All variants compute the same integers, and results equal the XLA path: sorted by (distance,
database index).
"""

from __future__ import annotations

import ctypes
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.search.data import default_cache_dir
from vision_jax.utils.native_build import CPU_VARIANTS, NativeLibrary, variant_code
from vision_jax.utils.native_build import default_num_threads as default_num_threads

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "native_hamming.cc")
VARIANTS = CPU_VARIANTS
_LIB = NativeLibrary(
  "vj_hamming",
  "vision_jax.hashing",
  SOURCE,
  ("vj_hamming_topk",),
  cache_dir=default_cache_dir,
  flags=("-pthread",),
)


def available() -> bool:
  """Compiles (once per process and source version), loads and registers the kernel.

  Returns ``False`` (with one warning naming the reason) when that fails; ``VISION_JAX_NATIVE=0``
  disables it without a warning.
  """
  return _LIB.available()


def unavailable_reason() -> str:
  """Why :func:`available` returned ``False`` (empty if it did not, or was not called)."""
  return _LIB.unavailable_reason()


def _fn(name: str):
  f = getattr(_LIB.lib, name)
  f.restype, f.argtypes = ctypes.c_int64, [ctypes.c_int64] if name.endswith("supported") else []
  return f


def supported_variants() -> tuple[str, ...]:
  """Kernel variants this CPU can run, slowest first (``"scalar"`` is always there).

  Raises:
    RuntimeError: the kernel could not be built (reason in the message).
  """
  f = _fn("vj_hamming_supported")
  return tuple(v for i, v in enumerate(VARIANTS, 1) if f(i))


def best_variant() -> str:
  """The variant the kernel picks when none is forced (the fastest this CPU supports)."""
  return VARIANTS[_fn("vj_hamming_best_variant")() - 1]


@functools.partial(jax.jit, static_argnames=("k", "num_threads", "variant"))
def topk(queries, database, *, k: int, num_threads: int, variant: str | None = None):
  """Exact Hamming top-``k`` by the native kernel (inputs as for ``hamming_topk``, unchecked).

  Args:
    queries: ``[Q, W]`` uint8/uint32 words; database: ``[N, W]`` of the same dtype.
    k: neighbours, ``1 <= k <= N`` (the kernel fails otherwise).
    num_threads: threads the queries are split over (whole 4-query tiles per thread).
    variant: one of :data:`VARIANTS` this CPU supports, or ``None`` for :func:`best_variant`.

  Returns:
    ``(distances, indices)`` int32 ``[Q, k]`` sorted by (distance, index).

  Raises:
    RuntimeError: the kernel could not be built.
  """
  if not available():
    raise RuntimeError(f"vision_jax.hashing native kernel unavailable ({unavailable_reason()})")
  nq = queries.shape[0]
  out = (jax.ShapeDtypeStruct((nq, k), jnp.int32),) * 2
  code = variant_code(variant)
  call = jax.ffi.ffi_call("vj_hamming_topk", out, vmap_method="sequential")
  return call(queries, database, num_threads=np.int64(num_threads), variant=np.int64(code))
