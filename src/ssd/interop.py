"""Weights from torchvision: its COCO ``ssd300_vgg16`` and its ImageNet VGG-16 (fc6/fc7 decimated as in the paper)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .checkpoint import read_checkpoint
from .errors import SSDError
from .model.ssd import SSD
from .presets import ssd300_vgg16_coco

# torchvision vgg16().features index -> our VGG16Base key prefix, conv1_1 .. conv4_3 keep their indices
_FEATURE_CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21]
# conv5_1..conv5_3 sit at torchvision vgg16().features 24, 26, 28; in our conv5_to_7 at 1, 3, 5 (after pool4)
_CONV5 = {24: 1, 26: 3, 28: 5}
_CONV6, _CONV7 = 8, 10  # our conv5_to_7 indices of conv6 and conv7


def _read_state_dict(source: str | os.PathLike[str] | Mapping[str, Tensor]) -> Mapping[str, Tensor]:
    if isinstance(source, Mapping):
        return source
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SSDError(f"{source}: weights file not found") from None
    except Exception as exc:
        raise SSDError(f"{source}: cannot read weights ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "model" in state and "config" in state:
        state = read_checkpoint(source)["model"]
    return state


def vgg16_from_imagenet(source: str | os.PathLike[str] | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our base's state dict (keys of ``VGG16Base``, no ``l2norm``) from torchvision's ImageNet ``vgg16`` weights.

    conv1_1..conv5_3 are copied; fc6 [4096, 25088] and fc7 [4096, 4096] are subsampled into conv6 and conv7
    as in the paper: every 4th output filter, fc6's 7x7 taps every 3rd (dilation 6 then covers the same field),
    fc7 every 4th input too.
    """
    state = _read_state_dict(source)
    needed = [f"features.{i}.weight" for i in _FEATURE_CONVS + list(_CONV5)] + [
        "classifier.0.weight",
        "classifier.3.weight",
    ]
    missing = [k for k in needed if k not in state]
    if missing:
        raise SSDError(f"not torchvision VGG-16 ImageNet weights: missing {', '.join(missing[:4])}")
    out: dict[str, Tensor] = {}
    for i in _FEATURE_CONVS:
        out[f"features.{i}.weight"] = state[f"features.{i}.weight"]
        out[f"features.{i}.bias"] = state[f"features.{i}.bias"]
    for tv_index, ours in _CONV5.items():
        out[f"conv5_to_7.{ours}.weight"] = state[f"features.{tv_index}.weight"]
        out[f"conv5_to_7.{ours}.bias"] = state[f"features.{tv_index}.bias"]
    fc6_w = state["classifier.0.weight"].view(4096, 512, 7, 7)
    out[f"conv5_to_7.{_CONV6}.weight"] = fc6_w[::4, :, ::3, ::3].contiguous()  # [1024, 512, 3, 3]
    out[f"conv5_to_7.{_CONV6}.bias"] = state["classifier.0.bias"][::4].contiguous()
    fc7_w = state["classifier.3.weight"]
    out[f"conv5_to_7.{_CONV7}.weight"] = fc7_w[::4, ::4].contiguous().view(1024, 1024, 1, 1)
    out[f"conv5_to_7.{_CONV7}.bias"] = state["classifier.3.bias"][::4].contiguous()
    return out


def load_vgg16_imagenet(model: SSD, source: str | os.PathLike[str] | Mapping[str, Tensor]) -> SSD:
    """Initialise ``model``'s base from ImageNet VGG-16 weights; the rest keeps its initialisation."""
    cfg = model.config
    if cfg.width != 1.0 or cfg.batch_norm:
        raise SSDError("ImageNet VGG-16 weights fit only width=1.0 without batch_norm")
    converted = vgg16_from_imagenet(source)
    result = model.net.backbone.load_state_dict(converted, strict=False)
    expected_missing = {"l2norm.weight"} | {k for k in model.net.backbone.state_dict() if k.startswith("extras.")}
    if set(result.missing_keys) - expected_missing or result.unexpected_keys:
        raise SSDError(f"VGG-16 weights do not fit: missing {result.missing_keys}, unexpected {result.unexpected_keys}")
    return model


def _torchvision_key_map(num_maps: int, num_extras: int) -> dict[str, str]:
    """torchvision ``SSD`` state-dict key -> our key (without the ``.weight``/``.bias`` suffix)."""
    mapping = {"backbone.scale_weight": "net.backbone.l2norm.weight"}
    for i in _FEATURE_CONVS:
        mapping[f"backbone.features.{i}"] = f"net.backbone.features.{i}"
    # torchvision's extra.0 = vgg features[23:30] (pool4, conv5_x) followed by fc = (pool5, conv6, relu, conv7, relu)
    for tv_index, ours in _CONV5.items():
        mapping[f"backbone.extra.0.{tv_index - 23}"] = f"net.backbone.conv5_to_7.{ours}"
    mapping["backbone.extra.0.7.1"] = f"net.backbone.conv5_to_7.{_CONV6}"
    mapping["backbone.extra.0.7.3"] = f"net.backbone.conv5_to_7.{_CONV7}"
    for e in range(num_extras):
        mapping[f"backbone.extra.{e + 1}.0"] = f"net.backbone.extras.{e}.0"
        mapping[f"backbone.extra.{e + 1}.2"] = f"net.backbone.extras.{e}.2"
    for m in range(num_maps):
        mapping[f"head.regression_head.module_list.{m}"] = f"net.head.loc.{m}"
        mapping[f"head.classification_head.module_list.{m}"] = f"net.head.conf.{m}"
    return mapping


def from_torchvision(source: str | os.PathLike[str] | Mapping[str, Tensor], **overrides: Any) -> SSD:
    """Our SSD with torchvision's ``ssd300_vgg16`` layout and weights; same detections as torchvision's model.

    ``source`` is the state dict (or a file holding it) of ``torchvision.models.detection.ssd300_vgg16``;
    the number of classes is read from its classification head.
    """
    state = _read_state_dict(source)
    if "head.classification_head.module_list.0.weight" not in state or "backbone.scale_weight" not in state:
        raise SSDError("not a torchvision ssd300_vgg16 state dict (no backbone.scale_weight / classification head)")
    boxes0 = state["head.regression_head.module_list.0.weight"].shape[0] // 4
    num_classes = state["head.classification_head.module_list.0.weight"].shape[0] // boxes0
    model = SSD(ssd300_vgg16_coco(num_classes=num_classes, **overrides))
    mapping = _torchvision_key_map(len(model.feature_sizes), len(model.config.extras))
    converted = {}
    for key, value in state.items():
        prefix, _, suffix = key.rpartition(".")
        if prefix not in mapping and key not in mapping:
            raise SSDError(f"unexpected key in torchvision state dict: {key}")
        converted[mapping[key] if key in mapping else f"{mapping[prefix]}.{suffix}"] = value
    model.load_state_dict(converted)
    return model.eval()
