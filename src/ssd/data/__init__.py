"""Detection data: readers for VOC, COCO and YOLO layouts, the synthetic ``shapes`` dataset and the data checker.

``build_dataset(load_data_config("data.yaml"), "train")`` gives a :class:`DetectionDataset` of :class:`Sample`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import DataError
from ..images import read_image
from .coco import CocoDataset
from .dataset import DataConfig, DetectionDataset, ImageAnnotation, Problem, Sample, load_data_config
from .voc import VOC_CLASSES, VOCDataset, write_voc_annotation
from .yolo import YoloDataset


def build_dataset(
    data_config: DataConfig,
    split: str,
    transform: Callable[[Sample], Any] | None = None,
    *,
    keep_difficult: bool = True,
    skip_bad: bool = True,
) -> DetectionDataset:
    """The dataset of ``split`` (train, val or test) described by ``data_config``.

    ``keep_difficult=False`` drops VOC's difficult objects (evaluation keeps them); ``skip_bad`` leaves out
    unusable images with a warning instead of raising DataError.
    """
    spec = data_config.split(split)
    root = data_config.path
    options: dict[str, Any] = dict(keep_difficult=keep_difficult, skip_bad=skip_bad)
    if data_config.format == "coco":
        if not isinstance(spec, dict) or sorted(spec) != ["annotations", "images"]:
            raise DataError(
                data_config.source,
                f"split {split!r}: a coco split is {{images: <image folder>, annotations: <instances JSON file>}}",
            )
        return CocoDataset(
            root / str(spec["images"]), root / str(spec["annotations"]), data_config.names, transform, **options
        )
    parts = [spec] if isinstance(spec, str) else spec
    if not isinstance(parts, list) or not parts or not all(isinstance(p, str) for p in parts):
        example = "VOC2007/trainval" if data_config.format == "voc" else "images/train"
        raise DataError(data_config.source, f"split {split!r}: expected a path such as {example!r} or a list of them")
    if data_config.format == "voc":
        return VOCDataset(root, parts, data_config.names, transform, **options)
    if data_config.names is None:
        raise DataError(data_config.source, "a yolo dataset needs 'names' (its label files hold class numbers only)")
    return YoloDataset([root / p for p in parts], data_config.names, transform, **options)


__all__ = [
    "VOC_CLASSES",
    "CocoDataset",
    "DataConfig",
    "DetectionDataset",
    "ImageAnnotation",
    "Problem",
    "Sample",
    "VOCDataset",
    "YoloDataset",
    "build_dataset",
    "load_data_config",
    "read_image",
    "write_voc_annotation",
]
