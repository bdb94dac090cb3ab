"""COCO box AP with pycocotools' COCOeval or faster-coco-eval's, on COCO objects built in memory (no files, no prints).

Backends: ``"faster-coco-eval"`` (its C++ ``COCOeval_faster``: pycocotools' numbers in a fraction of the time;
``pip install ssd-detector[fast-eval]``) and ``"pycocotools"``; ``"auto"`` takes the first when it is installed.
pycocotools' conventions apply whichever runs: boxes are [x, y, w, h] with no +1, IoU against a crowd region is the
intersection over the detection's area, crowd ground truths and detections matched to them are ignored,
and the small/medium/large ranges (32² and 96² pixels) test the ground truth's ``area``: the target's
``area`` when given (COCO's segment area, to reproduce official numbers), else the box area w * h.
Summary values that COCOeval leaves undefined (e.g. AP small without small objects) are -1.0, as it prints.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_convert

from ..gc_pause import gc_paused
from .voc import DetectionList, check_inputs

# COCOeval.stats order, under torchmetrics' names
STAT_NAMES = (
    "map", "map50", "map75", "map_small", "map_medium", "map_large",
    "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large",
)  # fmt: skip
BACKENDS = ("faster-coco-eval", "pycocotools")  # "auto" picks the first one installed


def _faster_coco_eval_installed() -> bool:
    try:
        import faster_coco_eval.core  # noqa: F401  (optional: the fast-eval extra)
    except ImportError:
        return False
    return True


def coco_backend(backend: str = "auto") -> str:
    """The COCOeval implementation that ``backend`` selects: ``"auto"`` gives faster-coco-eval when installed.

    ValueError for a name not in ``("auto", *BACKENDS)`` and for faster-coco-eval asked for but not installed.
    """
    if backend not in ("auto", *BACKENDS):
        raise ValueError(f"unknown COCO backend {backend!r}: choose auto, {', '.join(BACKENDS)}")
    if backend == "pycocotools":
        return backend
    if _faster_coco_eval_installed():
        return "faster-coco-eval"
    if backend == "auto":
        return "pycocotools"
    raise ValueError(
        "COCO backend 'faster-coco-eval' is not installed (pip install ssd-detector[fast-eval]); "
        "choose auto or pycocotools"
    )


def _category_ids(labels: list[int], label_to_category_id: Mapping[int, int] | None) -> list[int]:
    """Dataset category ids of contiguous ``labels`` (identity without a mapping)."""
    if label_to_category_id is None:
        return labels
    unknown = sorted(set(labels) - set(label_to_category_id))
    if unknown:
        raise ValueError(f"labels {unknown} have no entry in label_to_category_id")
    return [label_to_category_id[label] for label in labels]


def _flat(dicts: DetectionList, key: str, default: float | bool | None = None) -> list:
    """``key`` of all ``dicts`` in one list of Python numbers (floats via float64); ``default`` where it is absent."""
    dtype = torch.float64 if isinstance(default, float) else None  # an integer column stays exact beside NaN
    values = [d[key] if key in d else torch.full((len(d["boxes"]),), default, dtype=dtype) for d in dicts]
    flat = torch.cat([v.detach().cpu().reshape(-1) for v in values]) if values else torch.zeros(0)
    return (flat.double() if flat.is_floating_point() else flat).numpy().tolist()


def _boxes_xywh(dicts: DetectionList) -> list[list[float]]:
    """The ``boxes`` (xyxy pixels) of all ``dicts`` as one list of [x, y, w, h], computed in float64."""
    boxes = [d["boxes"].detach().cpu().double().reshape(-1, 4) for d in dicts]
    return box_convert(torch.cat(boxes) if boxes else torch.zeros(0, 4), "xyxy", "xywh").numpy().tolist()


def _owners(dicts: DetectionList, image_ids: Sequence[Any]) -> list[Any]:
    """The image id of each box of ``dicts``, ``dicts[i]`` being image ``image_ids[i]``."""
    return [image_id for d, image_id in zip(dicts, image_ids) for _ in range(len(d["boxes"]))]


def to_coco_results(
    detections: DetectionList,
    image_ids: Sequence[int],
    label_to_category_id: Mapping[int, int] | None = None,
) -> list[dict[str, Any]]:
    """Detections in COCO's results format: ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``.

    ``detections[i]`` (``boxes`` [N, 4] xyxy pixels, ``scores``, ``labels``) belongs to ``image_ids[i]``;
    ``label_to_category_id`` turns contiguous labels back into the dataset's ids (COCO's 1..90 with gaps).
    """
    if len(detections) != len(image_ids):
        raise ValueError(f"{len(detections)} detection dicts for {len(image_ids)} image ids")
    columns = _result_columns(detections, image_ids, label_to_category_id)
    return [{"image_id": i, "category_id": c, "bbox": b, "score": s} for i, c, b, s in columns]


def _result_columns(
    detections: DetectionList, image_ids: Sequence[Any], label_to_category_id: Mapping[int, int] | None
) -> Iterator[tuple[Any, int, list[float], float]]:
    """(image id, category id, [x, y, w, h], score) of each detection, in order."""
    categories = _category_ids(_flat(detections, "labels"), label_to_category_id)
    return zip(_owners(detections, image_ids), categories, _boxes_xywh(detections), _flat(detections, "scores"))


def _loaded_results(detections: DetectionList, label_to_category_id: Mapping[int, int]) -> list[dict[str, Any]]:
    """The detections as ``COCO.loadRes`` turns box results into annotations (image ids = positions): the dicts of
    :func:`to_coco_results` with an ``id`` from 1, the box ``area`` and ``iscrowd`` 0, each built once."""
    columns = _result_columns(detections, range(len(detections)), label_to_category_id)
    return [
        {"image_id": i, "category_id": c, "bbox": b, "score": s, "id": n, "area": b[2] * b[3], "iscrowd": 0}
        for n, (i, c, b, s) in enumerate(columns, start=1)
    ]


def _ground_truth_annotations(
    targets: DetectionList, label_to_category_id: Mapping[int, int] | None
) -> list[dict[str, Any]]:
    """COCO annotation dicts of ``targets`` (image ids = positions), ids from 1 as COCOeval needs."""
    columns = zip(
        _owners(targets, range(len(targets))),
        _category_ids(_flat(targets, "labels"), label_to_category_id),
        _boxes_xywh(targets),
        _flat(targets, "area", math.nan),  # NaN: no area given, the box area w * h
        _flat(targets, "iscrowd", False),
    )
    return [
        {
            "id": n,
            "image_id": i,
            "category_id": c,
            "bbox": b,
            "area": b[2] * b[3] if math.isnan(a) else a,
            "iscrowd": int(crowd),
        }
        for n, (i, c, b, a, crowd) in enumerate(columns, start=1)
    ]


def _pycocotools_coco(dataset: dict[str, list[dict]]) -> COCO:
    """A pycocotools COCO object of an in-memory dataset, its index built quietly."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _quiet(*args: Any, **kwargs: Any) -> None:
    """faster-coco-eval's print_function: its progress messages dropped."""


