"""MobileNetV2 as mmdetection's SSDLite uses it: the last stride-16 block (96 channels) and the final 1x1 conv."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn
from torchvision.models import mobilenet_v2

from .blocks import load_classifier, normal_init, separable_extras
from .mobilenet_v3 import SSDLITE_NORM, scaled_extras


def split_at_stride_32(features: nn.Sequential) -> nn.Sequential:
    """Two stages: everything before the last stride-2 block (stride 16), and from it to the end (stride 32)."""
    c5 = [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)][-1]
    return nn.Sequential(features[:c5], features[c5:])


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 (torchvision's) and SSDLite's depthwise extra layers; ``forward`` returns the maps."""

    norm_layer = SSDLITE_NORM

    def __init__(self, extras: Sequence[Sequence[int]], width: float = 1.0) -> None:
        super().__init__()
        self.classifier_args = dict(width_mult=width, norm_layer=SSDLITE_NORM)
        self.features = split_at_stride_32(mobilenet_v2(**self.classifier_args).features)
        last = self.features[1][-1].out_channels
        sized = scaled_extras(extras, width)
        self.extras = separable_extras(last, sized, SSDLITE_NORM)
        self.out_channels = [self.features[0][-1].out_channels, last] + [e[1] for e in sized]
        normal_init(self, std=0.03)

    def load_imagenet(self, state: Mapping[str, Tensor]) -> int:
        """Copy torchvision's ImageNet ``mobilenet_v2`` weights into the base; the number of tensors."""
        classifier = load_classifier(mobilenet_v2(**self.classifier_args), state, "mobilenet_v2")
        part = split_at_stride_32(classifier.features).state_dict()
        self.features.load_state_dict(part)
        return len(part)

    def forward(self, x: Tensor) -> list[Tensor]:
        sources = []
        for stage in self.features:
            x = stage(x)
            sources.append(x)
        for block in self.extras:
            x = block(x)
            sources.append(x)
        return sources
