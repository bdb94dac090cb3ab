"""COCO: an instances JSON file and its image folder, read with orjson.

Category ids (1..90 with gaps in COCO) map to contiguous labels 1..C sorted by id, and back for evaluation.
Crowd regions are kept with ``iscrowd=True``: training drops them, the COCO evaluation uses them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ..errors import DataError
from .dataset import DetectionDataset, ImageAnnotation, Problem, check_boxes

logger = logging.getLogger(__name__)


class CocoDataset(DetectionDataset):
    """Images of ``images_dir`` annotated by the instances file ``annotation_file``.

    ``category_id_to_label`` and ``label_to_category_id`` map COCO category ids to labels 1..C and back.
    ``class_names``, if given, must equal the category names sorted by id (a check that the file is the right one).
    """

    def __init__(
        self,
        images_dir: str | os.PathLike[str],
        annotation_file: str | os.PathLike[str],
        class_names: Sequence[str] | None = None,
        transform: Callable[..., Any] | None = None,
        *,
        keep_difficult: bool = True,
        skip_bad: bool = True,
    ) -> None:
        self.annotation_file = str(annotation_file)
        data = _load_json(Path(annotation_file))
        categories = _without_supercategory_entries(data, _categories(data, self.annotation_file), self.annotation_file)
        names = [name for _, name in categories]
        if class_names is not None and list(class_names) != names:
            raise DataError(
                annotation_file, f"category names {names} differ from the data config's names {list(class_names)}"
            )
        self.category_id_to_label = {cat_id: i + 1 for i, (cat_id, _) in enumerate(categories)}
        self.label_to_category_id = {label: cat_id for cat_id, label in self.category_id_to_label.items()}
        annotations, problems = _read_images_and_boxes(
            data, Path(images_dir), self.annotation_file, self.category_id_to_label
        )
        super().__init__(annotations, names, problems, transform, keep_difficult=keep_difficult, skip_bad=skip_bad)
        if class_names is None:
            self.names_source = f"the categories of {self.annotation_file}"


def _load_json(path: Path) -> dict[str, Any]:
    """The parsed instances file; DataError (with the line) if missing or malformed."""
    if not path.is_file():
        raise DataError(path, "annotation file not found")
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        if "UTF-8" in exc.msg:
            raise DataError(path, f"not a UTF-8 text file: {exc.msg}") from None
        raise DataError(path, f"line {exc.lineno}: malformed JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(data, dict):
        raise DataError(path, "expected a JSON object with 'images', 'annotations' and 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(path, f"missing the list {key!r} (is this a COCO instances file?)")
    return data


def _categories(data: dict[str, Any], path: str) -> list[tuple[int, str]]:
    """``(category id, name)`` pairs sorted by id; DataError for malformed or duplicate categories."""
    pairs = []
    for k, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or not isinstance(cat.get("name"), str):
            raise DataError(path, f"category {k}: needs an integer 'id' and a string 'name', got {cat!r}")
        pairs.append((cat["id"], cat["name"]))
    ids = [cat_id for cat_id, _ in pairs]
    if len(set(ids)) != len(ids):
        raise DataError(path, "a category id is listed twice")
    if not pairs:
        raise DataError(path, "the file lists no categories")
    return sorted(pairs)


def _without_supercategory_entries(
    data: dict[str, Any], categories: list[tuple[int, str]], path: str
) -> list[tuple[int, str]]:
    """``categories`` less those that only name the supercategory of others, as Roboflow lists its project
    (category 0, itself of supercategory "none"). Decided from the category list alone, so that every split of a
    dataset keeps the same classes; each dropped one is noted, and an annotation that uses it is a problem."""
    entries = [c for c in data["categories"] if isinstance(c, dict)]
    parent_of = {c.get("id"): c.get("supercategory") for c in entries}
    dropped = [
        (cat_id, name)
        for cat_id, name in categories
        if parent_of.get(cat_id) in (None, "", "none")
        and any(c.get("supercategory") == name and c.get("id") != cat_id for c in entries)
    ]
    for cat_id, name in dropped:
        logger.info("%s: category %d (%r) left out: it is the supercategory of the others", path, cat_id, name)
    return [c for c in categories if c not in dropped]


def _read_images_and_boxes(
    data: dict[str, Any], images_dir: Path, path: str, label_of: dict[int, int]
) -> tuple[list[ImageAnnotation], list[Problem]]:
    """One :class:`ImageAnnotation` per usable image; images with any bad annotation are left out with problems."""
    problems: list[Problem] = []
    index_of: dict[int, int] = {}  # image id -> position in `images`
    images: list[tuple[int, str, int, int]] = []
    for k, img in enumerate(data["images"]):
        try:
            image_id, file_name, width, height = img["id"], img["file_name"], img["width"], img["height"]
            if not (isinstance(image_id, int) and isinstance(file_name, str) and width > 0 and height > 0):
                raise TypeError
        except (TypeError, KeyError):
            problems.append(
                Problem(path, f"image {k}", "needs an integer 'id', a 'file_name' and a positive 'width' and 'height'")
            )
            continue
        if image_id in index_of:
            problems.append(Problem(path, f"image {k}", f"image id {image_id} is listed twice"))
            continue
        index_of[image_id] = len(images)
        images.append((image_id, file_name, int(width), int(height)))

    bad = np.zeros(len(images), dtype=bool)
    rows: list[tuple[int, float, float, float, float, int, bool]] = []
    wheres: list[str] = []
    for k, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            problems.append(Problem(path, f"annotation {k}", f"expected an object, got {ann!r}"))
            continue
        where = f"annotation id {ann['id']}" if "id" in ann else f"annotation {k}"
        image_id = ann.get("image_id")
        if not isinstance(image_id, int) or image_id not in index_of:
            problems.append(Problem(path, where, f"refers to image id {image_id!r}, which 'images' does not list"))
            continue
        try:
            category_id, (x, y, w, h) = ann["category_id"], ann["bbox"]
            x, y, w, h = float(x), float(y), float(w), float(h)
        except (TypeError, KeyError, ValueError):
            problems.append(Problem(path, where, "needs a 'category_id' and a 'bbox' [x, y, w, h]"))
            bad[index_of[image_id]] = True
            continue
        if category_id not in label_of:
            problems.append(Problem(path, where, f"unknown category_id {category_id!r}"))
            bad[index_of[image_id]] = True
            continue
        rows.append((index_of[image_id], x, y, x + w, y + h, label_of[category_id], bool(ann.get("iscrowd", 0))))
        wheres.append(where)

    table = np.array([r[:5] for r in rows], dtype=np.float64).reshape(-1, 5)
    image_index = table[:, 0].astype(np.int64)
    sizes = np.array([(w, h) for _, _, w, h in images], dtype=np.float64).reshape(-1, 2)
    boxes, box_errors = check_boxes(table[:, 1:], sizes[image_index, 0], sizes[image_index, 1])
    for k, message in box_errors.items():
        problems.append(Problem(path, wheres[k], f"{message} (image {images[image_index[k]][1]})"))
        bad[image_index[k]] = True
    labels = np.array([r[5] for r in rows], dtype=np.int64)
    crowd = np.array([r[6] for r in rows], dtype=bool)

    order = np.argsort(image_index, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(image_index, minlength=len(images)))])
    annotations = []
    for i, (image_id, file_name, width, height) in enumerate(images):
        image_path = images_dir / file_name
        if not image_path.is_file():
            problems.append(Problem(str(image_path), "", f"image file not found (listed in {path})"))
            continue
        if bad[i]:
            continue
        rows_i = order[starts[i] : starts[i + 1]]
        annotations.append(ImageAnnotation(
            str(image_path), image_id, height, width, boxes[rows_i], labels[rows_i],
            np.zeros(len(rows_i), dtype=bool), crowd[rows_i], path,
        ))  # fmt: skip
    return annotations, problems