def _run_cocoeval(backend: str, gt: dict[str, list[dict]], dt: dict[str, list[dict]]) -> tuple[Any, Any, list]:
    """``backend``'s COCOeval of ``dt`` against ``gt``, quietly: (stats [12], precision [T, R, K, A, M], catIds)."""
    if backend == "pycocotools":
        coco_eval = COCOeval(_pycocotools_coco(gt), _pycocotools_coco(dt), iouType="bbox")
    else:
        from faster_coco_eval import COCO as FasterCOCO
        from faster_coco_eval import COCOeval_faster

        gt_coco, dt_coco = FasterCOCO(gt, print_function=_quiet), FasterCOCO(dt, print_function=_quiet)
        coco_eval = COCOeval_faster(gt_coco, dt_coco, iouType="bbox", print_function=_quiet)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    # the 12 stats of pycocotools (faster-coco-eval's all_stats add AR@0.5 and AR@0.75)
    return coco_eval.stats[: len(STAT_NAMES)], coco_eval.eval["precision"], list(coco_eval.params.catIds)


def _summary(stats: Sequence[float]) -> str:
    """The table COCOeval.summarize prints for ``stats`` (in ``STAT_NAMES`` order)."""
    lines = []
    for name, value in zip(STAT_NAMES, stats):
        ap = name.startswith("map")
        suffix = name.split("_")[-1]
        iou = {"map50": "0.50", "map75": "0.75"}.get(name, "0.50:0.95")
        area = suffix if suffix in ("small", "medium", "large") else "all"
        max_dets = int(suffix) if suffix.isdigit() else 100
        title = "Average Precision  (AP)" if ap else "Average Recall     (AR)"
        lines.append(f" {title} @[ IoU={iou:<9} | area={area:>6s} | maxDets={max_dets:>3d} ] = {value:0.3f}\n")
    return "".join(lines)


