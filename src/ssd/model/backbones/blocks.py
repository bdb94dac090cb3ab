"""Building blocks shared by the backbones: the extra layers of SSD and SSDLite, and their initialisations."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import Tensor, nn
from torchvision.ops.misc import Conv2dNormActivation

from ...errors import SSDError

NormLayer = Callable[[int], nn.Module]
SSDLITE_INIT_STD = 0.03  # SSDLite's normal(0, 0.03) for its convolutions (torchvision, mmdetection's backbone)


def conv_block(in_ch: int, out_ch: int, batch_norm: bool, **conv_args: int) -> list[nn.Module]:
    """Conv (no bias before batch norm), optional BatchNorm, ReLU: the layers of VGG and of SSD's extra layers."""
    conv = nn.Conv2d(in_ch, out_ch, bias=not batch_norm, **conv_args)
    return [conv, nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)] if batch_norm else [conv, nn.ReLU(inplace=True)]


def conv_extras(in_ch: int, extras: Sequence[Sequence[int]], batch_norm: bool) -> nn.ModuleList:
    """SSD's extra layers: per ``[mid, out, kernel, stride, padding]`` a 1x1 conv to ``mid``, then a kxk to ``out``."""
    blocks = []
    for mid, out, kernel, stride, padding in extras:
        blocks.append(
            nn.Sequential(
                *conv_block(in_ch, mid, batch_norm, kernel_size=1),
                *conv_block(mid, out, batch_norm, kernel_size=kernel, stride=stride, padding=padding),
            )
        )
        in_ch = out
    return nn.ModuleList(blocks)


def separable_extras(in_ch: int, extras: Sequence[Sequence[int]], norm_layer: NormLayer) -> nn.ModuleList:
    """SSDLite's extra layers: per ``[mid, out, kernel, stride, padding]`` a 1x1 conv to ``mid``, a depthwise kxk,
    then a 1x1 conv to ``out``, each followed by batch norm and ReLU6."""
    blocks = []
    for mid, out, kernel, stride, padding in extras:
        norm_act = dict(norm_layer=norm_layer, activation_layer=nn.ReLU6)
        blocks.append(
            nn.Sequential(
                Conv2dNormActivation(in_ch, mid, kernel_size=1, **norm_act),
                Conv2dNormActivation(
                    mid, mid, kernel_size=kernel, stride=stride, padding=padding, groups=mid, **norm_act
                ),
                Conv2dNormActivation(mid, out, kernel_size=1, **norm_act),
            )
        )
        in_ch = out
    return nn.ModuleList(blocks)


def normal_init(module: nn.Module, std: float) -> None:
    """Every conv weight from normal(0, std) and its bias zero (SSDLite's initialisation)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def xavier_init(module: nn.Module) -> None:
    """Every conv weight Xavier-uniform and its bias zero (the original SSD's extra layers and heads)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def load_classifier(classifier: nn.Module, state: Mapping[str, Tensor], name: str) -> nn.Module:
    """``classifier`` (a torchvision ImageNet model) with ``state`` loaded strictly; SSDError on any misfit."""
    try:
        result = classifier.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # torch lists every misfit; the first two say enough
        first = "; ".join(line.strip() for line in str(exc).splitlines()[1:3])
        raise SSDError(f"not torchvision {name} ImageNet weights of this shape: {first}") from None
    missing, unexpected = result.missing_keys, result.unexpected_keys
    if missing or unexpected:
        raise SSDError(
            f"not torchvision {name} ImageNet weights of this shape: missing {missing[:4]}, unexpected {unexpected[:4]}"
        )
    return classifier


def last_stride2_block(features: nn.Sequential) -> int:
    """Index of the last block that halves the map in a torchvision MobileNet's ``features`` (its C4 or C5)."""
    return [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)][-1]


class StagedMobileNet(nn.Module):
    """A torchvision MobileNet cut into two stages (each ends at a source map) and SSDLite's extra layers, with
    ``norm_layer`` everywhere and every convolution from normal(0, 0.03).

    Subclasses give ``make_classifier`` (the torchvision model built from ``classifier_args``), ``split`` (its
    ``features`` cut into the two stages) and ``classifier_name``.
    """

    classifier_name = ""

    def __init__(
        self, classifier_args: dict, extras: Sequence[Sequence[int]], norm_layer: NormLayer, min_depth: int = 16
    ) -> None:
        super().__init__()
        self.classifier_args = classifier_args
        self.norm_layer = norm_layer
        self.features = self.split(self.make_classifier().features)
        last = self.features[1][-1].out_channels
        width = classifier_args.get("width_mult", 1.0)
        sized = [
            [max(min_depth, int(mid * width)), max(min_depth, int(out * width)), *rest] for mid, out, *rest in extras
        ]
        self.extras = separable_extras(last, sized, norm_layer)
        self.out_channels = [self.features[0][-1].out_channels, last] + [row[1] for row in sized]
        normal_init(self, SSDLITE_INIT_STD)

    def make_classifier(self) -> nn.Module:
        raise NotImplementedError

    @staticmethod
    def split(features: nn.Sequential) -> nn.Sequential:
        raise NotImplementedError

    def load_imagenet(self, state: Mapping[str, Tensor]) -> int:
        """Copy torchvision's ImageNet weights of the classifier into the stages; the number of tensors."""
        classifier = load_classifier(self.make_classifier(), state, self.classifier_name)
        part = self.split(classifier.features).state_dict()
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
