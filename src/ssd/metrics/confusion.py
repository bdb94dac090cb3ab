"""Detection confusion matrix: which class each ground truth was detected as, with background for misses.

Convention: ``matrix[true, predicted]``, index 0 is background.
- a detection matched to a ground truth of class t, predicted as class p, counts in ``[t, p]``
  (``[t, t]`` on the diagonal is a correct detection, off-diagonal a class confusion);
- a detection matched to no ground truth (a false positive) counts in ``[0, p]``;
- a ground truth matched by no detection (a miss) counts in ``[t, 0]``; ``[0, 0]`` is always 0.
Matching is class-agnostic, one-to-one, on torchvision's IoU (no +1): only detections with
score >= ``score_threshold`` take part; each detection keeps its highest-IoU ground truth with
IoU >= ``iou_threshold``, then each ground truth keeps its highest-IoU detection among those.
Ground truths marked ``difficult`` or ``iscrowd`` are ignored: neither they nor the detections
matched to them are counted.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou

from .voc import DetectionList, check_inputs


def _first_occurrence(keys: Tensor) -> Tensor:
    """``Tensor[K]`` bool: True where ``keys[i]`` has not appeared in ``keys[:i]``."""
    order = torch.sort(keys, stable=True).indices
    sorted_keys = keys[order]
    new = torch.ones_like(sorted_keys, dtype=torch.bool)
    new[1:] = sorted_keys[1:] != sorted_keys[:-1]
    first = torch.zeros_like(new)
    first[order] = new
    return first


def _match(gt_xyxy: Tensor, det_xyxy: Tensor, iou_threshold: float) -> tuple[Tensor, Tensor]:
    """One-to-one matched pairs ``(gt_index [M], det_index [M])`` of one image, best IoU first."""
    iou = box_iou(gt_xyxy, det_xyxy)  # [G, D]
    gt_idx, det_idx = torch.nonzero(iou >= iou_threshold, as_tuple=True)
    order = torch.sort(iou[gt_idx, det_idx], descending=True, stable=True).indices
    gt_idx, det_idx = gt_idx[order], det_idx[order]
    best_per_det = _first_occurrence(det_idx)
    gt_idx, det_idx = gt_idx[best_per_det], det_idx[best_per_det]
    best_per_gt = _first_occurrence(gt_idx)
    return gt_idx[best_per_gt], det_idx[best_per_gt]


def confusion_matrix(
    detections: DetectionList,
    targets: DetectionList,
    num_classes: int,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.25,
) -> Tensor:
    """``Tensor[C, C]`` int64 counts, ``[true class, predicted class]`` with 0 = background (see module doc).

    ``detections[i]``: ``boxes`` [N, 4] xyxy, ``scores`` [N], ``labels`` [N]; ``targets[i]``: ``boxes`` [G, 4],
    ``labels`` [G], optional ``difficult`` / ``iscrowd`` [G] bool; ``num_classes`` includes background.
    """
    check_inputs(detections, targets, num_classes)
    cells = []  # flat indices true * C + predicted, one per counted event
    for det, target in zip(detections, targets):
        keep = det["scores"].detach().cpu() >= score_threshold
        det_xyxy, det_labels = det["boxes"].detach().cpu()[keep].float(), det["labels"].cpu()[keep]
        gt_xyxy, gt_labels = target["boxes"].detach().cpu().float(), target["labels"].cpu()
        ignored = torch.zeros(len(gt_labels), dtype=torch.bool)
        for flag in ("difficult", "iscrowd"):
            if flag in target:
                ignored |= target[flag].cpu().bool()

        gt_idx, det_idx = _match(gt_xyxy, det_xyxy, iou_threshold)
        det_matched = torch.zeros(len(det_labels), dtype=torch.bool)
        det_matched[det_idx] = True
        gt_matched = torch.zeros(len(gt_labels), dtype=torch.bool)
        gt_matched[gt_idx] = True

        counted = ~ignored[gt_idx]
        cells.append(gt_labels[gt_idx[counted]] * num_classes + det_labels[det_idx[counted]])  # matches
        cells.append(det_labels[~det_matched])  # false positives: row 0
        cells.append(gt_labels[~gt_matched & ~ignored] * num_classes)  # misses: column 0
    flat = torch.cat(cells) if cells else torch.zeros(0, dtype=torch.int64)
    return torch.bincount(flat.long(), minlength=num_classes * num_classes).reshape(num_classes, num_classes)
