"""Which samples of a dataset could not be read, each named once in the log.

The flags live in shared memory, so what loader workers find reaches the main process (and the other workers),
persistent workers included.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


class UnreadableSamples:
    """One flag per sample index: set, with one warning line, the first time a sample cannot be read."""

    def __init__(self, size: int) -> None:
        self._flags = torch.zeros(size, dtype=torch.bool).share_memory_()  # [size]

    def mark(self, index: int, message: str) -> None:
        """Record that sample ``index`` cannot be read; the first time, warn with ``message`` (what and why)."""
        if not self._flags[index]:
            log.warning("%s", message)
        self._flags[index] = True

    def __contains__(self, index: int) -> bool:
        return bool(self._flags[index])

    def __len__(self) -> int:
        return int(self._flags.sum())

    def indices(self) -> list[int]:
        """The unreadable sample indices found so far, in order."""
        return self._flags.nonzero().squeeze(1).tolist()
