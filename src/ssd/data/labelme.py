"""LabelMe: one JSON file per image (``imagePath``, ``imageWidth``, ``imageHeight``, ``shapes``), rectangles given
by two corner points in continuous pixel coordinates like ours.

Only rectangles are boxes: an image that also holds a polygon, circle, line or point is left out with a problem,
so that the object it outlines is not learned as background.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np

from ..errors import DataError
from ..images import read_image_size
from .dataset import DetectionDataset, ImageAnnotation, Problem, check_boxes


class LabelMeDataset(DetectionDataset):
    """The LabelMe ``.json`` files of ``folders``, each with the image its ``imagePath`` names."""

    def __init__(
        self,
        folders: Sequence[str | os.PathLike[str]],
        class_names: Sequence[str],
        transform: Callable[..., Any] | None = None,
        *,
        keep_difficult: bool = True,
        skip_bad: bool = True,
    ) -> None:
        label_of = {name: i + 1 for i, name in enumerate(class_names)}
        annotations: list[ImageAnnotation] = []
        problems: list[Problem] = []
        for json_path in (p for folder in folders for p in labelme_files(Path(folder))):
            annotation, found = read_labelme_file(json_path, label_of)
            problems += found
            if annotation is not None:
                annotations.append(annotation)
        super().__init__(
            annotations, class_names, problems, transform, keep_difficult=keep_difficult, skip_bad=skip_bad
        )


def labelme_files(folder: Path) -> list[Path]:
    """The ``.json`` files of a folder, sorted; DataError if there is no such folder or it holds none."""
    if not folder.is_dir():
        raise DataError(folder, "LabelMe folder not found")
    files = sorted(folder.glob("*.json"))
    if not files:
        raise DataError(folder, "no LabelMe .json files in this folder")
    return files


def read_labelme_file(path: Path, label_of: dict[str, int]) -> tuple[ImageAnnotation | None, list[Problem]]:
    """One image's boxes from its LabelMe file, or None and the problems that make it unusable."""
    data, problem = _load(path)
    if data is None:
        return None, [problem]
    image_path = _image_path(path, data.get("imagePath"))
    if image_path is None:
        return None, [Problem(str(path), "imagePath", f"the image {data.get('imagePath')!r} is not found beside it")]
    width, height = data.get("imageWidth"), data.get("imageHeight")
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        try:
            height, width = read_image_size(image_path)
        except DataError as exc:
            return None, [Problem(exc.path, "", exc.message)]
    boxes, labels, problems = [], [], []
    for j, shape in enumerate(data.get("shapes") or []):
        box, label, problem = _rectangle(shape, j, str(path), label_of)
        if problem is not None:
            problems.append(problem)
        else:
            boxes.append(box)
            labels.append(label)
    checked, errors = check_boxes(np.array(boxes, dtype=np.float64).reshape(-1, 4), width, height)
    problems += [Problem(str(path), f"rectangle {i + 1}", message) for i, message in errors.items()]
    if problems:
        return None, problems
    return ImageAnnotation.of_boxes(str(image_path), path.stem, (height, width), checked, labels, str(path)), []


def _load(path: Path) -> tuple[dict[str, Any] | None, Problem | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        return None, Problem(str(path), f"line {exc.lineno}", f"malformed JSON: {exc.msg}")
    except (UnicodeDecodeError, OSError) as exc:
        return None, Problem(str(path), "", f"cannot read the file: {exc}")
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        return None, Problem(str(path), "", "not a LabelMe file: expected an object with a 'shapes' list")
    return data, None


def _image_path(path: Path, image_path: Any) -> Path | None:
    """The image a LabelMe file names (relative to the file; Windows separators allowed), else one of its name."""
    if not isinstance(image_path, str) or not image_path:
        return None
    relative = Path(PureWindowsPath(image_path).as_posix()) if "\\" in image_path else Path(image_path)
    for candidate in (path.parent / relative, path.parent / relative.name):
        if candidate.is_file():
            return candidate
    return None


def _rectangle(shape: Any, j: int, path: str, label_of: dict[str, int]) -> tuple[list[float], int, Problem | None]:
    """``(xyxy, label, None)`` of a rectangle shape, or a problem saying why the shape cannot be a box."""
    if not isinstance(shape, dict):
        return [], 0, Problem(path, f"shape {j}", f"expected an object, got {shape!r}")
    kind, label = shape.get("shape_type") or "polygon", shape.get("label")
    where = f"shape {j} ({kind} {label!r})"
    if not isinstance(label, str) or not label.strip():
        return [], 0, Problem(path, where, f"the label must be a class name, got {label!r}")
    if kind != "rectangle":
        return [], 0, Problem(path, where, "only rectangles are boxes: the image is left out, so that this object is "
                              "not learned as background")  # fmt: skip
    if label not in label_of:
        return [], 0, Problem(path, where, f"unknown class {label!r} (classes: {', '.join(label_of)})")
    try:
        points = [(float(x), float(y)) for x, y in shape["points"]]
    except (KeyError, TypeError, ValueError):
        points = []
    if len(points) < 2:  # LabelMe writes two corners, X-AnyLabeling four
        return [], 0, Problem(path, where, "a rectangle needs 'points': two (or four) [x, y] corners")
    xs, ys = [x for x, _ in points], [y for _, y in points]
    return [min(xs), min(ys), max(xs), max(ys)], label_of[label], None


def labelme_label_names(folders: Sequence[Path]) -> list[str]:
    """The sorted labels of the rectangles in the LabelMe files of ``folders``, for a data YAML without names."""
    found: set[str] = set()
    for folder in folders:
        for path in labelme_files(folder):
            data, _ = _load(path)
            shapes = data.get("shapes", []) if data else []
            rectangles = [s for s in shapes if isinstance(s, dict) and s.get("shape_type") == "rectangle"]
            found |= {s["label"] for s in rectangles if isinstance(s.get("label"), str) and s["label"].strip()}
    if not found:
        raise DataError(folders[0], "the LabelMe files hold no rectangle: give names: in the data YAML")
    return sorted(found)
