"""Video files in and out, a chunk of frames at a time, with PyAV (``pip install av``): torchvision 0.29 has no
video IO of its own any more."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import DataError, SSDError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
DEFAULT_FPS = 25  # for a stream that states no frame rate


def import_av() -> Any:
    """The ``av`` module, or an SSDError that says how to install it."""
    try:
        import av
    except ImportError:
        raise SSDError("reading and writing videos needs PyAV: pip install av") from None
    return av


class VideoReader:
    """The frames of a video file as ``uint8 [3, H, W]`` RGB tensors; DataError naming the file if it cannot be
    opened or decoded. Use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.av = import_av()
        self.path = path
        try:
            self.container = self.av.open(str(path))
        except self.av.FFmpegError as exc:
            raise DataError(path, f"cannot open video: {exc}") from None
        if not self.container.streams.video:
            self.container.close()
            raise DataError(path, "no video stream in this file")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"

    @property
    def fps(self) -> Fraction | int:
        return self.stream.average_rate or self.stream.guessed_rate or DEFAULT_FPS

    @property
    def frame_count(self) -> int | None:
        """The number of frames the file states, or None when it does not say."""
        return self.stream.frames or None

    def chunks(self, size: int) -> Iterator[list[Tensor]]:
        """The decoded frames in lists of up to ``size``."""
        chunk: list[Tensor] = []
        try:
            for frame in self.container.decode(self.stream):
                chunk.append(torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1))
                if len(chunk) == size:
                    yield chunk
                    chunk = []
        except self.av.FFmpegError as exc:
            raise DataError(self.path, f"cannot decode the video: {exc}") from None
        if chunk:
            yield chunk

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.container.close()


class VideoWriter:
    """H.264 frames into an MP4 file (4:2:0 colour for even sizes, 4:4:4 for odd ones, which 4:2:0 cannot hold)."""

    def __init__(self, path: Path, fps: Fraction | int, width: int, height: int) -> None:
        self.av = import_av()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.container = self.av.open(str(path), mode="w")
        self.stream = self.container.add_stream("libx264", rate=fps)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"

    def write(self, image: Tensor) -> None:
        """Encode one ``uint8 [3, H, W]`` frame."""
        frame = self.av.VideoFrame.from_ndarray(image.permute(1, 2, 0).contiguous().numpy(), format="rgb24")
        self.container.mux(self.stream.encode(frame))

    def close(self) -> None:
        self.container.mux(self.stream.encode())  # flush the encoder's delayed frames
        self.container.close()
