"""Ctrl-C and SIGTERM as a request to stop after the current step, so that the run saves ``last.pt`` first."""

from __future__ import annotations

import signal
from typing import Any


class StopSignal:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step; a second signal leaves at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
