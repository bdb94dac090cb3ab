"""Pascal VOC: the VOCdevkit layout, folders of VOC XML files as labelling tools write them, read and written.

The devkit's pixel coordinates are 1-based and inclusive; they become the internal continuous convention once,
here: ``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax`` (and back in :func:`write_voc_annotation`). The XML
files of a labelling tool's folder hold continuous coordinates and are read as they are.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np

from ..errors import DataError
from ..images import IMAGE_SUFFIXES, read_image_size
from .dataset import DetectionDataset, ImageAnnotation, Problem, check_boxes
from .layouts import resolve_split_path

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


class VOCDataset(DetectionDataset):
    """Splits such as ``["VOC2007/trainval", "VOC2012/trainval"]`` of a VOCdevkit ``root``, combined (VOC07+12), or
    folders of XML files as LabelImg, CVAT's Pascal VOC export and Label Studio write them.

    A split ``"<folder>/<name>"`` lists image ids in ``<root>/<folder>/ImageSets/Main/<name>.txt``; each id has
    ``Annotations/<id>.xml`` and an image ``JPEGImages/<id>.jpg`` (or .jpeg/.png). A split that is a folder of
    ``.xml`` files has each image named by its XML's ``<filename>``, beside the XML or in a sibling ``images`` or
    ``JPEGImages`` folder. ``class_names`` defaults to the 20 VOC classes; an object of another class is an error.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        splits: str | Sequence[str],
        class_names: Sequence[str] | None = None,
        transform: Callable[..., Any] | None = None,
        *,
        keep_difficult: bool = True,
        skip_bad: bool = True,
    ) -> None:
        names = list(class_names) if class_names is not None else list(VOC_CLASSES)
        label_of = {name: i + 1 for i, name in enumerate(names)}
        annotations: list[ImageAnnotation] = []
        problems: list[Problem] = []
        for split in [splits] if isinstance(splits, str) else splits:
            items, missing = split_items(Path(root), split)
            problems += missing
            one_based = not _is_xml_folder(resolve_split_path(Path(root), split))
            for image_id, xml_path, image_path in items:
                annotation, found = parse_voc_xml(xml_path, image_path, image_id, label_of, one_based)
                problems += found
                if annotation is not None:
                    annotations.append(annotation)
        super().__init__(annotations, names, problems, transform, keep_difficult=keep_difficult, skip_bad=skip_bad)
        if class_names is None:
            self.names_source = "the 20 VOC classes (the data YAML gives no names)"


def split_items(root: Path, split: str) -> tuple[list[tuple[str, Path, Path]], list[Problem]]:
    """``(image id, XML path, image path)`` of each image of a split, and the images that could not be found."""
    folder = resolve_split_path(root, split)
    if _is_xml_folder(folder):
        return _folder_items(folder)
    folder, image_ids = read_split_file(root, split)
    images = _image_files(folder / "JPEGImages")
    items, problems = [], []
    for image_id in image_ids:
        image_name = next((image_id + s for s in IMAGE_SUFFIXES if image_id + s in images), None)
        if image_name is None:
            problems.append(Problem(str(folder / "JPEGImages" / f"{image_id}.jpg"), "", "image file not found"))
            continue
        items.append((image_id, folder / "Annotations" / f"{image_id}.xml", folder / "JPEGImages" / image_name))
    return items, problems


def _is_xml_folder(path: Path) -> bool:
    return path.is_dir() and any(path.glob("*.xml"))


def _folder_items(folder: Path) -> tuple[list[tuple[str, Path, Path]], list[Problem]]:
    """The XML files of a LabelImg-style folder with the images their ``<filename>`` names (else an image of the
    XML's own name), beside the XML or in a sibling ``images``/``JPEGImages`` folder."""
    items, problems = [], []
    for xml_path in sorted(folder.glob("*.xml")):
        try:
            filename = (ET.parse(xml_path).getroot().findtext("filename") or "").strip()
        except ET.ParseError:
            filename = ""  # parse_voc_xml reports the malformed XML
        names = ([PureWindowsPath(filename).name] if filename else []) + [xml_path.stem + s for s in IMAGE_SUFFIXES]
        places = [xml_path.parent, xml_path.parent.parent / "images", xml_path.parent.parent / "JPEGImages"]
        image_path = next((p / n for n in names for p in places if (p / n).is_file()), None)
        if image_path is None:
            wanted = f"the image {filename!r}" if filename else "an image of the same name"
            problems.append(Problem(str(xml_path), "<filename>", f"{wanted} is neither beside this XML nor in a "
                                    "sibling images/ or JPEGImages/ folder"))  # fmt: skip
            continue
        items.append((xml_path.stem, xml_path, image_path))
    return items, problems


def read_split_file(root: Path, split: str) -> tuple[Path, list[str]]:
    """The year folder and image ids of split ``"<folder>/<name>"`` (or ``"<name>"`` for ``root`` itself)."""
    folder = root / split.rsplit("/", 1)[0] if "/" in split else root
    path = folder / "ImageSets" / "Main" / f"{split.rsplit('/', 1)[-1]}.txt"
    if not path.is_file():
        raise DataError(path, f"split file not found (split {split!r} of VOC root {root}), and {root / split} is not "
                        "a folder of .xml files")  # fmt: skip
    image_ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not image_ids:
        raise DataError(path, "split file is empty: it lists no image ids")
    return folder, image_ids


