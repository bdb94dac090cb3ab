"""``ssd predict``: detections for images, folders, glob patterns and videos, written into a folder.

A file that cannot be read is skipped with one warning line and listed in the summary; the run goes on.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from torch import Tensor
from tqdm import tqdm

from ..errors import DataError
from ..files import atomic_write_text
from ..images import read_image
from ..metrics import to_coco_results
from ..viz import draw_detections, save_image
from .predictor import Predictor
from .signals import StopSignal
from .sources import Skipped, collect_sources
from .video import VideoReader, VideoWriter

SAVABLE_SUFFIXES = (".jpg", ".jpeg", ".png")  # what ssd.viz.save_image writes; other images are saved as PNG

MAX_NAMED_SKIPS = 5  # skipped sources named in the summary line; skipped.json lists them all

log = logging.getLogger(__name__)


def predict_sources(
    predictor: Predictor,
    sources: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    save_images: bool = True,
    save_json: bool = True,
    coco_json: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """``ssd predict``: detections for every image and video frame of ``sources``, written into ``out_dir``.

    Writes annotated images (same names; BMP, WebP, GIF and TIFF ones as PNG), ``<stem>_pred.mp4`` per video,
    ``predictions.jsonl`` (one line per image or frame, as each batch finishes), ``predictions.json`` (the same
    list, at the end) and, with ``coco_json``, ``detections_coco.json`` (image ids: the output file's stem, an int
    when numeric; frame numbers for a lone video, else ``"<stem>_<frame>"``). ``save_images=False`` writes no
    images or videos. ``progress=None`` shows a bar when there is more than one image or any video.

    A source that cannot be read is skipped with a warning and listed in ``skipped`` (and ``skipped.json``);
    DataError only when nothing at all could be read. Ctrl-C or SIGTERM stops after the current batch and writes
    what was finished (``interrupted`` in the summary). Returns the counts (images, videos, frames, detections),
    the skipped sources and the paths written. A name met twice (same file name in two folders) gets a suffix.
    """
    items, skipped = collect_sources(sources)
    images = [p for p, kind in items if kind == "image"]
    videos = [p for p, kind in items if kind == "video"]
    show = progress if progress is not None else len(images) > 1 or bool(videos)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = _Results(_OutputNames(out_dir), out_dir / "predictions.jsonl" if save_json else None)
    for source in skipped:
        results.skip(source)
    with StopSignal() as stop, results:
        _predict_images(predictor, images, results, save_images, show and bool(images), stop)
        for path in videos:
            if stop.requested:
                break
            _predict_video_file(predictor, path, results, save_images, show, len(videos) == 1 and not images, stop)
        if not results.entries and results.skipped:
            raise DataError(results.skipped[0].path, f"{results.skipped[0].reason}; nothing else could be read")
        return results.write(out_dir, save_json, coco_json, interrupted=stop.requested)


def summary_line(summary: dict[str, Any]) -> str:
    """``predict_sources``'s summary in one line: ``412 images, 2 skipped (a.jpg: cannot decode image; ...): 1204
    detections; results in runs/predict``."""
    counts = f"{summary['images']} images"
    if summary["videos"]:
        counts += f", {summary['frames']} frames of {summary['videos']} videos"
    skipped = summary["skipped"]
    if skipped:
        named = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:MAX_NAMED_SKIPS])
        if len(skipped) > MAX_NAMED_SKIPS:
            named += f"; and {len(skipped) - MAX_NAMED_SKIPS} more, listed in skipped.json"
        counts += f", {len(skipped)} skipped ({named})"
    stopped = "stopped early; " if summary["interrupted"] else ""
    return f"{counts}: {summary['detections']} detections; {stopped}results in {summary['out_dir']}"


@dataclass
class _Results:
    """What ``predict_sources`` collects: one JSON entry, detection and COCO image id per image or frame; the
    entries also go to ``jsonl`` as they come. A context manager that closes ``jsonl``."""

    outputs: _OutputNames
    jsonl_path: Path | None
    entries: list[dict[str, Any]] = field(default_factory=list)
    detections: list[dict[str, Tensor]] = field(default_factory=list)
    image_ids: list[int | str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    images: int = 0
    videos: int = 0
    frames: int = 0
    jsonl: IO[str] | None = None

    def __enter__(self) -> _Results:
        if self.jsonl_path is not None:
            self.jsonl = self.jsonl_path.open("w")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.jsonl is not None:
            self.jsonl.close()

    def add(self, entry: dict[str, Any], det: dict[str, Any], image_id: int | str) -> None:
        self.entries.append(entry)
        self.detections.append(det)
        self.image_ids.append(image_id)
        if self.jsonl is not None:
            self.jsonl.write(json.dumps(entry) + "\n")

    def skip(self, source: Skipped) -> None:
        log.warning("skipped %s", source)
        self.skipped.append(source)

    def flush(self) -> None:
        """Push the JSON lines of the finished batch to disk."""
        if self.jsonl is not None:
            self.jsonl.flush()

    def write(self, out_dir: Path, save_json: bool, coco_json: bool, interrupted: bool) -> dict[str, Any]:
        """Write the JSON files asked for (atomically); return the summary of the run."""
        summary: dict[str, Any] = {
            "images": self.images,
            "videos": self.videos,
            "frames": self.frames,
            "detections": sum(len(det["scores"]) for det in self.detections),
            "skipped": [asdict(s) for s in self.skipped],
            "interrupted": interrupted,
            "out_dir": str(out_dir),
            "outputs": self.written,
            "predictions_json": None,
            "coco_json": None,
        }
        if save_json:
            summary["predictions_json"] = str(out_dir / "predictions.json")
            atomic_write_text(out_dir / "predictions.json", json.dumps(self.entries))
        if self.skipped:
            atomic_write_text(out_dir / "skipped.json", json.dumps(summary["skipped"], indent=1))
        if coco_json:
            summary["coco_json"] = str(out_dir / "detections_coco.json")
            coco = to_coco_results(self.detections, self.image_ids)
            atomic_write_text(out_dir / "detections_coco.json", json.dumps(coco))
        return summary


def _predict_images(
    predictor: Predictor, images: list[Path], results: _Results, save: bool, show: bool, stop: StopSignal
) -> None:
    """Detections for image files, ``batch_size`` at a time; with ``save``, each drawn into the output folder."""
    bar = tqdm(total=len(images), desc="predict", unit="img", disable=not show, dynamic_ncols=True)
    for start in range(0, len(images), predictor.batch_size):
        if stop.requested:
            break
        paths = images[start : start + predictor.batch_size]
        batch = []
        for path in paths:
            try:
                batch.append((path, read_image(path)))
            except DataError as err:
                results.skip(Skipped(err.path, err.message))
        for (path, image), det in zip(batch, predictor.detect([image for _, image in batch])):
            suffix = path.suffix if path.suffix.lower() in SAVABLE_SUFFIXES else ".png"
            out_path = results.outputs.claim(path, path.stem + suffix)
            if save:
                save_image(_draw(image, det, predictor.class_names), out_path)
                results.written.append(str(out_path))
            image_id = int(out_path.stem) if out_path.stem.isdigit() else out_path.stem
            results.add({"path": str(path), **_json_detections(det, image)}, det, image_id)
            results.images += 1
        results.flush()
        bar.update(len(paths))
    bar.close()


def _predict_video_file(
    predictor: Predictor, path: Path, results: _Results, save: bool, show: bool, lone: bool, stop: StopSignal
) -> None:
    """Detections for every frame of one video; frames are numbered, prefixed by the video's name unless ``lone``.

    A video that cannot be opened is skipped; one that breaks part-way keeps the frames decoded before.
    """
    out_path = results.outputs.claim(path, f"{path.stem}_pred.mp4")
    frames = 0
    try:
        for frame, image, det in _predict_video(predictor, path, out_path if save else None, show, stop):
            image_id = frame if lone else f"{out_path.stem[: -len('_pred')]}_{frame}"
            results.add({"path": str(path), "frame": frame, **_json_detections(det, image)}, det, image_id)
            frames += 1
    except DataError as err:
        kept = f" (the {frames} frames before are kept)" if frames else ""
        results.skip(Skipped(err.path, err.message + kept))
    results.frames += frames
    if frames:
        results.videos += 1
        if save:
            results.written.append(str(out_path))


class _OutputNames:
    """Unique output paths in one folder: a second ``a.jpg`` (from another folder) becomes ``a_1.jpg``."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.used: set[str] = set()

    def claim(self, source: Path, name: str) -> Path:
        stem, suffix = os.path.splitext(name)
        candidate, k = name, 0
        while candidate in self.used:
            k += 1
            candidate = f"{stem}_{k}{suffix}"
        self.used.add(candidate)
        path = self.out_dir / candidate
        if path.exists() and path.resolve() == source.resolve():
            raise DataError(source, f"the annotated copy would overwrite it: choose another folder than {self.out_dir}")
        return path


