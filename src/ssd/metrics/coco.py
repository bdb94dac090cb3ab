"""COCO box AP with pycocotools' COCOeval, on COCO objects built in memory (no files, no prints).

pycocotools' conventions apply: boxes are [x, y, w, h] with no +1, IoU against a crowd region is the
intersection over the detection's area, crowd ground truths and detections matched to them are ignored,
and the small/medium/large ranges (32² and 96² pixels) test the ground truth's ``area``: the target's
``area`` when given (COCO's segment area, to reproduce official numbers), else the box area w * h.
Summary values that COCOeval leaves undefined (e.g. AP small without small objects) are -1.0, as it prints.
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_convert

from .voc import DetectionList, check_inputs

# COCOeval.stats order, under torchmetrics' names
STAT_NAMES = (
    "map", "map50", "map75", "map_small", "map_medium", "map_large",
    "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large",
)  # fmt: skip


def _category_ids(labels: torch.Tensor, label_to_category_id: Mapping[int, int] | None) -> list[int]:
    """Dataset category ids of contiguous ``labels`` (identity without a mapping)."""
    labels_list = labels.tolist()
    if label_to_category_id is None:
        return labels_list
    unknown = sorted(set(labels_list) - set(label_to_category_id))
    if unknown:
        raise ValueError(f"labels {unknown} have no entry in label_to_category_id")
    return [label_to_category_id[label] for label in labels_list]


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
    results = []
    for det, image_id in zip(detections, image_ids):
        boxes_xywh = box_convert(det["boxes"].detach().cpu().double(), "xyxy", "xywh").tolist()
        scores = det["scores"].detach().cpu().double().tolist()
        categories = _category_ids(det["labels"].cpu(), label_to_category_id)
        results.extend(
            {"image_id": image_id, "category_id": c, "bbox": b, "score": s}
            for b, s, c in zip(boxes_xywh, scores, categories)
        )
    return results


def _ground_truth_annotations(
    targets: DetectionList, label_to_category_id: Mapping[int, int] | None
) -> list[dict[str, Any]]:
    """COCO annotation dicts of ``targets`` (image ids = positions), ids from 1 as COCOeval needs."""
    annotations = []
    for image_id, target in enumerate(targets):
        boxes_xywh = box_convert(target["boxes"].detach().cpu().double(), "xyxy", "xywh")
        area = target["area"] if "area" in target else boxes_xywh[:, 2] * boxes_xywh[:, 3]
        iscrowd = target["iscrowd"] if "iscrowd" in target else torch.zeros(len(boxes_xywh), dtype=torch.bool)
        categories = _category_ids(target["labels"].cpu(), label_to_category_id)
        for box, a, crowd, c in zip(boxes_xywh.tolist(), area.tolist(), iscrowd.tolist(), categories):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": c,
                    "bbox": box,
                    "area": a,
                    "iscrowd": int(crowd),
                }  # fmt: skip
            )
    return annotations


def _coco(images: list[dict], categories: list[dict], annotations: list[dict]) -> COCO:
    """A pycocotools COCO object from in-memory lists, its index built quietly."""
    coco = COCO()
    coco.dataset = {"images": images, "categories": categories, "annotations": annotations}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_evaluate(
    detections: DetectionList,
    targets: DetectionList,
    class_names: Sequence[str] | None = None,
    label_to_category_id: Mapping[int, int] | None = None,
) -> dict[str, Any]:
    """COCO AP@[.5:.95], AP50, AP75, AP/AR by size and AR@1/10/100, and AP@[.5:.95] per class.

    ``targets[i]``: ``boxes`` [G, 4] xyxy pixels, ``labels`` [G], optional ``iscrowd`` [G] bool and
    ``area`` [G]. Classes evaluated: the keys of ``label_to_category_id`` if given, else 1..C-1 with
    C = ``len(class_names)``, else every label 1..max seen. COCOeval keeps the 100 best detections
    per image and category (its ``maxDets``).

    Returns the ``STAT_NAMES`` floats, ``per_class`` {label: AP@[.5:.95] or None without ground truth},
    ``num_gt`` {label: non-crowd GT count} and ``summary`` (the table pycocotools prints).
    """
    num_classes = check_inputs(detections, targets, len(class_names) if class_names is not None else None)
    labels = sorted(label_to_category_id) if label_to_category_id else list(range(1, num_classes))
    category_of = dict(label_to_category_id) if label_to_category_id else {label: label for label in labels}

    images = [{"id": i} for i in range(len(targets))]
    categories = [{"id": category_of[label]} for label in labels]
    results = to_coco_results(detections, range(len(detections)), category_of)
    for i, entry in enumerate(results):  # what COCO.loadRes adds to box results
        _, _, w, h = entry["bbox"]
        entry.update(id=i + 1, area=w * h, iscrowd=0)

    annotations = _ground_truth_annotations(targets, category_of)
    coco_eval = COCOeval(_coco(images, categories, annotations), _coco(images, categories, results), iouType="bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.evaluate()
        coco_eval.accumulate()
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        coco_eval.summarize()

    # precision: [T iou thresholds, R recall points, K categories, A area ranges, M max-dets]
    precision = coco_eval.eval["precision"]
    label_of = {c: label for label, c in category_of.items()}
    per_class: dict[int, float | None] = {}
    for k, category_id in enumerate(coco_eval.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        per_class[label_of[category_id]] = float(values.mean()) if values.size else None

    counts = Counter(a["category_id"] for a in annotations if not a["iscrowd"])
    result: dict[str, Any] = {"metric": "coco"}
    result.update({name: float(value) for name, value in zip(STAT_NAMES, coco_eval.stats)})
    result["per_class"] = per_class
    result["num_gt"] = {label: counts[category_of[label]] for label in labels}
    result["summary"] = printed.getvalue()
    return result
