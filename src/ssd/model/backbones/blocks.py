"""Building blocks shared by the backbones: the extra layers of SSD and SSDLite, and their initialisations."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import Tensor, nn
from torchvision.ops.misc import Conv2dNormActivation

from ...errors import SSDError

NormLayer = Callable[[int], nn.Module]


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


def extras_out_channels(extras: Sequence[Sequence[int]]) -> list[int]:
    return [int(e[1]) for e in extras]


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
