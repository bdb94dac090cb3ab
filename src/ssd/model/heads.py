"""Multibox heads: one 3x3 conv per source map for box offsets (4k) and one for class scores (C k)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


def _flatten(outputs: Tensor, values_per_box: int) -> Tensor:
    """[B, k*V, H, W] -> [B, H*W*k, V]: location-major, matching the order of the default boxes."""
    batch = outputs.shape[0]
    return outputs.permute(0, 2, 3, 1).reshape(batch, -1, values_per_box)


class MultiboxHead(nn.Module):
    """Predicts, for every default box, 4 offsets and ``num_classes`` scores (background at index 0).

    ``background_prior``: start every box at this softmax probability of background (None: zero biases).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        boxes_per_location: Sequence[int],
        num_classes: int,
        background_prior: float | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.background_prior = background_prior
        self.loc = nn.ModuleList(
            nn.Conv2d(c, k * 4, kernel_size=3, padding=1) for c, k in zip(in_channels, boxes_per_location)
        )
        self.conf = nn.ModuleList(
            nn.Conv2d(c, k * num_classes, kernel_size=3, padding=1) for c, k in zip(in_channels, boxes_per_location)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        if self.background_prior is not None:
            # softmax([b, 0, ..., 0])[0] = p  <=>  b = log(p (C - 1) / (1 - p))
            p, others = self.background_prior, self.num_classes - 1
            for conv in self.conf:
                conv.bias.data.view(-1, self.num_classes)[:, 0] = math.log(p * others / (1 - p))

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """``loc: Tensor[B, P, 4]`` and ``conf: Tensor[B, P, C]`` for feature maps in source order."""
        loc = [_flatten(layer(f), 4) for layer, f in zip(self.loc, features)]
        conf = [_flatten(layer(f), self.num_classes) for layer, f in zip(self.conf, features)]
        return torch.cat(loc, dim=1), torch.cat(conf, dim=1)
