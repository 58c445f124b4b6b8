"""The host allocator policy: freed blocks are reused instead of re-page-faulted."""

import platform
import subprocess
import sys
import textwrap

import pytest

from vision_jax.utils.host_memory import keep_freed_host_memory

_CHILD = textwrap.dedent(
  """
  import sys
  import numpy as np
  def rss():
    with open("/proc/self/status") as f:
      return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))
  if sys.argv[1] == "tuned":
    from vision_jax.utils.host_memory import keep_freed_host_memory
    assert keep_freed_host_memory()
  a = np.ones(64 << 18, np.float32)  # 64 MiB, above glibc's largest dynamic mmap threshold
  held = rss()
  del a
  print(held - rss())  # bytes given back to the OS by the free
  """
)


def _returned_bytes(mode):
  out = subprocess.run(
    [sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True
  )
  return int(out.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc-only")
def test_tuned_allocator_keeps_freed_blocks_mapped_for_reuse():
  block = 64 << 20
  default, tuned = _returned_bytes("default"), _returned_bytes("tuned")
  assert default > 0.9 * block, default  # glibc: munmap, the next step faults it in again
  assert tuned < 0.1 * block, tuned  # tuned: the block stays in the heap, mapped


def test_bad_threshold():
  with pytest.raises(ValueError, match="threshold_bytes=0"):
    keep_freed_host_memory(0)
