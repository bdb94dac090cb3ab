"""Python's cyclic garbage collector paused around code that builds millions of small containers at once."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Collection off for the block, restored after it as it was: containers that all stay alive (a parsed
    annotation file, COCO's annotation dicts) would otherwise set off full collections that free nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
