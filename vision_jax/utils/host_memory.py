"""Host (CPU) allocator policy: keep freed memory for reuse instead of unmapping it every step.

XLA:CPU allocates each executable's temporaries as one block per call (62 MB for the B=512,
C=10k margin-loss step) and its outputs as separate blocks, then frees them when the call
returns. glibc's ``malloc`` serves blocks above ``M_MMAP_THRESHOLD`` (dynamic, at most 32 MiB)
with a fresh ``mmap`` and returns them with ``munmap``, so every step page-faults its whole
working set again (4 KiB at a time, zero-filled by the kernel). On the 2-core dev machine that is
~18 ms of a 67 ms ``[512, 512] x [512, 10000]`` matmul on one thread, and ~40 ms of the 215 ms
margin-loss step (``benchmarks/bench_margin_loss.py --allocator=default`` vs ``tuned``).

``keep_freed_host_memory()`` raises both glibc thresholds (``mallopt``) so freed blocks stay in
the heap and the next step reuses pages that are already mapped: the same effect as running under
tcmalloc/jemalloc, without a preload. The cost is that the process keeps its peak heap (it is
not returned to the OS until exit), which is what a training process wants anyway.

Choice: applied by default in ``vision_jax.utils.launch`` (every experiment) and in the
benchmarks for both libraries compared; ``--host_allocator=default`` or
``VISION_JAX_HOST_ALLOCATOR=default`` turns it off. A no-op (returns False) off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

#: glibc ``mallopt`` parameter ids (``malloc.h``).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: Blocks below this are served from the heap and reused; 1 GiB covers any single XLA buffer of
#: the models here.
DEFAULT_THRESHOLD_BYTES = 1 << 30


def keep_freed_host_memory(threshold_bytes: int = DEFAULT_THRESHOLD_BYTES) -> bool:
  """Serve host blocks up to ``threshold_bytes`` from the heap and never trim it below 2x that.

  Args:
    threshold_bytes: the ``M_MMAP_THRESHOLD`` to set (``M_TRIM_THRESHOLD`` is twice it).

  Returns:
    True if glibc accepted both settings, False elsewhere (musl, macOS, Windows) or if it
    refused them; nothing else changes in that case.
  """
  if threshold_bytes <= 0:
    raise ValueError(f"threshold_bytes={threshold_bytes} must be positive.")
  if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
    return False
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return False
  mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
  mallopt.restype = ctypes.c_int
  value = min(int(threshold_bytes), 2**31 - 1)
  ok_mmap = mallopt(_M_MMAP_THRESHOLD, value) == 1
  ok_trim = mallopt(_M_TRIM_THRESHOLD, min(2 * value, 2**31 - 1)) == 1
  return ok_mmap and ok_trim
