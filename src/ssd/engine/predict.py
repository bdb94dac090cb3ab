"""``ssd predict``: detections for images, folders, glob patterns, videos, cameras and network streams, written
into a folder.

A file that cannot be read is skipped with one warning line and listed in the summary; the run goes on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor
from tqdm import tqdm

from ..errors import DataError, SSDError
from ..images import read_image
from ..viz import draw_detections, save_image
from .prediction_files import PredictionFiles
from .predictor import Predictor
from .signals import StopSignal
from .sources import Skipped, collect_sources, stream_name
from .video import VideoReader, VideoWriter

SAVABLE_SUFFIXES = (".jpg", ".jpeg", ".png")  # what ssd.viz.save_image writes; other images are saved as PNG
MAX_NAMED_SKIPS = 5  # skipped sources named in the summary line; skipped.json lists them all


def predict_sources(
    predictor: Predictor,
    sources: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    save_images: bool = True,
    save_json: bool = True,
    coco_json: bool = False,
    progress: bool | None = None,
    vid_stride: int = 1,
) -> dict[str, Any]:
    """``ssd predict``: detections for every image and video frame of ``sources``, written into ``out_dir``.

    Sources: image files, folders, glob patterns, video files, cameras (``"0"``) and network streams
    (``rtsp://``, ``http://``, ...); of videos every ``vid_stride``-th frame. Writes annotated images (same
    names; BMP, WebP, GIF and TIFF ones as PNG), ``<name>_pred.mp4`` per video or stream, ``predictions.jsonl``
    (one line per image or frame, as each batch finishes), ``predictions.json`` (the same list, at the end) and,
    with ``coco_json``, ``detections_coco.json`` (image ids: the output file's stem, an int when numeric; frame
    numbers for a lone video, else ``"<name>_<frame>"``). ``save_images=False`` writes no images or videos.
    ``progress=None`` shows a bar when there is more than one image or any video.

    A source that cannot be read is skipped with a warning and listed in ``skipped`` (and ``skipped.json``);
    DataError only when nothing at all could be read. Ctrl-C or SIGTERM stops after the current batch and writes
    what was finished (``interrupted`` in the summary). Returns the counts (images, videos, frames, detections),
    the skipped sources and the paths written. A name met twice (same file name in two folders) gets a suffix.
    """
    if vid_stride < 1:
        raise SSDError(f"vid_stride must be at least 1, got {vid_stride}")
    items, skipped = collect_sources(sources)
    images = [p for p, kind in items if kind == "image"]
    videos = [p for p, kind in items if kind != "image"]
    show = progress if progress is not None else len(images) > 1 or bool(videos)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = _OutputNames(out_dir)
    with StopSignal() as stop, PredictionFiles(out_dir, save_json, coco_json) as files:
        for source in skipped:
            files.skip(source)
        _predict_images(predictor, images, names, files, save_images, show and bool(images), stop)
        for source in videos:
            if stop.requested:
                break
            lone = len(videos) == 1 and not images
            _predict_video(predictor, source, names, files, save_images, show, lone, stop, vid_stride)
        if not files.images and not files.frames and files.skipped:
            raise DataError(files.skipped[0].path, f"{files.skipped[0].reason}; nothing else could be read")
        return files.finish(interrupted=stop.requested)


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


def _predict_images(
    predictor: Predictor,
    images: list[Path],
    names: _OutputNames,
    files: PredictionFiles,
    save: bool,
    show: bool,
    stop: StopSignal,
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
                files.skip(Skipped(err.path, err.message))
        for (path, image), det in zip(batch, predictor.detect([image for _, image in batch])):
            suffix = path.suffix if path.suffix.lower() in SAVABLE_SUFFIXES else ".png"
            stem, out_path = names.claim(path, path.stem, suffix)
            if save:
                save_image(_draw(image, det, predictor.class_names), out_path)
                files.written.append(str(out_path))
            files.add({"path": str(path), **_json_detections(det, image)}, det, names.image_id(stem))
            files.images += 1
        files.flush()
        bar.update(len(paths))
    bar.close()


def _predict_video(
    predictor: Predictor,
    source: Path | str,
    names: _OutputNames,
    files: PredictionFiles,
    save: bool,
    show: bool,
    lone: bool,
    stop: StopSignal,
    vid_stride: int,
) -> None:
    """Detections for every ``vid_stride``-th frame of a video, camera or stream; with ``save``, the frames drawn
    into ``<name>_pred.mp4``. Frames are numbered, prefixed by the video's name unless ``lone``. A source that
    cannot be opened is skipped; a file that breaks part-way keeps the frames decoded before."""
    stem = Path(source).stem if isinstance(source, Path) else stream_name(source)
    name, out_path = names.claim(source, stem, "_pred.mp4")
    writer, frames = None, 0
    try:
        with VideoReader(source) as video, _frame_bar(source, video, show) as bar:
            for number, image, det in predictor.frames(video, vid_stride):
                if save:
                    writer = writer or VideoWriter(out_path, video.fps / vid_stride, image.shape[-1], image.shape[-2])
                    writer.write(_draw(image, det, predictor.class_names))
                image_id = number if lone else f"{name}_{number}"
                files.add({"path": str(source), "frame": number, **_json_detections(det, image)}, det, image_id)
                frames += 1
                files.flush()
                bar.update(vid_stride)
                if stop.requested:
                    break
    except DataError as err:
        kept = f" (the {frames} frames before are kept)" if frames else ""
        files.skip(Skipped(err.path, err.message + kept))
    finally:
        if writer is not None:
            writer.close()
    if frames:
        files.frames += frames
        files.videos += 1
        if save:
            files.written.append(str(out_path))
    elif not any(s.path == str(source) for s in files.skipped):
        files.skip(Skipped(str(source), "no frames could be decoded from this source"))


def _frame_bar(source: Path | str, video: VideoReader, show: bool) -> tqdm:
    label = source.name if isinstance(source, Path) else source
    return tqdm(total=video.frame_count, desc=label, unit="frame", disable=not show, dynamic_ncols=True)


class _OutputNames:
    """Unique output names in one folder, by stem: a second ``a.jpg`` (from another folder), or an ``a.png``, becomes
    ``a_1``; and unique COCO image ids, the stem (as an int when it is a number not taken yet)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.stems: set[str] = set()
        self.ids: set[int | str] = set()

    def claim(self, source: Path | str, stem: str, suffix: str) -> tuple[str, Path]:
        """``(unique stem, out_dir / (stem + suffix))``; DataError if that path is ``source`` itself."""
        candidate, k = stem, 0
        while candidate in self.stems:
            k += 1
            candidate = f"{stem}_{k}"
        self.stems.add(candidate)
        path = self.out_dir / f"{candidate}{suffix}"
        if isinstance(source, Path) and path.exists() and path.resolve() == source.resolve():
            raise DataError(source, f"the annotated copy would overwrite it: choose another folder than {self.out_dir}")
        return candidate, path

    def image_id(self, stem: str) -> int | str:
        """The COCO image id of an output stem: ``"001"`` gives 1, unless 1 is taken already."""
        image_id: int | str = int(stem) if stem.isdigit() and int(stem) not in self.ids else stem
        self.ids.add(image_id)
        return image_id


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
