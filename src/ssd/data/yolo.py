"""YOLO (Ultralytics) layout: ``images/`` and ``labels/`` trees, one ``class cx cy w h`` line per object.

Coordinates are normalised to the image, so every image's size is read from its header when the dataset is
built (the header only, no decoding). Class ids are 0-based: label = class id + 1. The label files of a split are
converted and checked ``CHUNK_IMAGES`` at a time, in a few numpy calls; only a file with a bad line is parsed line
by line, so that each problem names its line.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..images import IMAGE_SUFFIXES, read_image_size
from .dataset import DetectionDataset, ImageAnnotation, Problem, check_boxes

CHUNK_IMAGES = 10_000  # images whose label lines are held as strings at once, converted together


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
        images = [p for d in dirs for p in list_images(Path(d))]
        annotations: list[ImageAnnotation] = []
        problems: list[Problem] = []
        for start in range(0, len(images), CHUNK_IMAGES):
            read_chunk(images[start : start + CHUNK_IMAGES], len(class_names), annotations, problems)
        super().__init__(
            annotations, class_names, problems, transform, keep_difficult=keep_difficult, skip_bad=skip_bad
        )


@dataclass
class LabelFile:
    """An image's size and the lines of its label file split into fields (``None``: the image has no label file)."""

    image_path: Path
    height: int
    width: int
    labels_path: str
    lines: list[list[str]] | None

    def numbered_rows(self) -> list[tuple[int, list[str]]]:
        """``(line number, fields)`` of the non-empty lines."""
        return [(n, fields) for n, fields in enumerate(self.lines or (), start=1) if fields]

    def annotation(self, boxes_xyxy: np.ndarray, class_ids: np.ndarray) -> ImageAnnotation:
        num = len(class_ids)
        return ImageAnnotation(
            str(self.image_path), self.image_path.stem, self.height, self.width, boxes_xyxy,
            class_ids.astype(np.int64) + 1, np.zeros(num, dtype=bool), np.zeros(num, dtype=bool), self.labels_path,
        )  # fmt: skip


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


def read_chunk(
    image_paths: Sequence[Path], num_classes: int, annotations: list[ImageAnnotation], problems: list[Problem]
) -> None:
    """Read the images' sizes and label files and append their annotations and problems, in image order."""
    found = [read_label_file(p, label_path(p)) for p in image_paths]
    parsed = iter(annotations_in_bulk([f for f in found if isinstance(f, LabelFile)], num_classes))
    for item in found:
        annotation, item_problems = next(parsed) if isinstance(item, LabelFile) else (None, [item])
        problems += item_problems
        if annotation is not None:
            annotations.append(annotation)


def read_label_file(image_path: Path, labels_file: Path) -> LabelFile | Problem:
    """The image's size (from its header) and its label file's lines, or the problem that makes the image unusable."""
    try:
        height, width = read_image_size(image_path)
    except DataError as exc:
        return Problem(exc.path, "", exc.message)
    path = str(labels_file)
    try:
        text = labels_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return LabelFile(image_path, height, width, path, None)
    except (OSError, UnicodeDecodeError) as exc:
        return Problem(path, "", f"cannot read label file: {exc}")
    return LabelFile(image_path, height, width, path, [line.split() for line in text.splitlines()])


def annotations_in_bulk(
    files: Sequence[LabelFile], num_classes: int
) -> list[tuple[ImageAnnotation | None, list[Problem]]]:
    """Each file's image with its objects in pixels, or None and the problems that make it unusable.

    The rows of every file whose lines all have five fields are converted in one call and checked together
    (class ids, boxes against their own image); a file with another line count, a non-number or a bad class id
    goes through :func:`read_lines`, which names each bad line.
    """
    rows = [f.numbered_rows() for f in files]
    fast = [all(len(fields) == 5 for _, fields in file_rows) for file_rows in rows]
    table = _floats([fields for file_rows, ok in zip(rows, fast) if ok for _, fields in file_rows])
    if table is None:  # a non-number somewhere: the files that have one go line by line
        fast = [ok and _floats([fields for _, fields in file_rows]) is not None for file_rows, ok in zip(rows, fast)]
        table = _floats([fields for file_rows, ok in zip(rows, fast) if ok for _, fields in file_rows])
    counts = np.array([len(file_rows) if ok else 0 for file_rows, ok in zip(rows, fast)], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)]).tolist()
    owner = np.repeat(np.arange(len(files)), counts)
    ids = table[:, 0]
    bad_class = set(owner[(ids != np.floor(ids)) | (ids < 0) | (ids >= num_classes)].tolist())
    width = np.array([f.width for f in files], dtype=np.float64)[owner]
    height = np.array([f.height for f in files], dtype=np.float64)[owner]
    boxes, box_errors = check_boxes(_pixel_boxes(table, width, height), width, height)
    errors_of: dict[int, list[Problem]] = {}
    for k, message in box_errors.items():
        i = int(owner[k])
        errors_of.setdefault(i, []).append(Problem(files[i].labels_path, f"line {rows[i][k - starts[i]][0]}", message))

    results: list[tuple[ImageAnnotation | None, list[Problem]]] = []
    for i, file in enumerate(files):
        if not fast[i] or i in bad_class:
            results.append(read_lines(file, rows[i], num_classes))
        elif i in errors_of:
            results.append((None, errors_of[i]))
        else:
            results.append((file.annotation(boxes[starts[i] : starts[i + 1]], ids[starts[i] : starts[i + 1]]), []))
    return results


def _floats(rows: list[list[str]]) -> np.ndarray | None:
    """``rows`` of five numbers as ``ndarray[N, 5]``, or None if one is not a number."""
    try:
        return np.array(rows, dtype=np.float64).reshape(-1, 5)
    except ValueError:
        return None


def _pixel_boxes(table: np.ndarray, width: np.ndarray | float, height: np.ndarray | float) -> np.ndarray:
    """xyxy pixel boxes of rows ``[class, cx, cy, w, h]`` normalised to images of ``width`` x ``height``."""
    cx, cy, w, h = table[:, 1] * width, table[:, 2] * height, table[:, 3] * width, table[:, 4] * height
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


def read_lines(
    file: LabelFile, rows: list[tuple[int, list[str]]], num_classes: int
) -> tuple[ImageAnnotation | None, list[Problem]]:
    """One file's ``(line number, fields)`` rows parsed one by one: its annotation, or None and a problem per bad line."""
    path = file.labels_path
    problems: list[Problem] = []
    values: list[list[float]] = []
    line_numbers: list[int] = []
    for n, fields in rows:
        if len(fields) != 5:
            problems.append(Problem(path, f"line {n}", f"expected 5 fields 'class cx cy w h', got {len(fields)}"))
            continue
        try:
            numbers = [float(v) for v in fields]
        except ValueError:
            problems.append(Problem(path, f"line {n}", f"not a number in {' '.join(fields)!r}"))
            continue
        if not numbers[0].is_integer() or not 0 <= numbers[0] < num_classes:
            problems.append(Problem(path, f"line {n}", f"class id {fields[0]} is not one of 0..{num_classes - 1}"))
            continue
        values.append(numbers)
        line_numbers.append(n)

    table = np.array(values, dtype=np.float64).reshape(-1, 5)
    boxes_xyxy, box_errors = check_boxes(_pixel_boxes(table, file.width, file.height), file.width, file.height)
    problems += [Problem(path, f"line {line_numbers[k]}", message) for k, message in box_errors.items()]
    if problems:
        return None, problems
    return file.annotation(boxes_xyxy, table[:, 0]), []
