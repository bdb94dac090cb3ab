"""CVAT for images 1.1: one XML file, an ``<image>`` element per image (``name``, ``width``, ``height``) holding its
``<box label xtl ytl xbr ybr>`` elements, in continuous pixel coordinates like ours.

Only axis-aligned boxes are objects here: an image that also holds a polygon, polyline, points, ellipse, mask,
cuboid, skeleton or rotated box is left out with a problem, so that the object it outlines is not learned as
background. Image-level ``<tag>``s are not objects and are ignored.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .dataset import DetectionDataset, ImageAnnotation, Problem, check_boxes
from .layouts import split_path_or_mapping


class CvatDataset(DetectionDataset):
    """The images of a CVAT for images 1.1 ``annotation_file``, found under ``images_dir`` by their ``name``."""

    def __init__(
        self,
        annotation_file: str | os.PathLike[str],
        images_dir: str | os.PathLike[str],
        class_names: Sequence[str],
        transform: Callable[..., Any] | None = None,
        *,
        keep_difficult: bool = True,
        skip_bad: bool = True,
    ) -> None:
        path = str(annotation_file)
        root = parse_cvat_file(Path(annotation_file))
        images = root.findall("image")
        if not images:
            what = (
                "it annotates a video (<track> elements), which is not read"
                if root.find("track") is not None
                else "empty"
            )
            raise DataError(path, f"no <image> element: {what}; export the task as 'CVAT for images 1.1'")
        label_of = {name: i + 1 for i, name in enumerate(class_names)}
        annotations: list[ImageAnnotation] = []
        problems: list[Problem] = []
        for k, element in enumerate(images):
            annotation, found = _read_image(element, k, Path(images_dir), path, label_of)
            problems += found
            if annotation is not None:
                annotations.append(annotation)
        super().__init__(
            annotations, class_names, problems, transform, keep_difficult=keep_difficult, skip_bad=skip_bad
        )


def parse_cvat_file(path: Path) -> ET.Element:
    """The ``<annotations>`` root of a CVAT XML file; DataError (with the line) if missing, malformed or another XML."""
    if not path.is_file():
        raise DataError(path, "annotation file not found")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DataError(path, f"line {exc.position[0]}: malformed XML: {str(exc).split(':')[0]}") from None
    if root.tag != "annotations":
        raise DataError(path, f"the root element is <{root.tag}>, not CVAT's <annotations>")
    return root


def _read_image(
    element: ET.Element, k: int, images_dir: Path, path: str, label_of: dict[str, int]
) -> tuple[ImageAnnotation | None, list[Problem]]:
    """One ``<image>``'s boxes, or None and the problems that make it unusable."""
    name = element.get("name", "")
    where = f"image {element.get('id', k)} ({name})" if name else f"image {element.get('id', k)}"
    try:
        width, height = int(float(element.get("width", ""))), int(float(element.get("height", "")))
    except ValueError:
        width = height = 0
    if not name or width <= 0 or height <= 0:
        return None, [Problem(path, where, "needs a 'name' and a positive 'width' and 'height'")]
    image_path = images_dir / name
    if not image_path.is_file():
        return None, [Problem(str(image_path), "", f"image file not found (listed in {path})")]
    boxes, labels, problems = [], [], []
    for j, shape in enumerate(element):
        label = shape.get("label", "")
        at = f"{where}, shape {j} ({shape.tag} {label!r})"
        problem = _box_problem(shape, label, label_of)
        if problem:
            problems.append(Problem(path, at, problem))
        elif shape.tag == "box":
            boxes.append([float(shape.get(a, "")) for a in ("xtl", "ytl", "xbr", "ybr")])
            labels.append(label_of[label])
    checked, errors = check_boxes(np.array(boxes, dtype=np.float64).reshape(-1, 4), width, height)
    problems += [Problem(path, f"{where}, box {i + 1}", message) for i, message in errors.items()]
    if problems:
        return None, problems
    image_id = int(element.get("id")) if str(element.get("id", "")).isdigit() else Path(name).stem
    return ImageAnnotation.of_boxes(str(image_path), image_id, (height, width), checked, labels, path), []


def _box_problem(shape: ET.Element, label: str, label_of: dict[str, int]) -> str | None:
    """Why an element of an ``<image>`` cannot be one of its boxes, or None (a box, or an image-level tag)."""
    if shape.tag == "tag":
        return None
    if shape.tag != "box":
        return f"only boxes are read ({shape.tag} is not): the image is left out, so that this object is not learned as background"
    if label not in label_of:
        return f"unknown class {label!r} (classes: {', '.join(label_of)})"
    try:
        [float(shape.get(a, "")) for a in ("xtl", "ytl", "xbr", "ybr")]
        rotation = float(shape.get("rotation", "0")) % 360
    except ValueError:
        return "needs numbers xtl, ytl, xbr and ybr"
    if min(rotation, 360 - rotation) > 1e-6:
        return f"a box rotated by {rotation:g} degrees is not an axis-aligned box: the image is left out"
    return None


def cvat_split_files(root: Path, spec: Any, source: str, split: str) -> tuple[Path, Path]:
    """``(image folder, annotations XML)`` of a CVAT split: the XML file (its images in an ``images`` folder beside
    it, as CVAT's export zip holds them, or beside it), or ``{images, annotations}``."""
    xml_path = split_path_or_mapping(root, spec, source, split, "cvat")
    if isinstance(xml_path, tuple):
        return xml_path
    if xml_path.is_dir():  # the unpacked export: annotations.xml and images/
        xml_path = xml_path / "annotations.xml"
    images = xml_path.parent / "images"
    return (images if images.is_dir() else xml_path.parent), xml_path


def cvat_label_names(xml_paths: Sequence[Path]) -> list[str]:
    """The sorted labels that the files' boxes use or that their ``<meta>`` defines for boxes (type rectangle or
    any, not a skeleton's part), for a data YAML without names."""
    found: set[str] = set()
    for path in xml_paths:
        root = parse_cvat_file(path)
        for label in root.iter("label"):
            kind = (label.findtext("type") or "any").strip()
            if label.find("name") is not None and label.find("parent") is None and kind in ("any", "rectangle"):
                found.add((label.findtext("name") or "").strip())
        found |= {box.get("label", "") for box in root.iter("box")}
    found.discard("")
    if not found:
        raise DataError(xml_paths[0], "names no label: give names: in the data YAML")
    return sorted(found)
