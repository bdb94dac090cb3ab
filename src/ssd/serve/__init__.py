"""``ssd serve``: a detector behind an HTTP API and a browser page (FastAPI and uvicorn, the ``serve`` extra)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ..engine.predictor import Predictor
from ..errors import SSDError
from .settings import ServeSettings

API_KEY_VARIABLE = "SSD_API_KEY"

__all__ = ["API_KEY_VARIABLE", "ServeSettings", "serve"]


def serve(
    weights: str | os.PathLike[str],
    *,
    backend: str = "torch",
    device: str | None = "auto",
    precision: str = "fp32",
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServeSettings | None = None,
) -> None:
    """Load ``weights`` and serve it until interrupted; the API key comes from ``settings`` or ``$SSD_API_KEY``."""
    try:  # the serve extra is optional: imported when serving
        import uvicorn

        from .app import create_app
    except ImportError as exc:
        raise SSDError(f"serving needs FastAPI and uvicorn ({exc}): pip install 'ssd-detector[serve]'") from None
    settings = settings or ServeSettings(model_name=Path(weights).name)
    if settings.api_key is None and os.environ.get(API_KEY_VARIABLE):
        settings = replace(settings, api_key=os.environ[API_KEY_VARIABLE])
    predictor = Predictor(weights, backend=backend, device=device, precision=precision, batch_size=settings.max_batch)
    app = create_app(predictor, settings)
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {settings.model_name} on http://{shown}:{port}/ (API: /v1/detect, docs: /docs)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
