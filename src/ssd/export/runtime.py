"""An exported SSD run by ONNX Runtime, used like the PyTorch model in eval mode: list of images in, detections out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort
import torch
from torch import Tensor

from ..errors import DataError
from ..images import resize_to_square
from ..postprocess import PostProcessSettings, postprocess, unpad_detections
from .onnx import INPUT_NAME, read_export_info, to_numpy_images


def default_providers() -> list[str]:
    """CUDA when this ONNX Runtime build has it, else the CPU."""
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OnnxRuntimeDetector:
    """Detections from an ONNX file written by :func:`ssd.export.export_onnx` (detection or raw outputs).

    ``detector(images)`` takes images ``[3, H, W]`` float in 0..1 of any sizes and returns, per image,
    ``{"boxes": xyxy in pixels of that image, "scores", "labels"}``, like ``SSD`` in eval mode. Everything
    (input size, class names, thresholds) comes from the file's metadata. ``providers`` default to
    CUDA if available, else CPU; ``num_threads`` sets its intra-op thread count.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        providers: Sequence[str] | None = None,
        num_threads: int | None = None,
    ) -> None:
        self.path = Path(path)
        info = read_export_info(self.path)
        self.config = info.config
        self.raw = info.raw
        options = ort.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=list(providers or default_providers())
            )
        except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
            raise DataError(self.path, f"ONNX Runtime cannot load the model ({type(exc).__name__}: {exc})") from None

    @property
    def class_names(self) -> list[str] | None:
        return self.config.class_names

    @property
    def input_size(self) -> int:
        return self.config.input_size

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def __call__(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """Detections for ``images`` (one ONNX Runtime run for the whole list), boxes in original pixels."""
        image_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch = resize_to_square(images, self.input_size)
        outputs = [torch.from_numpy(o) for o in self.session.run(None, {INPUT_NAME: to_numpy_images(batch)})]
        if self.raw:
            return self._postprocess_raw(outputs, image_sizes)
        return unpad_detections(*outputs, image_sizes)

    def _postprocess_raw(self, outputs: list[Tensor], image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Raw exports: PyTorch's post-processing on the graph's ``loc``, ``conf`` and ``priors``."""
        loc, conf, priors = outputs
        settings = PostProcessSettings.from_config(self.config)
        return postprocess(loc, conf, priors, self.config.variances, image_sizes, settings)
