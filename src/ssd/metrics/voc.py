"""PASCAL VOC detection AP, as the official devkit computes it (VOCevaldet.m / VOCap.m), vectorised.

Per class, detections of all images are ranked by descending score (stable: ties keep input order).
Each detection is compared with the ground truths of its image and class and takes the one of highest
IoU (the first on ties). If that IoU >= 0.5: a ``difficult`` ground truth makes the detection ignored
(neither TP nor FP); otherwise the first detection to reach that ground truth is a TP and later ones FP.
Below 0.5 it is a FP. Difficult ground truths are not counted as positives. Areas use the devkit's
inclusive pixel convention (width = x2 - x1 + 1), so published numbers are reproduced.

Because a detection's target ground truth does not depend on which ones are taken (the devkit does not
fall back to a second-best box), the devkit's sequential "taken" bookkeeping reduces to "the
highest-ranked detection of each ground truth is the TP", which ``np.unique`` answers in one call.

Convention for a class without (non-difficult) ground truth, as the devkit: its AP is undefined, it is
reported as ``None`` and left out of the mean. A class with ground truth but no detection has AP 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

DetectionList = Sequence[Mapping[str, Tensor]]


def _cat(dicts: DetectionList, key: str) -> Tensor:
    """``dicts[i][key]`` of all images concatenated on the CPU (a missing key reads as False), ``[sum N_i, ...]``."""
    parts = [
        d[key] if key in d else torch.zeros(len(d["labels"]), dtype=torch.bool, device=d["labels"].device)
        for d in dicts
    ]
    return torch.cat(parts).detach().cpu() if parts else torch.zeros(0)


def _image_index(dicts: DetectionList) -> np.ndarray:
    """``[sum N_i]``: the image each row of :func:`_cat` comes from."""
    return np.repeat(np.arange(len(dicts)), [len(d["labels"]) for d in dicts])


def check_inputs(detections: DetectionList, targets: DetectionList, num_classes: int | None = None) -> int:
    """Raise ``ValueError`` naming the image when a detection or target dict is malformed; return C.

    ``detections[i]``: ``boxes`` [N, 4], ``scores`` [N], ``labels`` [N]; ``targets[i]``: ``boxes`` [G, 4],
    ``labels`` [G], optional ``difficult`` / ``iscrowd`` / ``area`` [G]. Labels must lie in 1..C-1, where the
    number of classes C (background included) is ``num_classes``, or 1 + the largest label seen when None.
    """
    if len(detections) != len(targets):
        raise ValueError(f"{len(detections)} detection dicts for {len(targets)} target dicts")
    kinds = (("detections", detections, ("boxes", "scores", "labels")), ("targets", targets, ("boxes", "labels")))
    for kind, dicts, keys in kinds:
        for i, d in enumerate(dicts):
            missing = [k for k in keys if k not in d]
            if missing:
                raise ValueError(f"{kind}[{i}]: missing {', '.join(missing)}")
            n = len(d["boxes"])
            if d["boxes"].shape != (n, 4):
                raise ValueError(f"{kind}[{i}]: boxes must be [N, 4], got {list(d['boxes'].shape)}")
            for k in (*keys[1:], "difficult", "iscrowd", "area"):
                if k in d and d[k].shape != (n,):
                    raise ValueError(f"{kind}[{i}]: {k} must be [{n}], got {list(d[k].shape)}")
    labels = {kind: _cat(dicts, "labels") for kind, dicts, _ in kinds}
    allowed = "1 or more (0 is background)" if num_classes is None else f"in 1..{num_classes - 1}"
    if num_classes is None:
        every = torch.cat(list(labels.values()))
        num_classes = int(every.max()) + 1 if len(every) else 1
    for kind, dicts, _ in kinds:
        bad = (labels[kind] < 1) | (labels[kind] >= num_classes)
        if bad.any():
            first = int(bad.nonzero()[0])
            image = int(_image_index(dicts)[first])
            raise ValueError(f"{kind}[{image}]: labels must be {allowed}, got {int(labels[kind][first])}")
    return num_classes


def inclusive_iou(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """Element-wise IoU of rows ``a[i]`` and ``b[i]`` (both ``[K, 4]``) with the devkit's +1 pixel convention."""
    iw = np.minimum(a_xyxy[:, 2], b_xyxy[:, 2]) - np.maximum(a_xyxy[:, 0], b_xyxy[:, 0]) + 1
    ih = np.minimum(a_xyxy[:, 3], b_xyxy[:, 3]) - np.maximum(a_xyxy[:, 1], b_xyxy[:, 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a_xyxy[:, 2] - a_xyxy[:, 0] + 1) * (a_xyxy[:, 3] - a_xyxy[:, 1] + 1)
    area_b = (b_xyxy[:, 2] - b_xyxy[:, 0] + 1) * (b_xyxy[:, 3] - b_xyxy[:, 1] + 1)
    return inter / (area_a + area_b - inter)


def _best_ground_truth(
    det_boxes: np.ndarray, det_key: np.ndarray, gt_boxes: np.ndarray, gt_key: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each detection, the ground truth with the same key (image, class) of highest IoU.

    Returns ``best_iou [D]`` (-inf without candidates) and ``best_gt [D]`` (index into the ground truths, -1
    without candidates). Ties go to the lowest ground-truth index, like the devkit's strict ``ov > ovmax``.
    Only (detection, ground truth) pairs sharing a key are formed, so memory follows the real overlaps.
    """
    num_det = len(det_key)
    gt_order = np.argsort(gt_key, kind="stable")
    sorted_keys = gt_key[gt_order]
    start = np.searchsorted(sorted_keys, det_key, side="left")
    count = np.searchsorted(sorted_keys, det_key, side="right") - start  # candidate GTs per detection
    offset = np.cumsum(count) - count  # where each detection's pairs begin
    pair_det = np.repeat(np.arange(num_det), count)
    pair_rank = np.arange(len(pair_det)) - offset[pair_det]  # 0..count-1 inside each detection
    pair_gt = gt_order[start[pair_det] + pair_rank]
    iou = inclusive_iou(det_boxes[pair_det], gt_boxes[pair_gt])

    best_iou = np.full(num_det, -np.inf)
    best_gt = np.full(num_det, -1, dtype=np.int64)
    has = count > 0
    if has.any():
        best_iou[has] = np.maximum.reduceat(iou, offset[has])
    # first pair of each detection reaching its maximum (pairs are in detection, then GT-index order)
    reach = np.flatnonzero(iou == best_iou[pair_det])
    first = np.ones(len(reach), dtype=bool)
    first[1:] = pair_det[reach[1:]] != pair_det[reach[:-1]]
    best_gt[pair_det[reach[first]]] = pair_gt[reach[first]]
    return best_iou, best_gt


def average_precision(precision: np.ndarray, recall: np.ndarray, use_07_metric: bool) -> float:
    """AP of one class from its PR curve (detections in rank order).

    VOC2007: mean over t = 0, 0.1, ..., 1 of the best precision at recall >= t (0 if none). The t are the
    floats nearest k/10 (MATLAB's 0:0.1:1 has 0.30000000000000004: it differs only when a recall is exactly 0.3).
    VOC2010+: area under the precision envelope (precision made monotone decreasing from the right),
    sum of (r_i - r_{i-1}) * envelope_i with r_0 = 0.
    """
    if use_07_metric:
        thresholds = np.arange(11) / 10
        reached = recall[None, :] >= thresholds[:, None]  # [11, D]
        best = np.where(reached, precision[None, :], 0.0).max(axis=1, initial=0.0)
        return float(best.mean())
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(recall, prepend=0.0)
    return float(np.sum(steps * envelope))


def voc_evaluate(
    detections: DetectionList,
    targets: DetectionList,
    use_07_metric: bool = True,
    class_names: Sequence[str] | None = None,
    iou_threshold: float = 0.5,
) -> dict[str, Any]:
    """VOC AP per class and its mean over classes with ground truth.

    ``detections[i]``: ``boxes`` [N, 4] xyxy pixels, ``scores`` [N], ``labels`` [N] (1..C-1); ``targets[i]``:
    ``boxes`` [G, 4], ``labels`` [G], optional ``difficult`` [G] bool. ``class_names`` (with background first)
    fixes the classes reported; without it, every label 1..max seen is reported.

    Returns ``map`` (-1.0 when no class has ground truth, like pycocotools); ``per_class`` {label: AP or
    None}; ``num_gt`` {label: non-difficult GT count}; ``curves`` {label: (precision [K], recall [K])}
    over the non-ignored detections in rank order, for the classes with ground truth.
    """
    num_classes = check_inputs(detections, targets, len(class_names) if class_names is not None else None)
    det_boxes = _cat(detections, "boxes").double().reshape(-1, 4).numpy()
    det_scores = _cat(detections, "scores").double().numpy()
    det_labels = _cat(detections, "labels").long().numpy()
    gt_boxes = _cat(targets, "boxes").double().reshape(-1, 4).numpy()
    gt_labels = _cat(targets, "labels").long().numpy()
    gt_difficult = _cat(targets, "difficult").bool().numpy()

    det_key = _image_index(detections) * num_classes + det_labels
    gt_key = _image_index(targets) * num_classes + gt_labels
    best_iou, best_gt = _best_ground_truth(det_boxes, det_key, gt_boxes, gt_key)
    hit = best_iou >= iou_threshold
    ignored = np.zeros_like(hit)
    ignored[hit] = gt_difficult[best_gt[hit]]
    claims = hit & ~ignored

    rank = np.lexsort((-det_scores, det_labels))  # by class, then descending score, stable
    claiming = rank[claims[rank]]
    _, first = np.unique(best_gt[claiming], return_index=True)  # best-ranked claim of each GT
    true_positive = np.zeros(len(det_labels), dtype=bool)
    true_positive[claiming[first]] = True

    kept = rank[~ignored[rank]]  # ranked, ignored detections dropped (they move neither P nor R)
    kept_labels = det_labels[kept]
    num_gt = np.bincount(gt_labels[~gt_difficult], minlength=num_classes)
    bounds = np.searchsorted(kept_labels, np.arange(num_classes + 1))

    per_class: dict[int, float | None] = {}
    curves: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for label in range(1, num_classes):
        if num_gt[label] == 0:
            per_class[label] = None
            continue
        tp = np.cumsum(true_positive[kept[bounds[label] : bounds[label + 1]]])
        precision = tp / np.arange(1, len(tp) + 1)
        recall = tp / num_gt[label]
        curves[label] = (precision, recall)
        per_class[label] = average_precision(precision, recall, use_07_metric)

    defined = [ap for ap in per_class.values() if ap is not None]
    return {
        "metric": "voc07" if use_07_metric else "voc",
        "map": float(np.mean(defined)) if defined else -1.0,
        "per_class": per_class,
        "num_gt": {label: int(num_gt[label]) for label in range(1, num_classes)},
        "curves": curves,
    }
