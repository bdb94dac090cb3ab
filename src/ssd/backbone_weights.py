"""ImageNet weights for the backbones, from torchvision's files: VGG-16 (fc6/fc7 decimated as in the paper),
MobileNetV3-Large, MobileNetV2 and ResNet-50 (copied layer by layer). Nothing is downloaded."""

from __future__ import annotations

import os
from collections.abc import Mapping

from torch import Tensor

from .checkpoint import read_state_dict
from .errors import SSDError
from .model.ssd import SSD

# torchvision vgg16().features index -> our VGG16Base key prefix, conv1_1 .. conv4_3 keep their indices
VGG_FEATURE_CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21]
# conv5_1..conv5_3 sit at torchvision vgg16().features 24, 26, 28; in our conv5_to_7 at 1, 3, 5 (after pool4)
VGG_CONV5 = {24: 1, 26: 3, 28: 5}
VGG_CONV6, VGG_CONV7 = 8, 10  # our conv5_to_7 indices of conv6 and conv7


def vgg16_from_imagenet(source: str | os.PathLike[str] | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our base's state dict (keys of ``VGG16Base``, no ``l2norm``) from torchvision's ImageNet ``vgg16`` weights.

    conv1_1..conv5_3 are copied; fc6 [4096, 25088] and fc7 [4096, 4096] are subsampled into conv6 and conv7
    as in the paper: every 4th output filter, fc6's 7x7 taps every 3rd (dilation 6 then covers the same field),
    fc7 every 4th input too.
    """
    state = read_state_dict(source)
    needed = [f"features.{i}.weight" for i in VGG_FEATURE_CONVS + list(VGG_CONV5)] + [
        "classifier.0.weight",
        "classifier.3.weight",
    ]
    missing = [k for k in needed if k not in state]
    if missing:
        raise SSDError(f"not torchvision VGG-16 ImageNet weights: missing {', '.join(missing[:4])}")
    out: dict[str, Tensor] = {}
    for i in VGG_FEATURE_CONVS:
        out[f"features.{i}.weight"] = state[f"features.{i}.weight"]
        out[f"features.{i}.bias"] = state[f"features.{i}.bias"]
    for tv_index, ours in VGG_CONV5.items():
        out[f"conv5_to_7.{ours}.weight"] = state[f"features.{tv_index}.weight"]
        out[f"conv5_to_7.{ours}.bias"] = state[f"features.{tv_index}.bias"]
    fc6_w = state["classifier.0.weight"].view(4096, 512, 7, 7)
    out[f"conv5_to_7.{VGG_CONV6}.weight"] = fc6_w[::4, :, ::3, ::3].contiguous()  # [1024, 512, 3, 3]
    out[f"conv5_to_7.{VGG_CONV6}.bias"] = state["classifier.0.bias"][::4].contiguous()
    fc7_w = state["classifier.3.weight"]
    out[f"conv5_to_7.{VGG_CONV7}.weight"] = fc7_w[::4, ::4].contiguous().view(1024, 1024, 1, 1)
    out[f"conv5_to_7.{VGG_CONV7}.bias"] = state["classifier.3.bias"][::4].contiguous()
    return out


def load_vgg16_imagenet(model: SSD, source: str | os.PathLike[str] | Mapping[str, Tensor]) -> SSD:
    """Initialise ``model``'s VGG-16 base from ImageNet weights; the rest keeps its initialisation."""
    cfg = model.config
    if cfg.width != 1.0 or cfg.batch_norm:
        raise SSDError("ImageNet VGG-16 weights fit only width=1.0 without batch_norm")
    converted = vgg16_from_imagenet(source)
    result = model.net.backbone.load_state_dict(converted, strict=False)
    expected_missing = {"l2norm.weight"} | {k for k in model.net.backbone.state_dict() if k.startswith("extras.")}
    if set(result.missing_keys) - expected_missing or result.unexpected_keys:
        raise SSDError(f"VGG-16 weights do not fit: missing {result.missing_keys}, unexpected {result.unexpected_keys}")
    return model


def load_backbone_weights(model: SSD, source: str | os.PathLike[str] | Mapping[str, Tensor]) -> SSD:
    """Initialise ``model``'s base from torchvision's ImageNet classifier of its backbone (a state dict or file)."""
    state = read_state_dict(source)
    try:
        if model.config.backbone == "vgg16":
            load_vgg16_imagenet(model, state)
        else:
            model.net.backbone.load_imagenet(state)
    except SSDError as exc:
        if model.config.reduced_tail:
            exc = SSDError(f"{exc} (ImageNet weights need the full tail: reduced_tail=False)")
        raise SSDError(f"{source}: {exc}" if not isinstance(source, Mapping) else str(exc)) from None
    return model
