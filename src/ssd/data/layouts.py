"""Which reader a dataset needs when its data YAML has no ``format:``, told from the files each split points to;
and split paths resolved as Ultralytics resolves them.

A split is recognised as: ``voc`` (a VOCdevkit ``<folder>/ImageSets/Main/<name>.txt``, or a folder of ``.xml``
files as LabelImg, CVAT's Pascal VOC export and Label Studio write them), ``coco`` (an instances ``.json``, a
``{images, annotations}`` mapping, or a folder holding ``_annotations.coco.json`` as Roboflow exports it),
``yolo`` (images under an ``images`` folder with a ``labels`` twin), ``cvat`` (a CVAT for images 1.1 ``.xml``
file) or ``labelme`` (a folder of LabelMe ``.json`` files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError

FORMATS = ("voc", "coco", "yolo", "cvat", "labelme")
ROBOFLOW_COCO_FILE = "_annotations.coco.json"
LOOKED_FOR = (
    "a VOC ImageSets/Main/<name>.txt or a folder of .xml files, a COCO instances .json (or a folder holding "
    f"{ROBOFLOW_COCO_FILE}), YOLO images/ with a labels/ twin folder, a CVAT for images .xml file, or a folder "
    "of LabelMe .json files"
)
_PEEK_BYTES = 4096
PEEKED_FILES = 3  # files of a folder looked into to tell its format


def resolve_split_path(root: Path, part: str) -> Path:
    """``root / part``; when that does not exist and ``part`` starts with ``../``, ``root / part[3:]`` if that does
    (Ultralytics' rule, which Roboflow's ``../train/images`` relies on)."""
    path = root / part
    if not path.exists() and part.startswith("../") and (root / part[3:]).exists():
        return root / part[3:]
    return path


def infer_format(root: Path, splits: dict[str, Any], source: str) -> str:
    """The one format all ``splits`` are recognised as; DataError naming the split that is unrecognised or
    ambiguous, or the splits that disagree."""
    found: dict[str, str] = {}
    for name, spec in splits.items():
        kinds = split_formats(root, spec)
        if not kinds and not _exists(root, spec) and len(splits) > 1:
            continue  # a split not on disk (an export without a test set) is reported when it is read
        if not kinds:
            raise DataError(source, f"split {name!r}: cannot tell its format; looked for {LOOKED_FOR}")
        if len(kinds) > 1:
            raise DataError(source, f"split {name!r} looks like {' and '.join(sorted(kinds))}: set format:")
        found[name] = kinds.pop()
    if len(set(found.values())) > 1:
        described = ", ".join(f"{name} is {kind}" for name, kind in found.items())
        raise DataError(source, f"the splits are of different formats ({described}): set format:")
    return next(iter(found.values()))


def _exists(root: Path, spec: Any) -> bool:
    parts = spec if isinstance(spec, list) else [spec]
    return any(isinstance(p, str) and resolve_split_path(root, p).exists() for p in parts) or isinstance(spec, dict)


def split_formats(root: Path, spec: Any) -> set[str]:
    """Every format that the split ``spec`` (a path, a list of paths, or a COCO-style mapping) could be read as."""
    if isinstance(spec, dict):
        return {"cvat" if str(spec.get("annotations", "")).lower().endswith(".xml") else "coco"}
    parts = spec if isinstance(spec, list) else [spec]
    kinds: set[str] = set()
    for part in parts:
        if isinstance(part, str):
            kinds |= _path_formats(root, part)
    return kinds


def _path_formats(root: Path, part: str) -> set[str]:
    path = resolve_split_path(root, part)
    folder, _, name = part.rpartition("/")
    if (root / folder / "ImageSets" / "Main" / f"{name}.txt").is_file():
        return {"voc"}
    if path.is_file():
        return _file_formats(path)
    if not path.is_dir():
        return set()
    kinds = set()
    jsons = sorted(p for p in path.glob("*.json") if p.name != ROBOFLOW_COCO_FILE)[:PEEKED_FILES]
    heads = [_peek(p) for p in jsons]
    if (path / ROBOFLOW_COCO_FILE).is_file() or (len(jsons) == 1 and _looks_like_coco(heads[0])):
        kinds.add("coco")
    if any('"shapes"' in head for head in heads):
        kinds.add("labelme")
    xmls = sorted(path.glob("*.xml"))[:PEEKED_FILES]
    if any("<annotations" in _peek(p) for p in xmls):
        kinds.add("cvat")
    elif xmls:
        kinds.add("voc")
    if "images" in path.parts and yolo_labels_folder(path).is_dir():
        kinds.add("yolo")
    return kinds


def _looks_like_coco(head: str) -> bool:
    return '"shapes"' not in head and any(f'"{key}"' in head for key in ("images", "annotations", "categories"))


def _file_formats(path: Path) -> set[str]:
    if path.suffix.lower() == ".json":  # one JSON for a split: an instances file
        return {"coco"}
    if path.suffix.lower() == ".xml" and "<annotations" in _peek(path):
        return {"cvat"}
    return set()


def yolo_labels_folder(images_folder: Path) -> Path:
    """The ``labels`` twin of an image folder: its last ``images`` component replaced by ``labels``."""
    parts = list(images_folder.parts)
    k = len(parts) - 1 - parts[::-1].index("images")
    return Path(*parts[:k], "labels", *parts[k + 1 :])


def split_path_or_mapping(root: Path, spec: Any, source: str, split: str, fmt: str) -> Path | tuple[Path, Path]:
    """A split given as ``{images, annotations}`` (``(image folder, annotation file)``) or as one path (resolved);
    DataError naming the split for anything else."""
    if isinstance(spec, dict):
        if sorted(spec) != ["annotations", "images"]:
            raise DataError(source, f"split {split!r}: a {fmt} split is {{images: <folder>, annotations: <file>}}")
        return root / str(spec["images"]), root / str(spec["annotations"])
    if not isinstance(spec, str):
        raise DataError(source, f"split {split!r}: expected a path or {{images: <folder>, annotations: <file>}}")
    return resolve_split_path(root, spec)


def coco_split_files(root: Path, spec: Any, source: str, split: str) -> tuple[Path, Path]:
    """``(image folder, instances JSON)`` of a COCO split: ``{images, annotations}``, an instances file (images
    beside it), or a folder holding ``_annotations.coco.json`` (Roboflow) or one instances file."""
    path = split_path_or_mapping(root, spec, source, split, "coco")
    if isinstance(path, tuple):
        return path
    if path.is_file():
        return path.parent, path
    if (path / ROBOFLOW_COCO_FILE).is_file():
        return path, path / ROBOFLOW_COCO_FILE
    candidates = sorted(path.glob("*.json")) if path.is_dir() else []
    if len(candidates) != 1:
        found = "no" if not candidates else f"{len(candidates)}"
        raise DataError(path, f"split {split!r}: expected one COCO instances .json in this folder, found {found}")
    return path, candidates[0]


def _peek(path: Path) -> str:
    """The first few kilobytes of a text file (enough to see its keys or root element)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(_PEEK_BYTES)
    except OSError:
        return ""
