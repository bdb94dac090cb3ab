"""MultiBox loss: Smooth L1 on matched boxes plus softmax cross-entropy with 3:1 hard negative mining."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .boxes import cxcywh_to_xyxy, encode, match, xyxy_to_cxcywh


class MultiBoxLoss(nn.Module):
    """The loss of the paper, Eq. (1): ``(L_conf + alpha * L_loc) / N`` with N the number of matched priors.

    Negatives are the priors with the highest confidence loss, at most ``neg_pos_ratio`` per positive
    in each image. With no positive at all both terms are zero (finite, no NaN).
    """

    def __init__(
        self,
        priors_cxcywh: Tensor,
        variances: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
        iou_threshold: float = 0.5,
        neg_pos_ratio: float = 3.0,
        loc_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.register_buffer("priors_cxcywh", priors_cxcywh, persistent=False)
        self.register_buffer("priors_xyxy", cxcywh_to_xyxy(priors_cxcywh), persistent=False)
        self.variances = list(variances)
        self.iou_threshold = iou_threshold
        self.neg_pos_ratio = neg_pos_ratio
        self.loc_weight = loc_weight
        # under DistributedDataParallel: divide by the positives of the whole global batch, so that the
        # averaged gradients equal those of one process on the same batch (set by the training loop)
        self.normalize_over_processes = False

    def forward(
        self, loc: Tensor, conf: Tensor, gt_xyxy: Tensor, gt_labels: Tensor, gt_valid: Tensor
    ) -> dict[str, Tensor]:
        """Losses for ``loc: Tensor[B, P, 4]``, ``conf: Tensor[B, P, C]`` and padded targets.

        ``gt_xyxy: Tensor[B, G, 4]`` normalised to 0..1, ``gt_labels: Tensor[B, G]`` (1..C-1), ``gt_valid: Tensor[B, G]``.
        Returns ``{"loc": alpha * L_loc / N, "conf": L_conf / N}``; their sum is the training objective.
        """
        loc, conf = loc.float(), conf.float()
        if gt_xyxy.shape[1] == 0:  # no box in the whole batch: one padding column keeps the gathers valid
            gt_xyxy, gt_labels, gt_valid = (
                gt_xyxy.new_zeros(len(loc), 1, 4),
                gt_labels.new_zeros(len(loc), 1),
                gt_valid.new_zeros(len(loc), 1),
            )
        with torch.no_grad():
            matched = match(gt_xyxy, gt_valid, self.priors_xyxy, self.iou_threshold)  # [B, P], -1 = background
            positive = matched >= 0
            gt_index = matched.clamp(min=0)
            target_labels = torch.gather(gt_labels, 1, gt_index) * positive  # [B, P], 0 = background
            matched_xyxy = torch.gather(gt_xyxy, 1, gt_index[..., None].expand(-1, -1, 4))  # [B, P, 4]

        num_pos = positive.sum(dim=1)  # [B]
        total_pos = num_pos.sum().float()
        scale = 1.0
        if self.normalize_over_processes and dist.is_available() and dist.is_initialized():
            dist.all_reduce(total_pos)  # positives over all processes
            scale = float(dist.get_world_size())  # DDP averages gradients over processes: undo it
        total_pos = total_pos.clamp(min=1) / scale

        loc_target = encode(
            xyxy_to_cxcywh(matched_xyxy[positive]), self.priors_cxcywh.expand_as(loc)[positive], self.variances
        )
        loc_loss = F.smooth_l1_loss(loc[positive], loc_target, reduction="sum")

        ce = F.cross_entropy(conf.reshape(-1, conf.shape[-1]), target_labels.reshape(-1), reduction="none")
        ce = ce.view_as(target_labels)  # [B, P]
        negative = self._hard_negatives(ce.detach(), positive, num_pos)
        conf_loss = ce[positive | negative].sum()
        return {"loc": self.loc_weight * loc_loss / total_pos, "conf": conf_loss / total_pos}

    def _hard_negatives(self, ce: Tensor, positive: Tensor, num_pos: Tensor) -> Tensor:
        """Mask ``Tensor[B, P]`` of the background priors with the largest loss, ratio:1 to the positives."""
        num_priors = ce.shape[1]
        num_neg = torch.clamp(num_pos * self.neg_pos_ratio, max=num_priors - num_pos).long()  # [B]
        candidate_loss = ce.masked_fill(positive, -1.0)  # positives are never negatives
        order = candidate_loss.argsort(dim=1, descending=True)
        rank = order.argsort(dim=1)  # rank of each prior by loss, 0 = hardest
        return rank < num_neg[:, None]
