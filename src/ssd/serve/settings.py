"""The settings of ``ssd serve``, apart from the app so that the command line needs no FastAPI to build them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeSettings:
    """The server's limits and switches; ``model_name`` is what responses call the model."""

    model_name: str
    max_batch: int = 8
    max_wait_ms: float = 5.0
    max_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000
    max_queue: int = 256  # images waiting for the model; more are answered 503
    timeout_s: float = 120.0  # how long a request waits for its batch before a 503
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
