"""Multibox heads: per source map, one predictor of box offsets (4k) and one of class scores (C k).

A predictor is the paper's 3x3 convolution or SSDLite's separable one (depthwise 3x3 + batch norm + ReLU6,
then a 1x1 convolution).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torchvision.ops.misc import Conv2dNormActivation

from .backbones.blocks import SSDLITE_INIT_STD, normal_init, xavier_init


def _flatten(outputs: Tensor, values_per_box: int) -> Tensor:
    """[B, k*V, H, W] -> [B, H*W*k, V]: location-major, matching the order of the default boxes."""
    batch = outputs.shape[0]
    return outputs.permute(0, 2, 3, 1).reshape(batch, -1, values_per_box)


class MultiboxHead(nn.Module):
    """Predicts, for every default box, 4 offsets and ``num_classes`` scores (background at index 0).

    ``background_prior``: start every box at this softmax probability of background (None: zero biases).
    ``separable``: SSDLite's predictors, with ``norm_layer`` as their batch norm.
    ``init_std``: conv weights from normal(0, init_std); None: Xavier-uniform for the paper's convolutions,
    SSDLite's normal(0, 0.03) for separable ones.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        boxes_per_location: Sequence[int],
        num_classes: int,
        background_prior: float | None = None,
        separable: bool = False,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        init_std: float | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.background_prior = background_prior
        self.separable = separable
        self.init_std = SSDLITE_INIT_STD if init_std is None and separable else init_std

        def predictor(channels: int, outputs: int) -> nn.Module:
            if not separable:
                return nn.Conv2d(channels, outputs, kernel_size=3, padding=1)
            depthwise = Conv2dNormActivation(
                channels, channels, kernel_size=3, groups=channels, norm_layer=norm_layer, activation_layer=nn.ReLU6
            )
            return nn.Sequential(depthwise, nn.Conv2d(channels, outputs, kernel_size=1))

        self.loc = nn.ModuleList(predictor(c, k * 4) for c, k in zip(in_channels, boxes_per_location))
        self.conf = nn.ModuleList(predictor(c, k * num_classes) for c, k in zip(in_channels, boxes_per_location))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.init_std is None:
            xavier_init(self)
        else:
            normal_init(self, self.init_std)
        if self.background_prior is not None:
            # softmax([b, 0, ..., 0])[0] = p  <=>  b = log(p (C - 1) / (1 - p))
            p, others = self.background_prior, self.num_classes - 1
            for predictor in self.conf:
                last = predictor[-1] if self.separable else predictor
                last.bias.data.view(-1, self.num_classes)[:, 0] = math.log(p * others / (1 - p))

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """``loc: Tensor[B, P, 4]`` and ``conf: Tensor[B, P, C]`` for feature maps in source order."""
        loc = [_flatten(layer(f), 4) for layer, f in zip(self.loc, features)]
        conf = [_flatten(layer(f), self.num_classes) for layer, f in zip(self.conf, features)]
        return torch.cat(loc, dim=1), torch.cat(conf, dim=1)
