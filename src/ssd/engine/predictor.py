"""The ``Predictor``: detections for image files, tensors and video streams, batched, filtered by score, count and
class (``DetectionFilter``, which the server also applies per request)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import DataError, SSDError
from ..images import check_image, read_image
from ..model.ssd import SSD
from .detectors import load_detector
from .video import VideoReader

ON_ERROR = ("raise", "report")

ImageInput = str | os.PathLike | Tensor
_NO_DETECTIONS = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}


@dataclass(frozen=True)
class DetectionFilter:
    """Which detections of an image to keep: scores of at least ``conf``, labels in ``labels``, the best ``max_det``
    (None: no limit of that kind). Build with ``DetectionFilter.of`` to check the values."""

    class_names: list[str]
    conf: float | None = None
    max_det: int | None = None
    labels: Tensor | None = None  # [K] int64

    @classmethod
    def of(
        cls,
        class_names: list[str],
        conf: float | None = None,
        max_det: int | None = None,
        classes: Sequence[int | str] | None = None,
    ) -> DetectionFilter:
        """The filter for these settings; SSDError naming a setting that is out of range or a class unknown."""
        if conf is not None and not 0.0 <= conf <= 1.0:
            raise SSDError(f"conf must be between 0 and 1, got {conf}")
        if max_det is not None and max_det < 1:
            raise SSDError(f"max_det must be at least 1, got {max_det}")
        labels = None if classes is None else torch.tensor([label_of(class_names, c) for c in classes])
        return cls(class_names, conf, max_det, labels)

    def __call__(self, det: dict[str, Tensor]) -> dict[str, Any]:
        """One image's detections on the CPU, kept by ``conf`` and ``labels``, the best ``max_det``, with names."""
        boxes, scores, labels = (det[k].cpu() for k in ("boxes", "scores", "labels"))
        keep = torch.ones_like(scores, dtype=torch.bool)
        if self.conf is not None:
            keep &= scores >= self.conf
        if self.labels is not None:
            keep &= torch.isin(labels, self.labels)
        index = keep.nonzero().squeeze(1)
        if self.max_det is not None:
            index = index[torch.argsort(scores[index], descending=True, stable=True)[: self.max_det]]
        labels = labels[index].long()
        names = [self.class_names[i] for i in labels.tolist()]
        return {"boxes": boxes[index].float(), "scores": scores[index].float(), "labels": labels, "names": names}


def label_of(class_names: list[str], cls: int | str) -> int:
    """The label of a class given by label (an int or a digit string) or by name; SSDError if it has none."""
    if isinstance(cls, str) and cls in class_names[1:]:
        return class_names.index(cls)
    if isinstance(cls, str) and cls.isdigit():
        cls = int(cls)
    if isinstance(cls, int) and 1 <= cls < len(class_names):
        return cls
    raise SSDError(
        f"class {cls!r} is not one of this model's: labels 1..{len(class_names) - 1} or names "
        f"{', '.join(class_names[1:])}"
    )


class Predictor:
    """Detections for image files, tensors or videos, batched, with optional score, count and class filters.

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
        self.input_size, self.backend, self.precision = loaded.input_size, backend, precision
        if batch_size < 1:
            raise SSDError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.filter = DetectionFilter.of(self.class_names, conf, max_det, classes)

    def __call__(self, source: ImageInput | Sequence[ImageInput], on_error: str = "raise") -> list[dict[str, Any]]:
        """Detections for one image or a list: paths or ``Tensor[3, H, W]`` (uint8, or float in 0..1).

        Returns one dict per image: ``boxes`` (``Tensor[N, 4]`` xyxy pixels), ``scores``, ``labels`` (on the
        CPU), ``names`` and, for files, ``path``. Files are read one batch at a time. A file that cannot be read
        raises ``DataError`` naming it (``on_error="raise"``), or (``"report"``) gets a result with no detections
        and ``error``, the reason, while the other files are predicted.
        """
        if on_error not in ON_ERROR:
            raise SSDError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
        items = [source] if isinstance(source, (str, os.PathLike, Tensor)) else list(source)
        results: list[dict[str, Any]] = []
        for start in range(0, len(items), self.batch_size):
            chunk, images, failed = items[start : start + self.batch_size], [], {}
            for position, item in enumerate(chunk):
                try:
                    images.append(self._to_image(item))
                except DataError as err:
                    if on_error == "raise":
                        raise
                    failed[position] = {**self.filter(_NO_DETECTIONS), "path": err.path, "error": err.message}
            detections = iter(self.detect(images))
            for position, item in enumerate(chunk):
                det = failed.get(position) or next(detections)
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

    def detect(self, images: Sequence[Tensor], keep: DetectionFilter | None = None) -> list[dict[str, Any]]:
        """Detections for images ``[3, H, W]`` (uint8, or float in 0..1), ``batch_size`` per forward, kept by
        ``keep`` (default: the predictor's own filter)."""
        keep = keep or self.filter
        results = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = [img.to(self.device) for img in images[start : start + self.batch_size]]
                batch = [img.float() / 255 if img.dtype == torch.uint8 else img.float() for img in batch]
                results.extend(keep(det) for det in self.detector(batch))
        return results

    def frames(
        self, source: str | os.PathLike[str] | VideoReader, vid_stride: int = 1
    ) -> Iterator[tuple[int, Tensor, dict[str, Any]]]:
        """``(frame number, frame uint8 [3, H, W], detections)`` for every ``vid_stride``-th frame of a video file,
        a camera (``0``) or a network stream (``rtsp://``, ``http://``, ...), or of an open ``VideoReader``;
        ``batch_size`` file frames per forward, live frames one by one. A live source that breaks off ends the
        iteration with a warning."""
        if vid_stride < 1:
            raise SSDError(f"vid_stride must be at least 1, got {vid_stride}")
        with nullcontext(source) if isinstance(source, VideoReader) else VideoReader(source) as video:
            for chunk in video.chunks(self.batch_size, vid_stride):
                for (number, image), det in zip(chunk, self.detect([image for _, image in chunk])):
                    yield number, image, det

    def stream(self, source: str | os.PathLike[str], vid_stride: int = 1) -> Iterator[dict[str, Any]]:
        """One result per frame of ``source`` (see ``frames``), as it is computed: the detections with ``frame``,
        ``width`` and ``height``; the frames themselves are not kept."""
        for number, image, det in self.frames(source, vid_stride):
            yield {**det, "frame": number, "width": int(image.shape[-1]), "height": int(image.shape[-2])}
