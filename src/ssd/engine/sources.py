"""What ``ssd predict`` is given, expanded: an image, a folder of images, a glob pattern, a video file, a camera or
a network stream; and the sources that give nothing, each with its reason."""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import DataError
from ..images import IMAGE_SUFFIXES
from .video import VIDEO_SUFFIXES, is_live

Source = tuple[Path | str, str]  # (path, kind): an image or video file, or a camera or URL with kind "stream"


@dataclass(frozen=True)
class Skipped:
    """A source that could not be read: its path and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def collect_sources(sources: Sequence[str | os.PathLike[str]]) -> tuple[list[Source], list[Skipped]]:
    """Each source as ``(path, "image" | "video")`` (a file, a folder's images sorted, a glob pattern's files) or
    ``(source, "stream")`` (a camera index or a URL), and the sources that give none: missing, of an unknown
    type, a folder without images, a pattern matching none."""
    found: list[Source] = []
    skipped: list[Skipped] = []
    for source in sources:
        try:
            found.extend(_expand(source))
        except DataError as err:
            skipped.append(Skipped(err.path, err.message))
    return found, skipped


def expand_sources(sources: Sequence[str | os.PathLike[str]]) -> list[Source]:
    """``collect_sources``, with a DataError for the first source that gives nothing."""
    found, skipped = collect_sources(sources)
    if skipped:
        raise DataError(skipped[0].path, skipped[0].reason)
    return found


def _expand(source: str | os.PathLike[str]) -> list[Source]:
    if is_live(source):
        return [(str(source), "stream")]
    path = Path(source)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DataError(path, f"no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return [(p, "image") for p in images]
    if path.is_file():
        return [(path, _kind(path))]
    if any(ch in str(source) for ch in "*?["):
        matches = [Path(p) for p in sorted(glob.glob(str(source), recursive=True))]
        known = IMAGE_SUFFIXES + VIDEO_SUFFIXES
        found = [(p, _kind(p)) for p in matches if p.is_file() and p.suffix.lower() in known]
        if not found:
            raise DataError(source, "no images or videos match this pattern")
        return found
    raise DataError(path, "no such file or folder")


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    raise DataError(
        path,
        f"unknown file type '{suffix}': expected an image ({', '.join(IMAGE_SUFFIXES)}) or a video "
        f"({', '.join(VIDEO_SUFFIXES)})",
    )


def stream_name(source: str) -> str:
    """A file name for a camera or stream's outputs: ``camera0``, or the last part of a URL's path
    (``rtsp://host/live/cam1`` gives ``cam1``), else its host."""
    if source.isdigit():
        return f"camera{source}"
    url = urlsplit(source)
    stem = Path(url.path).stem or url.hostname or "stream"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem)
