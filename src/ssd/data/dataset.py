"""What every dataset reader produces: the Sample, the list of annotation problems and the lazy-loading dataset.

Readers (voc.py, coco.py, yolo.py) parse all annotation files when the dataset is built, so malformed input is
found at once and reported as a list of :class:`Problem`; images are decoded only when a sample is loaded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError
from ..images import read_image
from .index import AnnotationIndex
from .layouts import FORMATS, infer_format
from .unreadable import UnreadableSamples

logger = logging.getLogger(__name__)

BACKGROUND = "__background__"
# a box may stick out of its image by this many pixels (rounding in annotation tools); it is clipped
BOX_TOLERANCE_PX = 1.0
# at most this many construction problems are logged one by one; `ssd check-data` lists them all
MAX_LOGGED_PROBLEMS = 10


@dataclass
class Sample:
    """One image and its ground truth, in the image's own pixels.

    ``image: Tensor[3, H, W]`` uint8 RGB; ``boxes: Tensor[N, 4]`` float32 xyxy with continuous coordinates
    (a box over pixel columns 0..W-1 is ``[0, 0, W, H]``); ``labels: Tensor[N]`` int64 in 1..C-1;
    ``difficult`` and ``iscrowd``: ``Tensor[N]`` bool.
    """

    image: Tensor
    boxes: Tensor
    labels: Tensor
    difficult: Tensor
    iscrowd: Tensor
    image_id: int | str
    path: str


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: the file, where in it (``"line 3"``, ``"object 2"``, or empty) and what."""

    path: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.where}: {self.message}" if self.where else f"{self.path}: {self.message}"

    def to_error(self) -> DataError:
        return DataError(self.path, f"{self.where}: {self.message}" if self.where else self.message)


@dataclass
class ImageAnnotation:
    """One image's ground truth as a reader parsed it: ``boxes_xyxy: ndarray[N, 4]`` in pixels, already checked."""

    path: str
    image_id: int | str
    height: int
    width: int
    boxes_xyxy: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    iscrowd: np.ndarray
    annotation_path: str

    @classmethod
    def of_boxes(
        cls,
        path: str,
        image_id: int | str,
        size: tuple[int, int],
        boxes_xyxy: np.ndarray,
        labels: list[int],
        annotation_path: str,
    ) -> ImageAnnotation:
        """An image's checked boxes and labels, none difficult or crowd (formats that have no such flags);
        ``size`` is ``(height, width)``."""
        flags = np.zeros(len(labels), dtype=bool)
        labels_arr = np.array(labels, dtype=np.int64)
        return cls(path, image_id, size[0], size[1], boxes_xyxy, labels_arr, flags, flags.copy(), annotation_path)

    @classmethod
    def empty(cls, path: str, image_id: int | str, height: int, width: int, annotation_path: str) -> ImageAnnotation:
        """An image with no objects."""
        no_flags = np.zeros(0, dtype=bool)
        return cls(
            path,
            image_id,
            height,
            width,
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.int64),
            no_flags,
            no_flags.copy(),
            annotation_path,
        )


