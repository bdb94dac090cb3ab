"""MobileNetV3-Large cut as torchvision's SSDLite cuts it: maps at the C4 expansion (stride 16) and the end (32)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from torch import nn
from torchvision.models import mobilenet_v3_large

from .blocks import StagedMobileNet, last_stride2_block

# SSDLite's batch norm (TensorFlow's defaults), in the backbone, the extra layers and the heads
SSDLITE_NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)


class MobileNetV3Backbone(StagedMobileNet):
    """MobileNetV3-Large (torchvision's) and SSDLite's depthwise extra layers; ``forward`` returns the maps.

    ``reduced_tail`` halves the channels of the C4 and C5 blocks, as torchvision does for SSDLite trained
    from scratch; ImageNet weights need the full tail. ``width`` scales the base and the extra layers.
    """

    classifier_name = "mobilenet_v3_large"

    def __init__(self, extras: Sequence[Sequence[int]], width: float = 1.0, reduced_tail: bool = True) -> None:
        args = dict(width_mult=width, reduced_tail=reduced_tail, norm_layer=SSDLITE_NORM)
        super().__init__(args, extras, SSDLITE_NORM)

    def make_classifier(self) -> nn.Module:
        return mobilenet_v3_large(**self.classifier_args)

    @staticmethod
    def split(features: nn.Sequential) -> nn.Sequential:
        """Up to the 1x1 expansion of the C4 block (the last stride-2 block), and the rest."""
        c4 = last_stride2_block(features)
        return nn.Sequential(
            nn.Sequential(*features[:c4], features[c4].block[0]),
            nn.Sequential(features[c4].block[1:], *features[c4 + 1 :]),
        )
