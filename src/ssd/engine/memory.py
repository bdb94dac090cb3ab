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

    By default glibc maps every large block afresh and unmaps it when freed, so each CPU step page-faults its
    activations in again: the shapes preset's training step spent about 45 ms of its 200 in the kernel (12,000
    faults), SSD300's batch-8 training step 4.6 s of 15 (1.2 million faults). Here every block comes from the heap
    (no mmap) and up to 1 GiB of freed memory stays there: the SSD300 step took 11.7 s, batch-8 inference 3.5 s
    instead of 4.2. The cost: the process keeps the memory of its peak (fragmentation may add to it) instead of
    returning it, as do forked DataLoader workers. Process-wide, so only the ``ssd`` commands that run models call
    it (train, eval, predict, demo); a no-op outside Linux glibc or when the user set malloc's environment variables.
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
