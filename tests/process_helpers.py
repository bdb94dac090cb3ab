"""Multi-process tests: a free loopback port, and waiting for process groups with a deadline."""

import socket
import time

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join_within(context, seconds: float, failure: str, poll: float = 2.0) -> None:
    """Wait for the processes of ``context`` (``torch.multiprocessing``); kill them and fail the test with
    ``failure`` if they are not done within ``seconds``. A process that raised re-raises here."""
    deadline = time.monotonic() + seconds
    while not context.join(timeout=poll):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(failure)