def _draw(image: Tensor, det: dict[str, Any], class_names: list[str]) -> Tensor:
    return draw_detections(image, det["boxes"], det["labels"], det["scores"], class_names)


def _json_detections(det: dict[str, Any], image: Tensor) -> dict[str, Any]:
    """One image's detections as JSON-ready lists (boxes to 0.01 pixel, scores to 5 decimals) and its size."""
    return {
        "width": int(image.shape[-1]),
        "height": int(image.shape[-2]),
        "boxes": [[round(v, 2) for v in box] for box in det["boxes"].tolist()],
        "scores": [round(s, 5) for s in det["scores"].tolist()],
        "labels": det["labels"].tolist(),
        "names": list(det["names"]),
    }


def _predict_video(
    predictor: Predictor, path: Path, out_path: Path | None, progress: bool, stop: StopSignal
) -> Iterator[tuple[int, Tensor, dict[str, Any]]]:
    """``(frame number, frame uint8 [3, H, W], detections)`` for each frame, read ``batch_size`` frames at a time.

    With ``out_path``, the frames with their boxes drawn are encoded to it (H.264, the input's frame rate).
    """
    with VideoReader(path) as video:
        writer = None
        bar = tqdm(total=video.frame_count, desc=path.name, unit="frame", disable=not progress, dynamic_ncols=True)
        frame_number = 0
        try:
            for chunk in video.chunks(predictor.batch_size):
                for image, det in zip(chunk, predictor.detect(chunk)):
                    if out_path is not None:
                        writer = writer or VideoWriter(out_path, video.fps, image.shape[-1], image.shape[-2])
                        writer.write(_draw(image, det, predictor.class_names))
                    yield frame_number, image, det
                    frame_number += 1
                bar.update(len(chunk))
                if stop.requested:
                    break
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        if frame_number == 0:
            raise DataError(path, "no frames could be decoded from this video")
