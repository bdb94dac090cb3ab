"""The HTTP API and the browser page of ``ssd serve``, on FastAPI.

``POST /v1/detect`` takes one image (the raw body or a multipart file) and answers its detections; ``GET
/v1/health``, ``/v1/model`` and ``/v1/stats`` describe the server. Images that arrive together are batched
(``batching.DynamicBatcher``); errors are JSON ``{"error": message, "status": code}``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..engine.predictor import DetectionFilter, Predictor
from ..errors import SSDError
from .batching import Busy, DynamicBatcher
from .settings import ServeSettings
from .uploads import decode_upload, upload_bytes

STATIC_DIR = Path(__file__).parent / "static"
IMAGE_BODY = {  # the request body of /v1/detect, for the OpenAPI page (the handler reads it itself)
    "required": True,
    "content": {
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
        },
    },
}

log = logging.getLogger(__name__)


def create_app(predictor: Predictor, settings: ServeSettings) -> FastAPI:
    """The FastAPI application serving ``predictor``: the ``/v1`` API, the page at ``/`` and its files."""
    everything = DetectionFilter.of(predictor.class_names)
    batcher = DynamicBatcher(
        lambda images: predictor.detect(images, everything),
        settings.max_batch,
        settings.max_wait_ms,
        settings.max_queue,
        settings.timeout_s,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="ssd-detector", summary="Single Shot MultiBox Detector", lifespan=lifespan)
    _add_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.include_router(_api(predictor, settings, batcher))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    return app


def _api(predictor: Predictor, settings: ServeSettings, batcher: DynamicBatcher) -> APIRouter:
    api = APIRouter(prefix="/v1", dependencies=[Depends(_key_check(settings.api_key))])

    @api.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/model")
    async def model() -> dict[str, Any]:
        return {
            "name": settings.model_name,
            "class_names": predictor.class_names[1:],
            "input_size": predictor.input_size,
            "backend": predictor.backend,
            "precision": predictor.precision,
            "device": str(predictor.device),
            **{k: v for k, v in asdict(settings).items() if k.startswith("max_")},
        }

    @api.get("/stats")
    async def stats() -> dict[str, Any]:
        return {**batcher.stats.to_dict(), "max_batch": settings.max_batch, "max_wait_ms": settings.max_wait_ms}

    @api.post("/detect", openapi_extra={"requestBody": IMAGE_BODY})
    async def detect(
        request: Request,
        conf: float | None = Query(None, ge=0, le=1, description="minimum score"),
        max_det: int | None = Query(None, ge=1, description="at most this many detections, the best"),
        classes: str | None = Query(None, description="comma-separated class names or labels to keep"),
    ) -> dict[str, Any]:
        start = time.perf_counter()
        keep = _request_filter(predictor.class_names, conf, max_det, classes)
        with batcher.incoming():
            data = await upload_bytes(request, settings.max_bytes)
            image = await run_in_threadpool(decode_upload, data, settings.max_pixels)
        det = keep(await _detections(batcher, image))
        return {
            "model": settings.model_name,
            "image": {"width": int(image.shape[-1]), "height": int(image.shape[-2])},
            "time_ms": round((time.perf_counter() - start) * 1000, 2),
            "detections": detection_list(det),
        }

    return api


async def _detections(batcher: DynamicBatcher, image: Any) -> dict[str, Any]:
    """The unfiltered detections of one image from its batch; 503 when the server is busy, 500 (logged) when the
    model failed on the batch."""
    try:
        return await batcher.submit(image)
    except Busy as exc:
        raise HTTPException(503, str(exc), {"Retry-After": "1"}) from None
    except Exception as exc:
        log.exception("the model failed on a batch")
        raise HTTPException(500, f"the model failed on this image's batch: {exc}") from None


def detection_list(det: dict[str, Any]) -> list[dict[str, Any]]:
    """One image's detections as JSON objects: ``box`` xyxy pixels (to 0.01), ``score`` (5 decimals), ``label``,
    ``name``."""
    return [
        {"box": [round(v, 2) for v in box], "score": round(score, 5), "label": label, "name": name}
        for box, score, label, name in zip(
            det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist(), det["names"]
        )
    ]


def _request_filter(
    class_names: list[str], conf: float | None, max_det: int | None, classes: str | None
) -> DetectionFilter:
    wanted = None if classes is None else [c.strip() for c in classes.split(",") if c.strip()]
    if wanted == []:
        raise HTTPException(422, "classes: name at least one class, or leave the parameter out")
    try:
        return DetectionFilter.of(class_names, conf, max_det, wanted)
    except SSDError as exc:
        raise HTTPException(422, f"classes: {exc}") from None


def _key_check(api_key: str | None) -> Any:
    """A dependency that lets a request through only with ``Authorization: Bearer <api_key>`` (when a key is set)."""

    async def check(authorization: str | None = Header(None, include_in_schema=False)) -> None:
        if api_key is None:
            return
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), api_key.encode()):
            raise HTTPException(
                401, "this server needs its API key: send 'Authorization: Bearer <key>'", {"WWW-Authenticate": "Bearer"}
            )

    return check


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": message, "status": code}``; an unexpected one is logged and answered 500."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in exc.errors()]
        return _error(422, "; ".join(parts))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("error answering %s %s", request.method, request.url.path)
        return _error(500, f"internal error: {exc}")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)