def _image_files(folder: Path) -> set[str]:
    """File names in ``folder`` (one directory listing instead of a lookup per image)."""
    if not folder.is_dir():
        raise DataError(folder, "image folder not found")
    return set(os.listdir(folder))


def voc_names(root: Path, splits: Sequence[str]) -> list[str] | None:
    """The sorted class names that the XML files of ``splits`` use, when some split is a folder of XML files
    (which comes without a class list); None for VOCdevkit splits (the 20 VOC classes)."""
    if not any(_is_xml_folder(resolve_split_path(root, s)) for s in splits):
        return None
    found: set[str] = set()
    for split in splits:
        items, _ = split_items(root, split)
        for _, xml_path, _ in items:
            try:
                found |= {(o.findtext("name") or "").strip() for o in ET.parse(xml_path).getroot().iter("object")}
            except (ET.ParseError, OSError):
                continue  # reported when the split is read
    found.discard("")
    if not found:
        raise DataError(root, f"the XML files of {', '.join(splits)} name no object class")
    return sorted(found)


def parse_voc_xml(
    xml_path: Path, image_path: Path, image_id: str, label_of: dict[str, int], one_based: bool = True
) -> tuple[ImageAnnotation | None, list[Problem]]:
    """One image's annotation from its VOC XML file, or None and the problems that make it unusable.

    ``one_based``: the devkit's 1-based inclusive pixels; False for the continuous coordinates that labelling
    tools write (CVAT's Datumaro writes ``xmin = x``, LabelImg its canvas coordinates)."""
    path = str(xml_path)
    try:
        root = ET.parse(xml_path).getroot()
    except FileNotFoundError:
        return None, [Problem(path, "", "annotation file not found")]
    except ET.ParseError as exc:
        return None, [Problem(path, f"line {exc.position[0]}", f"malformed XML: {str(exc).split(':')[0]}")]

    problems: list[Problem] = []
    try:
        width, height = int(_number(root, "size/width")), int(_number(root, "size/height"))
    except ValueError:
        width = height = 0
    if width <= 0 or height <= 0:  # some tools omit the size: read it from the image header
        try:
            height, width = read_image_size(image_path)
        except DataError as exc:
            return None, [Problem(exc.path, "", exc.message)]

    boxes, labels, difficult = [], [], []
    for k, obj in enumerate(root.findall("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        where = f"object {k} ({name})" if name else f"object {k}"
        if name not in label_of:
            known = ", ".join(list(label_of)[:25]) + (", ..." if len(label_of) > 25 else "")
            problems.append(Problem(path, where, f"unknown class {name!r} (classes: {known})"))
            continue
        try:
            xmin, ymin, xmax, ymax = (_number(obj, f"bndbox/{tag}") for tag in ("xmin", "ymin", "xmax", "ymax"))
            flag = _number(obj, "difficult", default="0")
        except ValueError as exc:
            problems.append(Problem(path, where, str(exc)))
            continue
        if flag not in (0.0, 1.0):
            problems.append(Problem(path, where, f"<difficult> must be 0 or 1, got {flag:g}"))
            continue
        shift = 1.0 if one_based else 0.0
        boxes.append((xmin - shift, ymin - shift, xmax, ymax))
        labels.append(label_of[name])
        difficult.append(flag == 1.0)

    boxes_xyxy, box_errors = check_boxes(np.array(boxes, dtype=np.float64).reshape(-1, 4), width, height)
    problems += [Problem(path, f"object {k + 1}", message) for k, message in box_errors.items()]
    if problems:
        return None, problems
    labels_arr = np.array(labels, dtype=np.int64)
    return ImageAnnotation(
        str(image_path), image_id, height, width, boxes_xyxy, labels_arr,
        np.array(difficult, dtype=bool), np.zeros(len(labels_arr), dtype=bool), path,
    ), []  # fmt: skip


def _number(element: ET.Element, tag: str, default: str | None = None) -> float:
    """The number in ``element``'s child ``tag`` (a path such as ``bndbox/xmin``); ValueError saying what is wrong."""
    text = element.findtext(tag, default)
    if text is None:
        raise ValueError(f"missing <{tag}>")
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"<{tag}> is not a number: {text.strip()!r}") from None


def write_voc_annotation(
    path: str | os.PathLike[str],
    filename: str,
    height: int,
    width: int,
    boxes_xyxy: Any,
    names: Sequence[str],
    difficult: Sequence[bool] | None = None,
    one_based: bool = True,
) -> None:
    """Write a VOC XML file for one image; ``boxes_xyxy: [N, 4]`` internal pixels, stored 1-based inclusive as the
    devkit does (or, without ``one_based``, continuous as labelling tools do)."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    flags = [False] * len(boxes) if difficult is None else list(difficult)
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(int(value))
    for (x1, y1, x2, y2), name, flag in zip(boxes, names, flags, strict=True):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "difficult").text = "1" if flag else "0"
        bndbox = ET.SubElement(obj, "bndbox")
        shift = 1 if one_based else 0
        for tag, value in (("xmin", x1 + shift), ("ymin", y1 + shift), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bndbox, tag).text = _format_number(value)
    ET.indent(root)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="unicode")


def _format_number(value: float) -> str:
    """Integers without a decimal point (as the devkit writes them), other values exactly (repr round-trips)."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)
