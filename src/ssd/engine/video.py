"""Video in and out with PyAV (``pip install av``; torchvision 0.29 has no video IO of its own any more): files,
cameras and network streams read a chunk of frames at a time, MP4 files written."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import DataError, SSDError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
DEFAULT_FPS = Fraction(25)  # for a stream that states no frame rate
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt")
NETWORK_TIMEOUT_S = (10.0, 10.0)  # to open a network stream, and to wait for each packet

log = logging.getLogger(__name__)


def import_av() -> Any:
    """The ``av`` module, or an SSDError that says how to install it."""
    try:
        import av
    except ImportError:
        raise SSDError("reading and writing videos needs PyAV: pip install av") from None
    return av


def is_live(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` names a camera (``0``, ``video=<name>`` on Windows) or a network stream (``rtsp://``, ...)
    rather than a file; a file of that name wins."""
    text = str(source)
    if os.path.exists(text):
        return False
    return text.isdigit() or text.startswith("video=") or text.split("://", 1)[0].lower() in STREAM_SCHEMES


class VideoReader:
    """The frames of a video file, camera or network stream as ``uint8 [3, H, W]`` RGB tensors; use as a context
    manager. DataError naming the source if it cannot be opened, or if a file cannot be decoded; a live source that
    breaks off ends with a warning (``ended_early``), keeping the frames read."""

    def __init__(self, source: str | os.PathLike[str]) -> None:
        self.av = import_av()
        self.source = str(source)
        self.live = is_live(source)
        self.ended_early: str | None = None
        try:
            self.container = _open(self.av, self.source) if self.live else self.av.open(self.source)
        except self.av.FFmpegError as exc:
            raise DataError(self.source, f"cannot open {'stream' if self.live else 'video'}: {exc}") from None
        if not self.container.streams.video:
            self.container.close()
            raise DataError(self.source, "no video stream in this source")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"

    @property
    def fps(self) -> Fraction:
        return Fraction(self.stream.average_rate or self.stream.guessed_rate or DEFAULT_FPS)

    @property
    def frame_count(self) -> int | None:
        """The number of frames the source states, or None when it does not say."""
        return self.stream.frames or None

    def chunks(self, size: int, stride: int = 1) -> Iterator[list[tuple[int, Tensor]]]:
        """Every ``stride``-th frame with its number (from 0), in lists of up to ``size``; one at a time from a live
        source, whose frames should not wait for the next ones."""
        size = 1 if self.live else size
        chunk: list[tuple[int, Tensor]] = []
        try:
            for number, frame in self._frames():
                if number % stride == 0:
                    chunk.append((number, torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)))
                if len(chunk) == size:
                    yield chunk
                    chunk = []
        except DataError:  # a file that breaks part-way still gives the frames decoded before
            if chunk:
                yield chunk
            raise
        if chunk:
            yield chunk

    def _frames(self) -> Iterator[tuple[int, Any]]:
        number = 0
        try:
            for frame in self.container.decode(self.stream):
                yield number, frame
                number += 1
        except self.av.FFmpegError as exc:
            if not self.live:
                raise DataError(self.source, f"cannot decode the video: {exc}") from None
            self.ended_early = str(exc)
            log.warning("%s: the stream broke off after %d frames (%s); ending here", self.source, number, exc)

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.container.close()


def _open(av: Any, source: str) -> Any:
    """A camera through the platform's capture device (v4l2, avfoundation, dshow), or a network stream."""
    if source.isdigit():
        if sys.platform.startswith("linux"):
            return av.open(f"/dev/video{source}", format="v4l2")
        if sys.platform == "darwin":
            return av.open(source, format="avfoundation", options={"framerate": "30"})
        raise SSDError(f"camera {source}: on Windows name the camera, as ffmpeg -list_devices lists it: video=<name>")
    if source.startswith("video="):
        return av.open(source, format="dshow")
    options = {"rtsp_transport": "tcp"} if source.lower().startswith("rtsp") else {}
    return av.open(source, options=options, timeout=NETWORK_TIMEOUT_S)


class VideoWriter:
    """H.264 frames into an MP4 file (4:2:0 colour for even sizes, 4:4:4 for odd ones, which 4:2:0 cannot hold)."""

    def __init__(self, path: Path, fps: Fraction, width: int, height: int) -> None:
        self.av = import_av()
        self.path, self.size = path, (height, width)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.container = self.av.open(str(path), mode="w")
        self.stream = self.container.add_stream("libx264", rate=fps)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"

    def write(self, image: Tensor) -> None:
        """Encode one ``uint8 [3, H, W]`` frame; DataError if its size is not the video's."""
        if tuple(image.shape[-2:]) != self.size:
            height, width = self.size
            raise DataError(self.path, f"a frame of {image.shape[-1]}x{image.shape[-2]} in a {width}x{height} video")
        frame = self.av.VideoFrame.from_ndarray(image.permute(1, 2, 0).contiguous().numpy(), format="rgb24")
        self.container.mux(self.stream.encode(frame))

    def close(self) -> None:
        self.container.mux(self.stream.encode())  # flush the encoder's delayed frames
        self.container.close()
