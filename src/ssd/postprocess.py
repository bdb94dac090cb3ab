"""Detections from head outputs: decode, softmax, per-class top-k and score filter, NMS, the best per image.

One implementation serves eager PyTorch and the ONNX graph: :func:`padded_detections` computes fixed-shape
outputs from tensor operations and :func:`non_max_suppression`, a custom op that runs torchvision's NMS in
PyTorch and exports as ONNX ``NonMaxSuppression`` (``ssd.export.onnx`` registers the mapping). :func:`postprocess`
slices its rows per image and scales the boxes to each image's pixels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import nms

from .boxes import cxcywh_to_xyxy, decode
from .config import ModelConfig


@dataclass
class PostProcessSettings:
    """Thresholds of the paper (and torchvision): scores > 0.01, 400 per class, NMS 0.45, 200 per image.

    The field names are those of ``ModelConfig``, which holds the values a model is built with.
    """

    score_thresh: float = 0.01
    nms_thresh: float = 0.45
    topk_candidates: int = 400
    detections_per_img: int = 200

    @classmethod
    def from_config(cls, config: ModelConfig) -> PostProcessSettings:
        """The settings stored in a model config."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})

    def apply_to(self, config: ModelConfig) -> ModelConfig:
        """A copy of ``config`` holding these settings."""
        return dataclasses.replace(config, **dataclasses.asdict(self))


@torch.library.custom_op("ssd::non_max_suppression", mutates_args=())
def non_max_suppression(boxes_xyxy: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float) -> Tensor:
    """ONNX ``NonMaxSuppression`` in PyTorch: ``selected [N, 3]`` of (batch, class, box).

    ``boxes_xyxy: Tensor[B, P, 4]``, ``scores: Tensor[B, M, P]``. Per batch entry and class: greedy NMS over the
    boxes with ``score > score_threshold`` (a box goes when its IoU with a kept one is ``> iou_threshold``).
    Rows are ordered by batch, class, then score descending, as ONNX Runtime orders them.
    """
    batch, num_classes, num_boxes = scores.shape
    flat_scores = scores.reshape(-1)  # [B*M*P], index = (b * M + m) * P + p
    candidates = torch.nonzero(flat_scores > score_threshold).squeeze(1)  # ascending, so grouped by (b, m)
    group = torch.div(candidates, num_boxes, rounding_mode="floor")  # b * M + m
    box_idx = candidates % num_boxes
    cand_boxes = boxes_xyxy[torch.div(group, num_classes, rounding_mode="floor"), box_idx]
    cand_scores = flat_scores[candidates]
    kept, start = [], 0
    for count in torch.bincount(group, minlength=batch * num_classes).tolist():  # one NMS per (b, m), as torchvision
        if count:
            kept.append(
                nms(cand_boxes[start : start + count], cand_scores[start : start + count], iou_threshold) + start
            )
        start += count
    kept_idx = torch.cat(kept) if kept else candidates  # by group, best score first inside
    group, box_idx = group[kept_idx], box_idx[kept_idx]
    return torch.stack([torch.div(group, num_classes, rounding_mode="floor"), group % num_classes, box_idx], dim=1)


@non_max_suppression.register_fake
def _(boxes_xyxy: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float) -> Tensor:
    count = torch.library.get_ctx().new_dynamic_size()
    return boxes_xyxy.new_empty((count, 3), dtype=torch.int64)