def _per_class_ap(precision: Any, category_ids: Sequence[int], label_of: Mapping[int, int]) -> dict[int, float | None]:
    """AP@[.5:.95] of each category under its label, from COCOeval's ``precision`` [T iou thresholds, R recall
    points, K categories, A area ranges, M max-dets] (all areas, the most detections); None without ground truth."""
    per_class: dict[int, float | None] = {}
    for k, category_id in enumerate(category_ids):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        per_class[label_of[category_id]] = float(values.mean()) if values.size else None
    return per_class


def coco_evaluate(
    detections: DetectionList,
    targets: DetectionList,
    class_names: Sequence[str] | None = None,
    label_to_category_id: Mapping[int, int] | None = None,
    backend: str = "auto",
) -> dict[str, Any]:
    """COCO AP@[.5:.95], AP50, AP75, AP/AR by size and AR@1/10/100, and AP@[.5:.95] per class.

    ``targets[i]``: ``boxes`` [G, 4] xyxy pixels, ``labels`` [G], optional ``iscrowd`` [G] bool and
    ``area`` [G]. Classes evaluated: the keys of ``label_to_category_id`` if given, else 1..C-1 with
    C = ``len(class_names)``, else every label 1..max seen. COCOeval keeps the 100 best detections
    per image and category (its ``maxDets``). ``backend``: ``"auto"``, ``"faster-coco-eval"`` or
    ``"pycocotools"`` (see :func:`coco_backend`); both give the same numbers.

    Returns the ``STAT_NAMES`` floats, ``per_class`` {label: AP@[.5:.95] or None without ground truth},
    ``num_gt`` {label: non-crowd GT count}, ``summary`` (the table pycocotools prints) and ``coco_backend``
    (the backend that computed them).
    """
    backend = coco_backend(backend)
    num_classes = check_inputs(detections, targets, len(class_names) if class_names is not None else None)
    labels = sorted(label_to_category_id) if label_to_category_id else list(range(1, num_classes))
    category_of = dict(label_to_category_id) if label_to_category_id else {label: label for label in labels}

    images = [{"id": i} for i in range(len(targets))]
    categories = [{"id": category_of[label]} for label in labels]
    with gc_paused():  # the million small dicts and lists of a large split
        results = _loaded_results(detections, category_of)
        annotations = _ground_truth_annotations(targets, category_of)
        stats, precision, category_ids = _run_cocoeval(
            backend,
            {"images": images, "categories": categories, "annotations": annotations},
            {"images": images, "categories": categories, "annotations": results},
        )

    counts = Counter(a["category_id"] for a in annotations if not a["iscrowd"])
    result: dict[str, Any] = {"metric": "coco"}
    result.update({name: float(value) for name, value in zip(STAT_NAMES, stats)})
    result["per_class"] = _per_class_ap(precision, category_ids, {c: label for label, c in category_of.items()})
    result["num_gt"] = {label: counts[category_of[label]] for label in labels}
    result["summary"] = _summary(stats)
    result["coco_backend"] = backend
    return result
