"""keep_freed_memory: large blocks come from malloc's heap, and a step's freed memory is reused by the next step
instead of being handed back to the OS and page-faulted in again."""

import os
import subprocess
import sys

import pytest

from ssd.engine import memory

# Run in a fresh interpreter, as malloc's settings are process-wide, with the module loaded on its own (no torch:
# quick). Prints two numbers: the bytes glibc mapped afresh for one 100 MB block, and the page faults of a training
# step in miniature (100 MB in 4 MB blocks, written, all freed at the end) once the heap has grown.
PROBE = """
import ctypes, importlib.util, resource, sys
if sys.argv[1] == "keep":
    spec = importlib.util.spec_from_file_location("memory", sys.argv[2])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.keep_freed_memory()
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def block(size):
    pointer = libc.malloc(size)
    ctypes.memset(pointer, 1, size)  # written, as a tensor is
    return pointer
mapped = libc.mallinfo2().hblkhd
big = block(100_000_000)
mapped = libc.mallinfo2().hblkhd - mapped
libc.free(big)
import threading
from_thread = []  # another thread's arena holds at most 64 MiB: the block must still be served
thread = threading.Thread(target=lambda: from_thread.append(libc.malloc(100_000_000)))
thread.start()
thread.join()
assert from_thread[0], "malloc of 100 MB in a thread failed"
libc.free(from_thread[0])
def step():
    for pointer in [block(4_000_000) for _ in range(25)]:
        libc.free(pointer)
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(mapped, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


def _probe(mode: str) -> tuple[float, float]:
    command = [sys.executable, "-c", PROBE, mode, memory.__file__]
    mapped, faults = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
    return float(mapped), float(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and mallinfo2")
@pytest.mark.skipif(any(name in os.environ for name in memory.USER_SETTINGS), reason="malloc set up by the user")
def test_large_blocks_come_from_the_heap_and_stay_there() -> None:
    # glibc's default: a fresh mapping for the big block, returned to the OS when freed (and the step's 100 MB
    # faulted in again every step: about 24,000 pages of 4 KiB here, fewer with transparent huge pages)
    default_mapped, _ = _probe("default")
    assert default_mapped >= 100e6
    kept_mapped, kept_faults = _probe("keep")
    assert kept_mapped == 0
    assert kept_faults < 500


def test_malloc_settings_of_the_user_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert not memory.keep_freed_memory()
