"""YOLO (Ultralytics) layout: ``images/`` and ``labels/`` trees, one ``class cx cy w h`` line per object.

Coordinates are normalised to the image, so every image's size is read from its header when the dataset is
built (the header only, no decoding). Class ids are 0-based: label = class id + 1.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..images import IMAGE_SUFFIXES, read_image_size
from .dataset import DetectionDataset, ImageAnnotation, Problem, check_boxes


class YoloDataset(DetectionDataset):
    """The images under ``image_dirs`` (searched recursively) with labels found by replacing ``images`` by ``labels``.

    ``images/train/a.jpg`` is labelled by ``labels/train/a.txt``; a missing label file means an image without objects.
    """

    def __init__(
        self,
        image_dirs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        class_names: Sequence[str],
        transform: Callable[..., Any] | None = None,
        *,
        keep_difficult: bool = True,
        skip_bad: bool = True,
    ) -> None:
        dirs = [image_dirs] if isinstance(image_dirs, (str, os.PathLike)) else list(image_dirs)
        annotations: list[ImageAnnotation] = []
        problems: list[Problem] = []
        for image_path in (p for d in dirs for p in list_images(Path(d))):
            annotation, found = read_yolo_image(image_path, label_path(image_path), len(class_names))
            problems += found
            if annotation is not None:
                annotations.append(annotation)
        super().__init__(
            annotations, class_names, problems, transform, keep_difficult=keep_difficult, skip_bad=skip_bad
        )


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder``, sorted; DataError if there is no such folder or it holds no image."""
    if not folder.is_dir():
        raise DataError(folder, "image folder not found")
    if "images" not in Path(os.path.abspath(folder)).parts:
        raise DataError(folder, "a YOLO image folder needs an 'images' component (labels are under 'labels')")
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise DataError(folder, f"no images ({', '.join(IMAGE_SUFFIXES)}) found")
    return images


def label_path(image_path: Path) -> Path:
    """The label file of an image: the last ``images`` component of its path replaced by ``labels``, suffix ``.txt``."""
    parts = list(Path(os.path.abspath(image_path)).parts)
    last = len(parts) - 1 - parts[::-1].index("images")
    parts[last] = "labels"
    return Path(*parts).with_suffix(".txt")


def read_yolo_image(
    image_path: Path, labels_file: Path, num_classes: int
) -> tuple[ImageAnnotation | None, list[Problem]]:
    """One image with its objects in pixels, or None and the problems that make it unusable."""
    try:
        height, width = read_image_size(image_path)
    except DataError as exc:
        return None, [Problem(exc.path, "", exc.message)]
    path = str(labels_file)
    if not labels_file.is_file():
        return ImageAnnotation.empty(str(image_path), image_path.stem, height, width, path), []
    try:
        lines = labels_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(path, "", f"cannot read label file: {exc}")]

    problems: list[Problem] = []
    rows: list[list[float]] = []
    line_numbers: list[int] = []
    for n, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            problems.append(Problem(path, f"line {n}", f"expected 5 fields 'class cx cy w h', got {len(fields)}"))
            continue
        try:
            values = [float(v) for v in fields]
        except ValueError:
            problems.append(Problem(path, f"line {n}", f"not a number in {line.strip()!r}"))
            continue
        if not values[0].is_integer() or not 0 <= values[0] < num_classes:
            problems.append(Problem(path, f"line {n}", f"class id {fields[0]} is not one of 0..{num_classes - 1}"))
            continue
        rows.append(values)
        line_numbers.append(n)

    table = np.array(rows, dtype=np.float64).reshape(-1, 5)
    cx, cy, w, h = table[:, 1] * width, table[:, 2] * height, table[:, 3] * width, table[:, 4] * height
    boxes_xyxy, box_errors = check_boxes(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1), width, height)
    problems += [Problem(path, f"line {line_numbers[k]}", message) for k, message in box_errors.items()]
    if problems:
        return None, problems
    num = len(table)
    return ImageAnnotation(
        str(image_path), image_path.stem, height, width, boxes_xyxy, table[:, 0].astype(np.int64) + 1,
        np.zeros(num, dtype=bool), np.zeros(num, dtype=bool), path,
    ), []  # fmt: skip
