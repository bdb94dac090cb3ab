"""Keep the memory of freed tensors in the process instead of handing it back to the OS after every step."""

from __future__ import annotations

import ctypes
import os
import sys

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 1 << 30  # free memory kept at the top of the heap before any is returned
USER_SETTINGS = (
    "MALLOC_MMAP_MAX_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "GLIBC_TUNABLES",
)


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to reuse freed memory for the next step's tensors; return whether it was applied.

    The rule: on Linux with glibc, every block comes from the heap (no mmap) and up to 1 GiB of freed memory stays
    there, unless the user set malloc's environment variables. By default glibc maps each large block afresh and
    unmaps it when freed, so every CPU step page-faults its activations in again. The cost: the process keeps the
    memory of its peak (fragmentation may add to it), as do forked DataLoader workers. Process-wide, so only the
    ``ssd`` commands that run models call it (train, eval, predict, demo). ``benchmarks/bench_speed_patches.py``
    measures a step with and without it; ``benchmarks/results.md`` holds the figures.
    """
    if not sys.platform.startswith("linux") or any(name in os.environ for name in USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # another C library (musl)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # a block that the heap cannot hold (another thread's arena is capped at 64 MiB) is retried in the main heap
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
