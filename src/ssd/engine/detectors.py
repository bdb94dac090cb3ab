"""Loading a detector to run: a checkpoint, a built ``SSD`` or an ONNX file, with its precision and device.

``ssd eval``, ``ssd predict``, the ``Predictor`` and the benchmarks all load detectors here, so a model runs
the same way whichever command runs it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..checkpoint import load
from ..errors import SSDError
from ..layout import apply_layout
from ..model.ssd import SSD
from .distributed import select_device

Detector = Callable[[list[Tensor]], list[dict[str, Tensor]]]
BACKENDS = ("torch", "onnxruntime")
PRECISIONS = ("fp32", "bf16", "fp16")


class AutocastDetector:
    """A PyTorch detector run under autocast in ``dtype`` (bf16 or fp16); boxes are decoded and NMS runs in fp32,
    since the post-processing casts the head outputs back."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype, device: torch.device) -> None:
        self.model = model
        self.dtype = dtype
        self.device_type = device.type

    def __call__(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.model(images)


def with_precision(model: torch.nn.Module, precision: str, device: torch.device) -> Detector:
    """``model`` itself for fp32, else wrapped to run under autocast: bf16 (CPU or CUDA) or fp16 (CUDA only)."""
    if precision not in PRECISIONS:
        raise SSDError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return model
    if precision == "fp16" and device.type != "cuda":
        raise SSDError("precision fp16 needs a CUDA device; on the CPU use bf16")
    return AutocastDetector(model, torch.bfloat16 if precision == "bf16" else torch.float16, device)


def class_names_or_default(names: list[str] | None, num_classes: int) -> list[str]:
    """The model's class names, or ``class1``, ``class2``, ... for a model saved without them."""
    return list(names or ["__background__"] + [f"class{i}" for i in range(1, num_classes)])


@dataclass
class LoadedDetector:
    """A detector ready to call on a list of images ``[3, H, W]`` in 0..1, with what callers need to know of it."""

    detector: Detector
    class_names: list[str]
    input_size: int
    device: torch.device  # where the images must be


def load_detector(
    weights: str | os.PathLike[str] | SSD,
    backend: str = "torch",
    device: str | torch.device | None = "auto",
    precision: str = "fp32",
) -> LoadedDetector:
    """The detector behind ``weights``: a checkpoint or a built ``SSD`` (backend ``torch``, in ``precision``), or
    an ONNX file (backend ``onnxruntime``, which picks its own provider and takes CPU tensors).

    A checkpoint runs in the layout that is fastest for inference on its device (``ssd.layout``; the same
    detections to float rounding). A built ``SSD`` is put in eval mode and, with ``device="auto"``, stays on the
    device it is on, in its own layout.
    """
    if backend not in BACKENDS:
        raise SSDError(f"unknown backend {backend!r}: use {' or '.join(BACKENDS)}")
    if backend == "onnxruntime":
        return _load_onnx(weights, precision)
    if isinstance(weights, SSD):
        auto = device in (None, "", "auto")
        torch_device = weights.priors.device if auto else _device(device)
        model = weights.to(torch_device).eval()
    else:
        if Path(weights).suffix.lower() == ".onnx":
            raise SSDError(f"{weights}: an ONNX file runs with backend='onnxruntime'")
        torch_device = _device(device)
        model = apply_layout(load(weights).to(torch_device), torch_device, training=False)
    names = class_names_or_default(model.config.class_names, model.num_classes)
    return LoadedDetector(with_precision(model, precision, torch_device), names, model.config.input_size, torch_device)


def _device(device: str | torch.device | None) -> torch.device:
    return device if isinstance(device, torch.device) else select_device(device)


def _load_onnx(weights: str | os.PathLike[str] | SSD, precision: str) -> LoadedDetector:
    if isinstance(weights, SSD):
        raise SSDError("a built SSD model runs with backend='torch'; pass an .onnx file for onnxruntime")
    if precision != "fp32":
        raise SSDError(f"precision {precision} is for the torch backend; an ONNX model runs in its own precision")
    from ..export.runtime import OnnxRuntimeDetector  # onnxruntime is optional: loaded for this backend only

    detector = OnnxRuntimeDetector(weights)
    names = class_names_or_default(detector.class_names, detector.num_classes)
    return LoadedDetector(detector, names, int(detector.input_size), torch.device("cpu"))
