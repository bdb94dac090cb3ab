"""MobileNetV2 as mmdetection's SSDLite uses it: the last stride-16 block (96 channels) and the final 1x1 conv."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from torchvision.models import mobilenet_v2

from .blocks import StagedMobileNet, last_stride2_block
from .mobilenet_v3 import SSDLITE_NORM


class MobileNetV2Backbone(StagedMobileNet):
    """MobileNetV2 (torchvision's) and SSDLite's depthwise extra layers; ``forward`` returns the maps.

    ``width`` scales the base and the extra layers.
    """

    classifier_name = "mobilenet_v2"

    def __init__(self, extras: Sequence[Sequence[int]], width: float = 1.0) -> None:
        super().__init__(dict(width_mult=width, norm_layer=SSDLITE_NORM), extras, SSDLITE_NORM)

    def make_classifier(self) -> nn.Module:
        return mobilenet_v2(**self.classifier_args)

    @staticmethod
    def split(features: nn.Sequential) -> nn.Sequential:
        """Everything before the last stride-2 block (stride 16), and from it to the end (stride 32)."""
        c5 = last_stride2_block(features)
        return nn.Sequential(features[:c5], features[c5:])
