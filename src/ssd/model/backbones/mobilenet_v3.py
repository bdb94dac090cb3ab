"""MobileNetV3-Large cut as torchvision's SSDLite cuts it: maps at the C4 expansion (stride 16) and the end (32)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

from torch import Tensor, nn
from torchvision.models import mobilenet_v3_large

from .blocks import load_classifier, normal_init, separable_extras

# SSDLite's batch norm (TensorFlow's defaults), in the backbone, the extra layers and the heads
SSDLITE_NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)


def split_at_c4_expansion(features: nn.Sequential) -> nn.Sequential:
    """Two stages: up to the 1x1 expansion of the C4 block (the last stride-2 block), and the rest."""
    c4 = [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)][-1]
    return nn.Sequential(
        nn.Sequential(*features[:c4], features[c4].block[0]),
        nn.Sequential(features[c4].block[1:], *features[c4 + 1 :]),
    )


def scaled_extras(extras: Sequence[Sequence[int]], width: float) -> list[list[int]]:
    """Extra-layer channels times ``width``, at least 16 (torchvision's ``min_depth``)."""
    return [[max(16, int(mid * width)), max(16, int(out * width)), *layout] for mid, out, *layout in extras]


class MobileNetV3Backbone(nn.Module):
    """MobileNetV3-Large (torchvision's) and SSDLite's depthwise extra layers; ``forward`` returns the maps.

    ``reduced_tail`` halves the channels of the C4 and C5 blocks, as torchvision does for SSDLite trained
    from scratch; ImageNet weights need the full tail. Convolutions start from normal(0, 0.03).
    """

    norm_layer = SSDLITE_NORM

    def __init__(self, extras: Sequence[Sequence[int]], width: float = 1.0, reduced_tail: bool = True) -> None:
        super().__init__()
        self.classifier_args = dict(width_mult=width, reduced_tail=reduced_tail, norm_layer=SSDLITE_NORM)
        self.features = split_at_c4_expansion(mobilenet_v3_large(**self.classifier_args).features)
        last = self.features[1][-1].out_channels
        sized = scaled_extras(extras, width)
        self.extras = separable_extras(last, sized, SSDLITE_NORM)
        self.out_channels = [self.features[0][-1].out_channels, last] + [e[1] for e in sized]
        normal_init(self, std=0.03)

    def load_imagenet(self, state: Mapping[str, Tensor]) -> int:
        """Copy torchvision's ImageNet ``mobilenet_v3_large`` weights into the base; the number of tensors."""
        classifier = load_classifier(mobilenet_v3_large(**self.classifier_args), state, "mobilenet_v3_large")
        part = split_at_c4_expansion(classifier.features).state_dict()
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
