"""The server tests' pieces: the tiny model saved as a checkpoint, images written as a client would send them,
and an app run by a real uvicorn server on a free loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import PIL.Image
import torch
from torchvision.io import write_jpeg, write_png

import ssd
from model_helpers import tiny_model_with_spread_scores
from process_helpers import free_port

START_TIMEOUT_S = 60


def tiny_checkpoint(folder: Path) -> Path:
    """The TINY_128 test SSD with spread scores (4 classes), saved to ``folder/tiny.pt``."""
    path = folder / "tiny.pt"
    ssd.save(tiny_model_with_spread_scores(), path)
    return path


def write_client_images(folder: Path) -> dict[str, Path]:
    """A JPEG, a PNG and a portrait JPEG stored sideways with EXIF orientation 6, of random pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(7)
    photo = torch.randint(0, 256, (3, 90, 120), generator=generator, dtype=torch.uint8)
    write_jpeg(photo, str(folder / "photo.jpg"), quality=92)
    write_png(photo[:, :64, :80].contiguous(), str(folder / "crop.png"))
    stored = PIL.Image.fromarray(photo.permute(1, 2, 0).numpy())
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(folder / "portrait.jpg", exif=exif.tobytes(), quality=92)
    return {p.name: p for p in (folder / "photo.jpg", folder / "crop.png", folder / "portrait.jpg")}


@contextmanager
def running_server(app) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread on 127.0.0.1 at a free port; yields the base URL; stops it after."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError(f"uvicorn did not start on port {port} within {START_TIMEOUT_S} s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
