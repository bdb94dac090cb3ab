"""Detection metrics: PASCAL VOC AP (2007 11-point and 2010+ all-point), COCO AP, confusion matrix.

``evaluate`` is the one entry point the engine calls; ``to_json_dict`` makes its result JSON-safe.
Plots of the results are in ``ssd.plots`` (it loads matplotlib).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .coco import STAT_NAMES, coco_backend, coco_evaluate, to_coco_results
from .confusion import confusion_matrix
from .voc import DetectionList, average_precision, voc_evaluate

METRICS = ("voc07", "voc", "coco")


def evaluate(
    detections: DetectionList,
    targets: DetectionList,
    metric: str,
    class_names: Sequence[str] | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """Score ``detections`` against ``targets`` (one dict per image) with ``metric`` in ``METRICS``.

    ``"voc07"``: VOC2007 11-point AP at IoU 0.5; ``"voc"``: VOC2010+ all-point AP at IoU 0.5; ``"coco"``:
    pycocotools' AP@[.5:.95] and friends. Every result has ``map`` and ``per_class`` {label: AP or None};
    ``kw`` goes to :func:`voc_evaluate` (``iou_threshold``) or :func:`coco_evaluate` (``label_to_category_id``,
    ``backend``: ``"auto"``, ``"faster-coco-eval"`` or ``"pycocotools"``, recorded as the result's ``coco_backend``).
    """
    if metric in ("voc07", "voc"):
        return voc_evaluate(detections, targets, use_07_metric=metric == "voc07", class_names=class_names, **kw)
    if metric == "coco":
        return coco_evaluate(detections, targets, class_names=class_names, **kw)
    raise ValueError(f"unknown metric {metric!r}: expected one of {', '.join(METRICS)}")


def _json_value(value: Any) -> Any:
    """``value`` with numpy/torch scalars as Python numbers, NaN/inf as None, containers converted."""
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_value(v) for v in value]
    if hasattr(value, "item"):  # numpy or torch scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json_dict(result: dict[str, Any], class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """A JSON-safe copy of an ``evaluate`` result: without ``curves``, plain numbers, string keys.

    With ``class_names``, the per-class tables (``per_class``, ``num_gt``) are keyed by name instead of label.
    """
    out = {}
    for key, value in result.items():
        if key == "curves":
            continue
        if class_names is not None and key in ("per_class", "num_gt"):
            value = {class_names[label]: v for label, v in value.items()}
        out[key] = _json_value(value)
    return out


__all__ = [
    "METRICS",
    "STAT_NAMES",
    "average_precision",
    "coco_backend",
    "coco_evaluate",
    "confusion_matrix",
    "evaluate",
    "to_coco_results",
    "to_json_dict",
    "voc_evaluate",
]
