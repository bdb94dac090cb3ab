"""Detections on images, folders, glob patterns and videos: the ``Predictor`` and the engine of ``ssd predict``.

Videos are read and written with PyAV (``pip install av``), a chunk of frames at a time; torchvision 0.29 has
no video IO of its own any more.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from ..errors import DataError, SSDError
from ..images import IMAGE_SUFFIXES, check_image, read_image
from ..metrics import to_coco_results
from ..model.ssd import SSD
from ..viz import draw_detections, save_image
from .detectors import load_detector

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
SAVABLE_SUFFIXES = (".jpg", ".jpeg", ".png")  # what ssd.viz.save_image writes; other images are saved as PNG
DEFAULT_FPS = 25

ImageInput = str | os.PathLike | Tensor


class Predictor:
    """Detections for image files or tensors, batched, with optional score, count and class filters.

    ``weights``: a checkpoint path, a built :class:`ssd.SSD` (put in eval mode; with ``device="auto"`` it stays
    on its own device), or an ``.onnx`` file with ``backend="onnxruntime"``. ``conf`` drops detections scoring
    below it (the model's own ``score_thresh`` has already dropped lower ones), ``max_det`` keeps the best
    ``max_det`` per image, ``classes`` keeps those labels (ints, or class names). ``precision`` bf16 (CPU or
    CUDA) or fp16 (CUDA) runs a PyTorch model under autocast.
    """

    def __init__(
        self,
        weights: str | os.PathLike[str] | SSD,
        *,
        backend: str = "torch",
        device: str | None = "auto",
        conf: float | None = None,
        max_det: int | None = None,
        classes: Sequence[int | str] | None = None,
        batch_size: int = 8,
        precision: str = "fp32",
    ) -> None:
        loaded = load_detector(weights, backend, device, precision)
        self.detector, self.class_names, self.device = loaded.detector, loaded.class_names, loaded.device
        if conf is not None and not 0.0 <= conf <= 1.0:
            raise SSDError(f"conf must be between 0 and 1, got {conf}")
        if max_det is not None and max_det < 1:
            raise SSDError(f"max_det must be at least 1, got {max_det}")
        if batch_size < 1:
            raise SSDError(f"batch_size must be at least 1, got {batch_size}")
        self.conf, self.max_det, self.batch_size = conf, max_det, batch_size
        self.classes = None if classes is None else torch.tensor([self._label(c) for c in classes], dtype=torch.long)

    def _label(self, cls: int | str) -> int:
        """The label of a class given by label or by name."""
        if isinstance(cls, str) and cls in self.class_names[1:]:
            return self.class_names.index(cls)
        if isinstance(cls, str) and cls.isdigit():
            cls = int(cls)
        if isinstance(cls, int) and 1 <= cls < len(self.class_names):
            return cls
        raise SSDError(
            f"class {cls!r} is not one of this model's: labels 1..{len(self.class_names) - 1} or names "
            f"{', '.join(self.class_names[1:])}"
        )

    def __call__(self, source: ImageInput | Sequence[ImageInput]) -> list[dict[str, Any]]:
        """Detections for one image or a list: paths or ``Tensor[3, H, W]`` (uint8, or float in 0..1).

        Returns one dict per image: ``boxes`` (``Tensor[N, 4]`` xyxy pixels), ``scores``, ``labels`` (on the
        CPU), ``names`` and, for files, ``path``. Files are read one batch at a time.
        """
        items = [source] if isinstance(source, (str, os.PathLike, Tensor)) else list(source)
        results: list[dict[str, Any]] = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            images = [self._to_image(item) for item in chunk]
            for item, det in zip(chunk, self.detect(images)):
                if not isinstance(item, Tensor):
                    det["path"] = str(item)
                results.append(det)
        return results

    def _to_image(self, item: ImageInput) -> Tensor:
        """An image file or tensor as ``uint8`` or float ``[3, H, W]``, checked."""
        if isinstance(item, (str, os.PathLike)):
            return read_image(item)
        if not isinstance(item, Tensor):
            raise SSDError(f"cannot predict on a {type(item).__name__}: pass an image path or a Tensor[3, H, W]")
        check_image(item)
        if item.dtype != torch.uint8 and not item.is_floating_point():
            raise SSDError(f"expected a uint8 or float image, got {item.dtype}")
        return item

    def detect(self, images: Sequence[Tensor]) -> list[dict[str, Any]]:
        """Filtered detections for images ``[3, H, W]`` (uint8, or float in 0..1), ``batch_size`` per forward."""
        results = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = [img.to(self.device) for img in images[start : start + self.batch_size]]
                batch = [img.float() / 255 if img.dtype == torch.uint8 else img.float() for img in batch]
                results.extend(self._filter(det) for det in self.detector(batch))
        return results

    def _filter(self, det: dict[str, Tensor]) -> dict[str, Any]:
        """One image's detections on the CPU, kept by ``conf`` and ``classes``, the best ``max_det``, with names."""
        boxes, scores, labels = (det[k].cpu() for k in ("boxes", "scores", "labels"))
        keep = torch.ones_like(scores, dtype=torch.bool)
        if self.conf is not None:
            keep &= scores >= self.conf
        if self.classes is not None:
            keep &= torch.isin(labels, self.classes)
        index = keep.nonzero().squeeze(1)
        if self.max_det is not None:
            index = index[torch.argsort(scores[index], descending=True, stable=True)[: self.max_det]]
        labels = labels[index].long()
        names = [self.class_names[i] for i in labels.tolist()]
        return {"boxes": boxes[index].float(), "scores": scores[index].float(), "labels": labels, "names": names}


def expand_sources(sources: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, str]]:
    """Each source as ``(path, "image" | "video")``: a file, a folder's images (sorted) or a glob pattern's files."""
    expanded: list[tuple[Path, str]] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise DataError(path, f"no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            expanded.extend((p, "image") for p in images)
        elif path.is_file():
            expanded.append((path, _kind(path)))
        elif any(ch in str(source) for ch in "*?["):
            matches = [Path(p) for p in sorted(glob.glob(str(source), recursive=True))]
            known = IMAGE_SUFFIXES + VIDEO_SUFFIXES
            found = [(p, _kind(p)) for p in matches if p.is_file() and p.suffix.lower() in known]
            if not found:
                raise DataError(source, "no images or videos match this pattern")
            expanded.extend(found)
        else:
            raise DataError(path, "no such file or folder")
    return expanded


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
    ``predictions.json`` (one entry per image or frame) and, with ``coco_json``, ``detections_coco.json`` (image
    ids: the output file's stem, an int when numeric; frame numbers for a lone video, else ``"<stem>_<frame>"``).
    ``save_images=False`` writes no images or videos. ``progress=None`` shows a bar when there is more than one
    image or any video. Returns the counts (images, videos, frames, detections) and the paths written.
    A name met twice (same file name in two folders) gets a suffix: ``a.jpg``, ``a_1.jpg``.
    """
    items = expand_sources(sources)
    images = [p for p, kind in items if kind == "image"]
    videos = [p for p, kind in items if kind == "video"]
    show = progress if progress is not None else len(images) > 1 or bool(videos)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = _Results(_OutputNames(out_dir))
    _predict_images(predictor, images, results, save_images, show and bool(images))
    for path in videos:
        _predict_video_file(predictor, path, results, save_images, show, lone=len(videos) == 1 and not images)
    return results.write(out_dir, len(images), len(videos), save_json, coco_json)


@dataclass
class _Results:
    """What ``predict_sources`` collects: one JSON entry, detection and COCO image id per image or frame."""

    outputs: _OutputNames
    entries: list[dict[str, Any]] = field(default_factory=list)
    detections: list[dict[str, Tensor]] = field(default_factory=list)
    image_ids: list[int | str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    frames: int = 0

    def add(self, entry: dict[str, Any], det: dict[str, Any], image_id: int | str) -> None:
        self.entries.append(entry)
        self.detections.append(det)
        self.image_ids.append(image_id)

    def write(self, out_dir: Path, images: int, videos: int, save_json: bool, coco_json: bool) -> dict[str, Any]:
        """Write the JSON files asked for; return the summary of the run."""
        summary: dict[str, Any] = {
            "images": images,
            "videos": videos,
            "frames": self.frames,
            "detections": sum(len(det["scores"]) for det in self.detections),
            "out_dir": str(out_dir),
            "outputs": self.written,
            "predictions_json": None,
            "coco_json": None,
        }
        if save_json:
            summary["predictions_json"] = str(out_dir / "predictions.json")
            (out_dir / "predictions.json").write_text(json.dumps(self.entries))
        if coco_json:
            summary["coco_json"] = str(out_dir / "detections_coco.json")
            coco = to_coco_results(self.detections, self.image_ids)
            (out_dir / "detections_coco.json").write_text(json.dumps(coco))
        return summary


def _predict_images(predictor: Predictor, images: list[Path], results: _Results, save: bool, show: bool) -> None:
    """Detections for image files, ``batch_size`` at a time; with ``save``, each drawn into the output folder."""
    bar = tqdm(total=len(images), desc="predict", unit="img", disable=not show, dynamic_ncols=True)
    for start in range(0, len(images), predictor.batch_size):
        paths = images[start : start + predictor.batch_size]
        pixels = [read_image(p) for p in paths]
        for path, image, det in zip(paths, pixels, predictor.detect(pixels)):
            suffix = path.suffix if path.suffix.lower() in SAVABLE_SUFFIXES else ".png"
            out_path = results.outputs.claim(path, path.stem + suffix)
            if save:
                save_image(_draw(image, det, predictor.class_names), out_path)
                results.written.append(str(out_path))
            image_id = int(out_path.stem) if out_path.stem.isdigit() else out_path.stem
            results.add({"path": str(path), **_json_detections(det, image)}, det, image_id)
        bar.update(len(paths))
    bar.close()


def _predict_video_file(
    predictor: Predictor, path: Path, results: _Results, save: bool, show: bool, lone: bool
) -> None:
    """Detections for every frame of one video; frames are numbered, prefixed by the video's name unless ``lone``."""
    out_path = results.outputs.claim(path, f"{path.stem}_pred.mp4")
    for frame, image, det in _predict_video(predictor, path, out_path if save else None, show):
        image_id = frame if lone else f"{out_path.stem[: -len('_pred')]}_{frame}"
        results.add({"path": str(path), "frame": frame, **_json_detections(det, image)}, det, image_id)
        results.frames += 1
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


def _import_av() -> Any:
    try:
        import av
    except ImportError:
        raise SSDError("reading and writing videos needs PyAV: pip install av") from None
    return av


def _predict_video(
    predictor: Predictor, path: Path, out_path: Path | None, progress: bool
) -> Iterator[tuple[int, Tensor, dict[str, Any]]]:
    """``(frame number, frame uint8 [3, H, W], detections)`` for each frame, read ``batch_size`` frames at a time.

    With ``out_path``, the frames with their boxes drawn are encoded to it (H.264, the input's frame rate).
    """
    av = _import_av()
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise DataError(path, f"cannot open video: {exc}") from None
    with container:
        if not container.streams.video:
            raise DataError(path, "no video stream in this file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = stream.average_rate or stream.guessed_rate or DEFAULT_FPS
        writer = None
        bar = tqdm(total=stream.frames or None, desc=path.name, unit="frame", disable=not progress, dynamic_ncols=True)
        frame_number = 0
        try:
            for chunk in _frame_chunks(av, container, stream, path, predictor.batch_size):
                for image, det in zip(chunk, predictor.detect(chunk)):
                    if out_path is not None:
                        writer = writer or _VideoWriter(av, out_path, fps, image.shape[-1], image.shape[-2])
                        writer.write(_draw(image, det, predictor.class_names))
                    yield frame_number, image, det
                    frame_number += 1
                bar.update(len(chunk))
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        if frame_number == 0:
            raise DataError(path, "no frames could be decoded from this video")


def _frame_chunks(av: Any, container: Any, stream: Any, path: Path, size: int) -> Iterator[list[Tensor]]:
    """The decoded frames as lists of up to ``size`` ``uint8 [3, H, W]`` RGB tensors."""
    chunk: list[Tensor] = []
    try:
        for frame in container.decode(stream):
            chunk.append(torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1))
            if len(chunk) == size:
                yield chunk
                chunk = []
    except av.FFmpegError as exc:
        raise DataError(path, f"cannot decode the video: {exc}") from None
    if chunk:
        yield chunk


class _VideoWriter:
    """H.264 frames into an MP4 file (4:2:0 colour for even sizes, 4:4:4 for odd ones, which 4:2:0 cannot hold)."""

    def __init__(self, av: Any, path: Path, fps: Fraction | int, width: int, height: int) -> None:
        self.av = av
        path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(path), mode="w")
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
