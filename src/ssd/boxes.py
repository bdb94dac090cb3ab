"""Box coding (centre-size offsets with variances) and the paper's prior matching, batched.

Formats are named in the variables: ``*_xyxy`` corners, ``*_cxcywh`` centre and size.
Priors and targets inside the loss are normalised to 0..1 of the network input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import box_convert, box_iou

# exp() of a width/height offset is capped as in torchvision, so a wild prediction cannot overflow
MAX_LOG_SCALE = math.log(1000.0 / 16)


def encode(matched_cxcywh: Tensor, priors_cxcywh: Tensor, variances: Sequence[float]) -> Tensor:
    """Offsets of ground-truth boxes from priors: ((g_c - p_c) / (v0 p_wh), log(g_wh / p_wh) / v2)."""
    v_center = matched_cxcywh.new_tensor(variances[:2])
    v_size = matched_cxcywh.new_tensor(variances[2:])
    centre = (matched_cxcywh[..., :2] - priors_cxcywh[..., :2]) / (v_center * priors_cxcywh[..., 2:])
    size = torch.log(matched_cxcywh[..., 2:] / priors_cxcywh[..., 2:]) / v_size
    return torch.cat([centre, size], dim=-1)


def decode(loc: Tensor, priors_cxcywh: Tensor, variances: Sequence[float]) -> Tensor:
    """Inverse of :func:`encode`: boxes (cx, cy, w, h) from offsets ``loc: Tensor[..., P, 4]``."""
    v_center = loc.new_tensor(variances[:2])
    v_size = loc.new_tensor(variances[2:])
    centre = priors_cxcywh[..., :2] + loc[..., :2] * v_center * priors_cxcywh[..., 2:]
    size = priors_cxcywh[..., 2:] * torch.exp(torch.clamp(loc[..., 2:] * v_size, max=MAX_LOG_SCALE))
    return torch.cat([centre, size], dim=-1)


def pad_boxes(boxes_list: Sequence[Tensor], labels_list: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Stack per-image boxes [G_i, 4] and labels [G_i] into padded [B, G, 4], [B, G] and a mask [B, G]."""
    batch = len(boxes_list)
    max_boxes = max((len(b) for b in boxes_list), default=0)
    device = boxes_list[0].device if batch else torch.device("cpu")
    boxes = torch.zeros(batch, max_boxes, 4, device=device)
    labels = torch.zeros(batch, max_boxes, dtype=torch.int64, device=device)
    valid = torch.zeros(batch, max_boxes, dtype=torch.bool, device=device)
    for i, (b, lab) in enumerate(zip(boxes_list, labels_list)):
        boxes[i, : len(b)] = b
        labels[i, : len(b)] = lab
        valid[i, : len(b)] = True
    return boxes, labels, valid


def match(gt_xyxy: Tensor, gt_valid: Tensor, priors_xyxy: Tensor, iou_threshold: float = 0.5) -> Tensor:
    """Assign ground-truth boxes to priors as in the paper; return ``Tensor[B, P]`` of gt indices, -1 = background.

    1. Every ground truth takes its best-overlap prior, even below the threshold. Two ground truths
       that want the same prior do not steal it from each other: the higher overlap wins it and the
       other takes its best remaining prior (greedy bipartite matching, resolved in rounds).
    2. Every other prior whose best overlap with some ground truth is ``>= iou_threshold`` is positive.

    ``gt_xyxy: Tensor[B, G, 4]`` padded, ``gt_valid: Tensor[B, G]`` marks real boxes, ``priors_xyxy: Tensor[P, 4]``.
    """
    batch, num_gt = gt_valid.shape
    num_priors = priors_xyxy.shape[0]
    if num_gt == 0:
        return torch.full((batch, num_priors), -1, dtype=torch.int64, device=priors_xyxy.device)
    iou = box_iou(gt_xyxy.reshape(-1, 4), priors_xyxy).view(batch, num_gt, num_priors)  # [B, G, P]
    iou = iou.masked_fill(~gt_valid[..., None], -1.0)

    best_iou, best_gt = iou.max(dim=1)  # [B, P]
    forced_prior = _bipartite_best_priors(iou, gt_valid)  # [B, G], -1 for padding
    # the forced priors belong to their ground truth whatever the overlaps say
    b_idx, g_idx = torch.nonzero(forced_prior >= 0, as_tuple=True)
    p_idx = forced_prior[b_idx, g_idx]
    best_gt[b_idx, p_idx] = g_idx
    best_iou[b_idx, p_idx] = 2.0
    return torch.where(best_iou >= iou_threshold, best_gt, torch.full_like(best_gt, -1))


def _bipartite_best_priors(iou: Tensor, gt_valid: Tensor) -> Tensor:
    """For each valid ground truth a distinct prior, its best available one; ``Tensor[B, G]``, -1 for padding.

    Each round, every unassigned ground truth proposes its best free prior; each prior goes to the
    proposer with the highest overlap. The pair with the largest overlap always wins, so at least one
    ground truth is assigned per round; in practice one or two rounds settle a whole batch.
    """
    batch, num_gt, num_priors = iou.shape
    work = iou.clone()
    assigned = torch.full((batch, num_gt), -1, dtype=torch.int64, device=iou.device)
    pending = gt_valid.clone()
    neg = -3.0  # below any real or padding overlap
    batch_idx = torch.arange(batch, device=iou.device)[:, None].expand(batch, num_gt)
    while bool(pending.any()):
        work = work.masked_fill(~pending[..., None], neg)
        cand_iou, cand_prior = work.max(dim=2)  # [B, G]
        # the highest proposal per (image, prior); ties go to the lowest gt index
        key = batch_idx * num_priors + cand_prior
        best_for_prior = torch.full((batch * num_priors,), neg, device=iou.device, dtype=iou.dtype)
        best_for_prior.scatter_reduce_(0, key[pending], cand_iou[pending], reduce="amax")
        wins = pending & (cand_iou == best_for_prior[key])
        gt_ids = torch.arange(num_gt, device=iou.device).expand(batch, num_gt)
        first_winner = torch.full((batch * num_priors,), num_gt, dtype=torch.int64, device=iou.device)
        first_winner.scatter_reduce_(0, key[wins], gt_ids[wins], reduce="amin")
        wins &= gt_ids == first_winner[key]
        assigned[wins] = cand_prior[wins]
        pending &= ~wins
        # a won prior is no longer free for anyone in that image
        taken = torch.zeros(batch, num_priors, dtype=torch.bool, device=iou.device)
        taken[batch_idx[wins], cand_prior[wins]] = True
        work = work.masked_fill(taken[:, None, :], neg)
    return assigned


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    return box_convert(boxes, "cxcywh", "xyxy")


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    return box_convert(boxes, "xyxy", "cxcywh")
