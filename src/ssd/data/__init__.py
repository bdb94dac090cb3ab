"""Detection data: readers for VOC, COCO, YOLO, CVAT and LabelMe layouts, the synthetic ``shapes`` dataset and the
data checker.

``build_dataset(load_data_config("data.yaml"), "train")`` gives a :class:`DetectionDataset` of :class:`Sample`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..gc_pause import gc_paused
from ..images import read_image
from .cache import cache_enabled, cached_dataset, split_sources
from .coco import CocoDataset
from .cvat import CvatDataset, cvat_label_names, cvat_split_files
from .dataset import DataConfig, DetectionDataset, ImageAnnotation, Problem, Sample, load_data_config
from .labelme import LabelMeDataset, labelme_label_names
from .layouts import coco_split_files, resolve_split_path
from .voc import VOC_CLASSES, VOCDataset, voc_names, write_voc_annotation
from .yolo import YoloDataset, label_path


def build_dataset(
    data_config: DataConfig,
    split: str,
    transform: Callable[[Sample], Any] | None = None,
    *,
    keep_difficult: bool = True,
    skip_bad: bool = True,
) -> DetectionDataset:
    """The dataset of ``split`` (train, val or test) described by ``data_config``; its ``names_source`` says where
    the class names came from.

    ``keep_difficult=False`` drops VOC's difficult objects (evaluation keeps them); ``skip_bad`` leaves out
    unusable images with a warning instead of raising DataError.
    """
    options: dict[str, Any] = dict(transform=transform, keep_difficult=keep_difficult, skip_bad=skip_bad)
    spec = data_config.split(split)
    if not cache_enabled():
        return _read_split(data_config, spec, split, options)
    anchor, sources = _split_sources(data_config, split)
    key = {"format": data_config.format, "root": str(data_config.path), "names": data_config.names, "split": spec}
    return cached_dataset(anchor, key, sources, lambda: _read_split(data_config, spec, split, {}), options)


def _read_split(data_config: DataConfig, spec: Any, split: str, options: dict[str, Any]) -> DetectionDataset:
    """The dataset of ``split`` as its reader parses it, with the garbage collector paused: the millions of
    containers a large annotation file parses into would otherwise trigger full collections over and over."""
    with gc_paused():
        return _parse_split(data_config, spec, split, options)


def _parse_split(data_config: DataConfig, spec: Any, split: str, options: dict[str, Any]) -> DetectionDataset:
    root, fmt, names, source = data_config.path, data_config.format, data_config.names, data_config.source
    transform = options.pop("transform", None)
    if fmt == "coco":
        images, annotations = coco_split_files(root, spec, source, split)
        return CocoDataset(images, annotations, names, transform, **options)
    if fmt == "cvat":
        images, annotations = cvat_split_files(root, spec, source, split)
        if names is None:
            names = cvat_label_names([cvat_split_files(root, s, source, n)[1] for n, s in data_config.splits.items()])
        return _named(CvatDataset(annotations, images, names, transform, **options), data_config)
    parts = [spec] if isinstance(spec, str) else spec
    if not isinstance(parts, list) or not parts or not all(isinstance(p, str) for p in parts):
        example = {"voc": "VOC2007/trainval", "yolo": "images/train", "labelme": "labelled/train"}[fmt]
        raise DataError(source, f"split {split!r}: expected a path such as {example!r} or a list of them")
    if fmt == "voc":
        found = None if names is not None else voc_names(root, _all_parts(data_config))
        dataset = VOCDataset(root, parts, names or found, transform, **options)
        return _named(dataset, data_config) if found is not None else dataset
    if fmt == "labelme":
        if names is None:
            names = labelme_label_names([resolve_split_path(root, p) for p in _all_parts(data_config)])
        folders = [resolve_split_path(root, p) for p in parts]
        return _named(LabelMeDataset(folders, names, transform, **options), data_config)
    if names is None:
        raise DataError(source, "a yolo dataset needs 'names' (its label files hold class numbers only)")
    return YoloDataset([resolve_split_path(root, p) for p in parts], names, transform, **options)


def _split_sources(data_config: DataConfig, split: str) -> tuple[Path, Callable[[], str]]:
    """The folder of a split's index file, and the fingerprint of the files its dataset is read from: its own
    annotations and images, and those of every split when the class names come from the annotations."""
    root, fmt, source = data_config.path, data_config.format, data_config.source
    named = {split} if data_config.names is not None or fmt in ("coco", "yolo") else set(data_config.splits)
    if fmt in ("coco", "cvat"):
        split_files = coco_split_files if fmt == "coco" else cvat_split_files
        files = {s: split_files(root, data_config.split(s), source, s) for s in named}
        return files[split][1].parent, lambda: split_sources(
            [f for _, f in files.values()], [i for i, _ in files.values()]
        )
    parts = [p for s in sorted(named) for p in _parts(data_config.split(s))]
    folders = [resolve_split_path(root, p) for p in parts if isinstance(p, str)]
    if fmt == "voc":  # a devkit split's year folder, or the folder above a folder of XML files (its images)
        folders = [f.parent for f in folders]
    if fmt == "yolo":
        folders += [label_path(f / "x").parent for f in folders if "images" in Path(os.path.abspath(f)).parts]
    return root, lambda: split_sources([], [f for f in folders if f.exists()])


def _parts(spec: Any) -> list[Any]:
    return [spec] if isinstance(spec, str) else list(spec) if isinstance(spec, list) else []


def _named(dataset: DetectionDataset, data_config: DataConfig) -> DetectionDataset:
    """``dataset``, saying that its class names were read from the annotations when the data YAML gives none."""
    if data_config.names is None:
        dataset.names_source = "the classes the annotations name, sorted; the data YAML gives no names"
    return dataset


def _all_parts(data_config: DataConfig) -> list[str]:
    """The paths of every split of a path-based data config, for the class names they use between them."""
    specs = data_config.splits.values()
    return [p for spec in specs for p in ([spec] if isinstance(spec, str) else spec) if isinstance(p, str)]


__all__ = [
    "VOC_CLASSES",
    "CocoDataset",
    "CvatDataset",
    "DataConfig",
    "DetectionDataset",
    "ImageAnnotation",
    "LabelMeDataset",
    "Problem",
    "Sample",
    "VOCDataset",
    "YoloDataset",
    "build_dataset",
    "load_data_config",
    "read_image",
    "write_voc_annotation",
]
