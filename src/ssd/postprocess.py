"""Detections from head outputs: decode, softmax, per-class score filter and top-k, batched NMS, rescale."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from .boxes import cxcywh_to_xyxy, decode


@dataclass
class PostProcessSettings:
    """Thresholds of the paper (and torchvision): scores > 0.01, 400 per class, NMS 0.45, 200 per image."""

    score_thresh: float = 0.01
    nms_thresh: float = 0.45
    topk_candidates: int = 400
    detections_per_img: int = 200


def postprocess(
    loc: Tensor,
    conf: Tensor,
    priors_cxcywh: Tensor,
    variances: Sequence[float],
    image_sizes: Sequence[tuple[int, int]],
    settings: PostProcessSettings,
) -> list[dict[str, Tensor]]:
    """Final detections per image: ``boxes`` xyxy in pixels of each original image (clipped), ``scores``, ``labels``.

    ``loc: Tensor[B, P, 4]``, ``conf: Tensor[B, P, C]`` (logits), ``image_sizes`` as (height, width).
    Vectorised over images and classes: one top-k over a [B, P, C-1] score tensor and one batched NMS.
    """
    batch, num_priors, num_classes = conf.shape
    device = conf.device
    boxes = cxcywh_to_xyxy(decode(loc.float(), priors_cxcywh, variances)).clamp(0.0, 1.0)  # [B, P, 4]
    scale = torch.tensor([[w, h, w, h] for h, w in image_sizes], dtype=boxes.dtype, device=device)
    boxes = boxes * scale[:, None, :]
    scores = torch.softmax(conf.float(), dim=-1)[..., 1:]  # [B, P, C-1], background dropped

    k = min(settings.topk_candidates, num_priors)
    top_scores, top_prior = scores.topk(k, dim=1)  # [B, k, C-1], per image and class
    keep = top_scores > settings.score_thresh
    img_idx, _, cls_idx = torch.nonzero(keep, as_tuple=True)
    cand_scores = top_scores[keep]
    cand_boxes = boxes[img_idx, top_prior[keep]]
    labels = cls_idx + 1

    group = img_idx * num_classes + labels  # NMS runs per image and per class
    kept = batched_nms(cand_boxes, cand_scores, group, settings.nms_thresh)  # sorted by score, descending
    kept_img = img_idx[kept]
    # keep the best detections_per_img of each image: stable sort by image, then rank inside the image
    order = torch.sort(kept_img, stable=True).indices
    kept, kept_img = kept[order], kept_img[order]
    counts = torch.bincount(kept_img, minlength=batch)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(kept), device=device) - starts[kept_img]
    within = rank < settings.detections_per_img
    kept, kept_img = kept[within], kept_img[within]
    counts = torch.bincount(kept_img, minlength=batch).tolist()

    results = []
    for idx in torch.split(kept, counts):
        results.append({"boxes": cand_boxes[idx], "scores": cand_scores[idx], "labels": labels[idx]})
    return results