def padded_detections(
    loc: Tensor, conf: Tensor, priors_cxcywh: Tensor, variances: Sequence[float], settings: PostProcessSettings
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Detections in fixed shapes: ``boxes_xyxy [B, K, 4]`` normalised to 0..1, ``scores [B, K]``, ``labels [B, K]``
    and ``num_detections [B]``, rows best first and zero past ``num_detections`` (``K = detections_per_img``).

    ``loc: Tensor[B, P, 4]``, ``conf: Tensor[B, P, C]`` (logits). Per image and class the candidates are the
    ``topk_candidates`` best scores above ``score_thresh``; NMS runs on them; the best ``detections_per_img``
    over all classes are kept. Vectorised over images and classes: one top-k, one NMS call, one top-k.
    """
    num_priors, num_classes = conf.shape[1], conf.shape[2]
    boxes = cxcywh_to_xyxy(decode(loc, priors_cxcywh, variances)).clamp(0.0, 1.0)  # [B, P, 4]
    scores = torch.softmax(conf, dim=-1)[..., 1:].transpose(1, 2)  # [B, C-1, P], background dropped
    k = min(settings.topk_candidates, num_priors)
    top_scores, top_prior = best_first(scores, k)  # [B, C-1, k]
    cand_boxes = boxes.gather(1, top_prior.reshape(-1, (num_classes - 1) * k, 1).expand(-1, -1, 4))  # [B, (C-1)k, 4]

    # one NMS problem per (image, class): the op's batch axis runs over both, each with its own k candidates
    selected = non_max_suppression(
        cand_boxes.reshape(-1, k, 4), top_scores.reshape(-1, 1, k), settings.nms_thresh, settings.score_thresh
    )  # [N, 3] of ((image * (C-1) + class), 0, candidate)
    kept = torch.zeros_like(top_scores, dtype=torch.bool).reshape(-1, 1, k)
    kept[selected[:, 0], selected[:, 1], selected[:, 2]] = True
    flat_scores = top_scores.reshape(-1, (num_classes - 1) * k)
    kept_scores = torch.where(kept.reshape(-1, (num_classes - 1) * k), flat_scores, -1.0)

    det_scores, det_idx = best_first(kept_scores, min(settings.detections_per_img, (num_classes - 1) * k))  # [B, K]
    valid = det_scores >= 0.0  # softmax scores are >= 0; dropped candidates hold -1
    det_boxes = cand_boxes.gather(1, det_idx[..., None].expand(-1, -1, 4))  # [B, K, 4]
    det_labels = torch.div(det_idx, k, rounding_mode="floor") + 1
    return (
        torch.where(valid[..., None], det_boxes, 0.0),
        torch.where(valid, det_scores, 0.0),
        torch.where(valid, det_labels, 0),
        valid.sum(dim=1),
    )


def best_first(scores: Tensor, count: int) -> tuple[Tensor, Tensor]:
    """The ``count`` highest ``scores`` along the last axis and their indices, equal scores in index order.

    ONNX ``TopK`` ranks equal scores by index, PyTorch's ``topk`` in any order: here the ``count`` found by
    ``topk`` are put in index order, then stably sorted by score. Both NMS implementations keep the first of equal
    scores, so the exported and the eager detections agree even where scores saturate at 1.
    """
    values, indices = scores.topk(count, dim=-1)
    if torch.onnx.is_in_onnx_export():
        return values, indices
    by_index = indices.sort(dim=-1).indices
    values, indices = values.gather(-1, by_index), indices.gather(-1, by_index)
    by_score = values.sort(dim=-1, descending=True, stable=True).indices
    return values.gather(-1, by_score), indices.gather(-1, by_score)


def unpad_detections(
    boxes_xyxy: Tensor, scores: Tensor, labels: Tensor, counts: Tensor, image_sizes: Sequence[tuple[int, int]]
) -> list[dict[str, Tensor]]:
    """Padded detections (boxes normalised) as one dict per image: the valid rows, boxes in that image's pixels.

    ``image_sizes`` as (height, width); each image's ``boxes`` come back clipped to it, as the inputs are.
    """
    results = []
    for i, (height, width) in enumerate(image_sizes):
        n = int(counts[i])
        scale = boxes_xyxy.new_tensor([width, height, width, height])
        results.append({"boxes": boxes_xyxy[i, :n] * scale, "scores": scores[i, :n], "labels": labels[i, :n]})
    return results


def postprocess(
    loc: Tensor,
    conf: Tensor,
    priors_cxcywh: Tensor,
    variances: Sequence[float],
    image_sizes: Sequence[tuple[int, int]],
    settings: PostProcessSettings,
) -> list[dict[str, Tensor]]:
    """Final detections per image: ``boxes`` xyxy in pixels of each original image (clipped), ``scores``, ``labels``.

    ``loc: Tensor[B, P, 4]``, ``conf: Tensor[B, P, C]`` (logits, any float dtype: decoding and NMS run in
    float32), ``image_sizes`` as (height, width).
    """
    padded = padded_detections(loc.float(), conf.float(), priors_cxcywh, variances, settings)
    return unpad_detections(*padded, image_sizes)
