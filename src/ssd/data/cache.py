"""The annotation index cache: a split parsed once is saved as an index file in ``.ssd_index/`` beside its
annotations (or under ``$SSD_CACHE_DIR`` where that folder is not writable) and memory-mapped by later builds.

The file is named after the split's specification (format, paths, class names); it is used only while the
fingerprint of the split's annotation files (content, size, modification time) and of its image files (size,
modification time) is the one it was built from. ``SSD_INDEX_CACHE=off`` turns the cache off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .dataset import DetectionDataset, Problem
from .index import AnnotationIndex, fingerprint, read_index_file, write_index_file

logger = logging.getLogger(__name__)

ANNOTATION_SUFFIXES = (".xml", ".json", ".txt")
CACHE_FOLDER = ".ssd_index"


def cache_enabled() -> bool:
    return os.environ.get("SSD_INDEX_CACHE", "on").lower() not in ("off", "0", "false", "no")


def split_sources(annotation_files: Sequence[Path], folders: Sequence[Path]) -> str:
    """The fingerprint of ``annotation_files`` and of every file under ``folders`` (annotations by content,
    others by size and modification time)."""
    files, listed = [Path(p) for p in annotation_files], []
    for folder in folders:
        for path in sorted(_walk(Path(folder))):
            (files if path.suffix.lower() in ANNOTATION_SUFFIXES else listed).append(path)
    return fingerprint(files, listed)


def _walk(folder: Path) -> Iterator[Path]:
    for parent, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if d != CACHE_FOLDER]
        yield from (Path(parent) / n for n in names)


def cached_dataset(
    anchor: Path,
    spec: dict[str, Any],
    sources: Callable[[], str],
    read: Callable[[], DetectionDataset],
    options: dict[str, Any],
) -> DetectionDataset:
    """The dataset of ``spec`` from its index file in ``anchor``'s cache folder, or ``read()`` and saved there.

    ``options`` are DetectionDataset's (transform, keep_difficult, skip_bad); the reader runs with its defaults.
    """
    name = hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20] + ".idx"
    digest = sources()
    for folder in _cache_folders(anchor):
        loaded = read_index_file(folder / name, digest)
        if loaded is not None:
            index, meta = loaded
            logger.debug("annotation index %s reused", folder / name)
            return _dataset(index, meta, options)
    with _quiet_problems():
        parsed = read()
    index, meta = parsed.index, _meta_of(parsed)
    for folder in _cache_folders(anchor):
        try:
            write_index_file(folder / name, index, digest, meta)
            break
        except OSError as exc:
            logger.debug("cannot write the annotation index in %s: %s", folder, exc)
    return _dataset(index, meta, options)


def _cache_folders(anchor: Path) -> list[Path]:
    """Beside the annotations first, then the user's cache folder."""
    user = Path(os.environ.get("SSD_CACHE_DIR") or Path(tempfile.gettempdir()) / f"ssd-index-{os.getuid()}")
    return [Path(anchor) / CACHE_FOLDER, user]


def _meta_of(dataset: DetectionDataset) -> dict[str, Any]:
    """What a reader knows beside the index: names, where they came from, problems, COCO's category ids."""
    meta: dict[str, Any] = {
        "class_names": dataset.class_names[1:],
        "names_source": dataset.names_source,
        "problems": [[p.path, p.where, p.message] for p in dataset.problems],
    }
    if hasattr(dataset, "label_to_category_id"):
        meta["label_to_category_id"] = [[k, v] for k, v in dataset.label_to_category_id.items()]
    if hasattr(dataset, "annotation_file"):
        meta["annotation_file"] = dataset.annotation_file
    return meta


def _dataset(index: AnnotationIndex, meta: dict[str, Any], options: dict[str, Any]) -> DetectionDataset:
    problems = [Problem(*p) for p in meta["problems"]]
    dataset = DetectionDataset(index, meta["class_names"], problems, **options)
    dataset.names_source = meta["names_source"]
    if "label_to_category_id" in meta:
        dataset.label_to_category_id = {int(k): int(v) for k, v in meta["label_to_category_id"]}
        dataset.category_id_to_label = {v: k for k, v in dataset.label_to_category_id.items()}
    if "annotation_file" in meta:
        dataset.annotation_file = meta["annotation_file"]
    return dataset


@contextlib.contextmanager
def _quiet_problems() -> Iterator[None]:
    """The reader's own report of problems is held back: the dataset built from the index reports them once."""
    log = logging.getLogger("ssd.data.dataset")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
