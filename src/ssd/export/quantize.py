"""Int8 post-training quantization of an exported SSD with ONNX Runtime (static, QDQ format).

Only the convolutions, their ReLUs and the max-pools between them are quantized; L2Norm, the MobileNets' hard-swish,
ReLU6, squeeze-excitation and residual additions, the head reshapes and the whole post-processing stay in float,
so decoding and NMS are those of the fp32 file. This works on detection and
raw exports alike; either keeps its metadata, so ``OnnxRuntimeDetector`` runs the int8 file as it is.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import onnx
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quant_pre_process, quantize_static
from torch import Tensor

from ..images import resize_to_square
from .onnx import INPUT_NAME, read_export_info, to_numpy_images

log = logging.getLogger(__name__)

# With "Relu" listed, the quantizer drops each ReLU and gives its convolution the ReLU's output range (zero point
# 0, so uint8 clamps the negatives exactly): ONNX Runtime runs each pair as one QLinearConv.
QUANTIZED_OPS = ["Conv", "Relu", "MaxPool"]
SYNTHETIC_CALIBRATION_IMAGES = 8


class _ImageReader(CalibrationDataReader):
    """Feeds calibration images one by one, warped to the model's input size."""

    def __init__(self, images: list[Tensor], size: int) -> None:
        self._batches: Iterator[Tensor] = iter(resize_to_square(images, size).split(1))

    def get_next(self) -> dict | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: to_numpy_images(batch)}


def quantize_onnx_int8(
    fp32_path: str | os.PathLike[str],
    int8_path: str | os.PathLike[str],
    calibration_images: list[Tensor] | None = None,
) -> Path:
    """Write an int8 version of the exported file ``fp32_path`` to ``int8_path`` and return that path.

    Activation ranges come from ``calibration_images`` (``[3, H, W]`` in 0..1; a few dozen real images are
    plenty); without them, random images are used, which quantizes correctly but less accurately.
    Weights are int8 per output channel, activations uint8; the metadata of the fp32 file is kept.
    """
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    info = read_export_info(fp32_path)
    size = info.config.input_size
    if not calibration_images:
        log.warning("no calibration images: calibrating the int8 model on random images")
        generator = torch.Generator().manual_seed(0)
        calibration_images = list(torch.rand(SYNTHETIC_CALIBRATION_IMAGES, 3, size, size, generator=generator))
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        with _quiet_root_logger():  # onnxruntime's quantizer logs a line per tensor on the root logger
            quantize_static(
                str(prepared),
                str(int8_path),
                _ImageReader(calibration_images, size),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=QUANTIZED_OPS,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
    int8_model = onnx.load(str(int8_path))
    fp32_props = onnx.load(str(fp32_path), load_external_data=False).metadata_props
    onnx.helper.set_model_props(int8_model, {p.key: p.value for p in fp32_props})
    onnx.save(int8_model, str(int8_path))
    return int8_path


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)