def check_boxes(
    boxes_xyxy: np.ndarray, width: np.ndarray | int, height: np.ndarray | int
) -> tuple[np.ndarray, dict[int, str]]:
    """Clip boxes that stick out of their image by rounding and say which ones are wrong.

    ``boxes_xyxy: ndarray[N, 4]`` pixels; ``width``/``height``: one image size or one per box ``ndarray[N]``.
    Returns the clipped boxes and ``{box index: what is wrong}`` (not finite, outside the image, x2 <= x1, y2 <= y1).
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    w = np.broadcast_to(np.asarray(width, dtype=np.float64), boxes.shape[:1])
    h = np.broadcast_to(np.asarray(height, dtype=np.float64), boxes.shape[:1])
    tol = BOX_TOLERANCE_PX
    finite = np.isfinite(boxes).all(axis=1)
    outside = (boxes[:, 0] < -tol) | (boxes[:, 1] < -tol) | (boxes[:, 2] > w + tol) | (boxes[:, 3] > h + tol)
    clipped = np.stack(
        [boxes[:, 0].clip(0, w), boxes[:, 1].clip(0, h), boxes[:, 2].clip(0, w), boxes[:, 3].clip(0, h)], axis=1
    )
    empty_x = clipped[:, 2] <= clipped[:, 0]
    empty_y = clipped[:, 3] <= clipped[:, 1]
    errors: dict[int, str] = {}
    for i in np.flatnonzero(~finite | outside | empty_x | empty_y).tolist():
        coords = "[" + ", ".join(f"{v:g}" for v in boxes[i]) + "]"
        if not finite[i]:
            errors[i] = f"box xyxy {coords} is not a finite number"
        elif outside[i]:
            errors[i] = f"box xyxy {coords} lies outside the {w[i]:g}x{h[i]:g} image"
        else:
            errors[i] = f"box xyxy {coords} has {'x2 <= x1' if empty_x[i] else 'y2 <= y1'}"
    return clipped.astype(np.float32), errors


class DetectionDataset(Dataset):
    """Images with boxes, loaded lazily; built by a reader from :class:`ImageAnnotation` records.

    ``class_names`` starts with ``"__background__"``. Images with annotation problems are left out (and the
    problems logged and kept in ``problems``), or the first problem is raised when ``skip_bad`` is False.
    At load time a sample that cannot be read (missing, corrupt or mis-sized image) makes ``__getitem__``
    log one warning and return None with ``skip_bad`` (the collate drops it; ``unreadable`` records it across
    loader workers), or raise DataError without. Per image: ``paths``, ``image_ids``, ``annotation_paths``.
    """

    def __init__(
        self,
        annotations: Sequence[ImageAnnotation] | AnnotationIndex,
        class_names: Sequence[str],
        problems: Sequence[Problem] = (),
        transform: Callable[[Sample], Any] | None = None,
        *,
        keep_difficult: bool = True,
        skip_bad: bool = True,
    ) -> None:
        if problems and not skip_bad:
            raise problems[0].to_error()
        for problem in problems[:MAX_LOGGED_PROBLEMS]:
            logger.warning("data problem: %s", problem)
        if len(problems) > MAX_LOGGED_PROBLEMS:
            logger.warning(
                "... and %d more problems (run `ssd check-data` to list them all)", len(problems) - MAX_LOGGED_PROBLEMS
            )
        self.class_names = [BACKGROUND, *class_names]
        self.names_source = "names: of the data YAML"  # where the class list came from, for check-data
        self.problems = list(problems)
        self.transform = transform
        self.keep_difficult = keep_difficult
        self.skip_bad = skip_bad
        self._pack(annotations)
        self.unreadable = UnreadableSamples(len(self.paths))

    def _pack(self, annotations: Sequence[ImageAnnotation] | AnnotationIndex) -> None:
        """Hold the ground truth as an :class:`AnnotationIndex` (flat arrays, cheap to share with loader workers)."""
        if not isinstance(annotations, AnnotationIndex):
            ids = _unique_ids([a.image_id for a in annotations], [a.path for a in annotations])
            annotations = AnnotationIndex.from_records(annotations, ids)
        self.index = annotations
        self.paths, self.image_ids = annotations.paths, annotations.image_ids
        self.annotation_paths = annotations.annotation_paths
        self._sizes, self._starts = annotations.sizes, annotations.starts
        self._boxes, self._labels = annotations.boxes, annotations.labels
        self._difficult, self._iscrowd = annotations.difficult, annotations.iscrowd
        if not self.keep_difficult:
            keep = ~annotations.difficult
            image_of_row = np.repeat(np.arange(len(self._sizes)), np.diff(annotations.starts))
            counts = np.bincount(image_of_row[keep], minlength=len(self._sizes))
            self._starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
            self._boxes, self._labels = self._boxes[keep], self._labels[keep]
            self._difficult, self._iscrowd = self._difficult[keep], self._iscrowd[keep]

    @property
    def num_classes(self) -> int:
        """Number of classes including the background."""
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.paths)

    def image_size(self, index: int) -> tuple[int, int]:
        """``(height, width)`` of image ``index`` from its annotation (no decoding)."""
        height, width = self._sizes[index]
        return int(height), int(width)

    def targets(self, index: int) -> dict[str, Tensor]:
        """Ground truth of image ``index``, without decoding it: ``boxes`` [N, 4] xyxy px, ``labels``, ``difficult``,
        ``iscrowd`` [N]."""
        lo, hi = self._starts[index], self._starts[index + 1]
        return {
            "boxes": torch.from_numpy(self._boxes[lo:hi].copy()),
            "labels": torch.from_numpy(self._labels[lo:hi].copy()),
            "difficult": torch.from_numpy(self._difficult[lo:hi].copy()),
            "iscrowd": torch.from_numpy(self._iscrowd[lo:hi].copy()),
        }

    def box_table(self) -> dict[str, Tensor]:
        """Every box at once, without decoding images, for statistics and evaluation.

        ``boxes`` [M, 4] xyxy px, ``labels``, ``difficult``, ``iscrowd`` [M], ``image_index`` [M] (the image each
        box belongs to) and ``image_size`` [M, 2] (its height, width).
        """
        image_index = np.repeat(np.arange(len(self)), np.diff(self._starts))
        return {
            "boxes": torch.from_numpy(self._boxes.copy()),
            "labels": torch.from_numpy(self._labels.copy()),
            "difficult": torch.from_numpy(self._difficult.copy()),
            "iscrowd": torch.from_numpy(self._iscrowd.copy()),
            "image_index": torch.from_numpy(image_index),
            "image_size": torch.from_numpy(self._sizes[image_index]),
        }

    def load_sample(self, index: int) -> Sample:
        """Decode image ``index`` and pair it with its ground truth; DataError if the image is unusable."""
        path = self.paths[index]
        image = read_image(path)
        height, width = self.image_size(index)
        if tuple(image.shape[-2:]) != (height, width):
            swapped = tuple(image.shape[-2:]) == (width, height)
            hint = " (width and height swapped: an EXIF orientation that the labelling tool did not apply?)"
            raise DataError(
                path,
                f"image is {image.shape[-1]}x{image.shape[-2]} pixels as shown but {self.annotation_paths[index]}"
                f" says {width}x{height}: its boxes would be wrong" + (hint if swapped else ""),
            )
        t = self.targets(index)
        return Sample(image, t["boxes"], t["labels"], t["difficult"], t["iscrowd"], self.image_ids[index], path)

    def __getitem__(self, index: int) -> Any:
        try:
            sample = self.load_sample(index)
        except DataError as exc:
            if not self.skip_bad:
                raise
            self.unreadable.mark(index, f"skipped an unreadable image: {exc}")
            return None
        return self.transform(sample) if self.transform is not None else sample


def _unique_ids(image_ids: list[int | str], paths: list[str]) -> list[int | str]:
    """The image ids, a repeated one (the same file name in two folders of a split) replaced by its path below the
    folder the repeats share, so that evaluation and results files tell the images apart."""
    counts: dict[int | str, int] = {}
    for image_id in image_ids:
        counts[image_id] = counts.get(image_id, 0) + 1
    repeated = [p for i, p in zip(image_ids, paths) if counts[i] > 1]
    if not repeated:
        return image_ids
    common = Path(os.path.commonpath([os.path.abspath(p) for p in repeated]))
    return [
        Path(os.path.abspath(p)).relative_to(common).with_suffix("").as_posix() if counts[i] > 1 else i
        for i, p in zip(image_ids, paths)
    ]


# ----------------------------------------------------------------------------------------------------------------
# The data YAML


@dataclass
class DataConfig:
    """A data YAML file: format, root folder, class names (without background) and the split specifications.

    A split is written as its reader expects: voc ``"VOC2007/trainval"`` or a list of them; coco
    ``{images: train2017, annotations: annotations/instances_train2017.json}``; yolo ``"images/train"`` or a list.
    """

    format: str
    path: Path
    names: list[str] | None = None
    train: Any = None
    val: Any = None
    test: Any = None
    source: str = "<data config>"
    format_inferred: bool = False  # the YAML had no format: it was told from the files

    @property
    def splits(self) -> dict[str, Any]:
        """The splits the file defines, by name."""
        return {name: spec for name in ("train", "val", "test") if (spec := getattr(self, name)) is not None}

    def split(self, name: str) -> Any:
        """The specification of split ``name``; DataError naming the YAML file if it does not define it."""
        if name not in ("train", "val", "test"):
            raise DataError(self.source, f"unknown split {name!r}; choose train, val or test")
        if name not in self.splits:
            defined = ", ".join(self.splits) or "none"
            raise DataError(self.source, f"defines no {name!r} split (defined: {defined})")
        return self.splits[name]


_DATA_KEYS = ("format", "path", "names", "nc", "train", "val", "test")
# keys that Ultralytics documents for its data files, and Roboflow's export block: read by those tools, not here
FOREIGN_KEYS = ("download", "roboflow", "kpt_shape", "flip_idx", "channels")


def load_data_config(path: str | os.PathLike[str]) -> DataConfig:
    """Read a data YAML (Ultralytics' style; ``format`` optional): a relative ``path`` is resolved against its
    folder, the format told from the files when not given, other tools' keys noted and ignored."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "data YAML file not found")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DataError(path, f"malformed YAML: {exc}") from None
    if not isinstance(values, dict):
        raise DataError(path, "expected a mapping of keys (format, path, names, train, val, test)")
    unknown = sorted(str(k) for k in values if k not in _DATA_KEYS + FOREIGN_KEYS)
    if unknown:
        raise DataError(path, f"unknown key(s) {', '.join(unknown)}; known keys: {', '.join(_DATA_KEYS)}")
    if foreign := [k for k in FOREIGN_KEYS if k in values]:
        logger.info("%s: ignoring %s (for other tools)", path, ", ".join(foreign))
    fmt = values.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise DataError(path, f"'format' must be one of {', '.join(FORMATS)}, got {fmt!r}")
    root = (path.parent / str(values.get("path") or ".")).resolve()
    if not root.is_dir():
        raise DataError(path, f"dataset root folder {root} not found ('path' is resolved against the YAML's folder)")
    names = _parse_names(values.get("names"), path)
    if values.get("nc") is not None and (names is None or values["nc"] != len(names)):
        raise DataError(path, f"'nc' is {values['nc']} but 'names' lists {0 if names is None else len(names)} classes")
    splits = {k: values[k] for k in ("train", "val", "test") if values.get(k) is not None}
    if not splits:
        raise DataError(path, "defines no split: give at least one of train, val, test")
    inferred = fmt is None
    fmt = fmt or infer_format(root, splits, str(path))
    if fmt == "yolo" and names is None:
        raise DataError(path, "a yolo dataset needs 'names' (its label files hold class numbers only)")
    config = DataConfig(fmt, root, names, values.get("train"), values.get("val"), values.get("test"), str(path))
    config.format_inferred = inferred
    return config


def _parse_names(names: Any, path: Path) -> list[str] | None:
    """Class names from a list or an Ultralytics ``{0: name, 1: name}`` dict; DataError if malformed."""
    if names is None:
        return None
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise DataError(path, f"'names' as a dict needs the keys 0..{len(names) - 1}, got {sorted(names)}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise DataError(path, "'names' must be a non-empty list of class names (or an {id: name} mapping)")
    if len(set(names)) != len(names):
        raise DataError(path, "'names' lists a class twice")
    if BACKGROUND in names:
        raise DataError(path, f"'names' lists the classes without {BACKGROUND!r}; the background is added for you")
    return list(names)
