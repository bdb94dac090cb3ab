"""Deployment: ONNX export (detections inside the graph), an ONNX Runtime detector and int8 quantization.

Needs the optional packages ``onnx`` and ``onnxruntime`` (``pip install 'ssd-detector[export]'``).
"""

from ..errors import SSDError

try:
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
except ModuleNotFoundError as exc:
    raise SSDError(
        f"ONNX export needs the packages onnx and onnxruntime: pip install 'ssd-detector[export]' ({exc})"
    ) from None

from .onnx import ExportableSSD, export_onnx, read_export_info, verify_onnx  # noqa: E402
from .quantize import quantize_onnx_int8  # noqa: E402
from .runtime import OnnxRuntimeDetector  # noqa: E402

__all__ = [
    "ExportableSSD",
    "OnnxRuntimeDetector",
    "export_onnx",
    "quantize_onnx_int8",
    "read_export_info",
    "verify_onnx",
]
