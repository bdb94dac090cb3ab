"""Detectors from torchvision's weights: its COCO ``ssd300_vgg16`` and ``ssdlite320_mobilenet_v3_large``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from .backbone_weights import VGG_CONV5, VGG_CONV6, VGG_CONV7, VGG_FEATURE_CONVS
from .checkpoint import read_state_dict
from .errors import SSDError
from .layout import apply_layout
from .model.ssd import SSD
from .presets import ssd300_vgg16_coco, ssdlite320_mobilenet_v3_large


def _head_key_map(num_maps: int) -> dict[str, str]:
    """torchvision's head prefixes -> ours: the regression head is our ``loc``, the classification head ``conf``."""
    mapping = {}
    for m in range(num_maps):
        mapping[f"head.regression_head.module_list.{m}"] = f"net.head.loc.{m}"
        mapping[f"head.classification_head.module_list.{m}"] = f"net.head.conf.{m}"
    return mapping


def _vgg_key_map(num_maps: int, num_extras: int) -> dict[str, str]:
    """torchvision ``ssd300_vgg16`` state-dict key prefix -> ours (without the ``.weight``/``.bias`` suffix)."""
    mapping = {"backbone.scale_weight": "net.backbone.l2norm.weight"}
    for i in VGG_FEATURE_CONVS:
        mapping[f"backbone.features.{i}"] = f"net.backbone.features.{i}"
    # torchvision's extra.0 = vgg features[23:30] (pool4, conv5_x) followed by fc = (pool5, conv6, relu, conv7, relu)
    for tv_index, ours in VGG_CONV5.items():
        mapping[f"backbone.extra.0.{tv_index - 23}"] = f"net.backbone.conv5_to_7.{ours}"
    mapping["backbone.extra.0.7.1"] = f"net.backbone.conv5_to_7.{VGG_CONV6}"
    mapping["backbone.extra.0.7.3"] = f"net.backbone.conv5_to_7.{VGG_CONV7}"
    for e in range(num_extras):
        mapping[f"backbone.extra.{e + 1}.0"] = f"net.backbone.extras.{e}.0"
        mapping[f"backbone.extra.{e + 1}.2"] = f"net.backbone.extras.{e}.2"
    return {**mapping, **_head_key_map(num_maps)}


def _rename_vgg(state: Mapping[str, Tensor], model: SSD) -> dict[str, Tensor]:
    mapping = _vgg_key_map(len(model.feature_sizes), len(model.config.extras))
    converted = {}
    for key, value in state.items():
        prefix, _, suffix = key.rpartition(".")
        if prefix not in mapping and key not in mapping:
            raise SSDError(f"unexpected key in torchvision state dict: {key}")
        converted[mapping[key] if key in mapping else f"{mapping[prefix]}.{suffix}"] = value
    return converted


def _rename_ssdlite(state: Mapping[str, Tensor], model: SSD) -> dict[str, Tensor]:
    """Our backbone keeps torchvision's module layout, so keys differ in their prefixes only."""
    heads = _head_key_map(len(model.feature_sizes))
    converted = {}
    for key, value in state.items():
        head_prefix = ".".join(key.split(".")[:4])
        if head_prefix in heads:
            converted[heads[head_prefix] + key[len(head_prefix) :]] = value
        elif key.startswith("backbone.features."):
            converted["net." + key] = value
        elif key.startswith("backbone.extra."):
            converted["net.backbone.extras." + key[len("backbone.extra.") :]] = value
        else:
            raise SSDError(f"unexpected key in torchvision state dict: {key}")
    return converted


def _num_classes(state: Mapping[str, Tensor], loc_key: str, conf_key: str) -> int:
    boxes0 = state[loc_key].shape[0] // 4
    return state[conf_key].shape[0] // boxes0


def from_torchvision(source: str | os.PathLike[str] | Mapping[str, Tensor], **overrides: Any) -> SSD:
    """Our SSD with the layout and weights of a torchvision detector; the same detections as torchvision's model.

    ``source`` is the state dict (or a file holding it) of ``torchvision.models.detection.ssd300_vgg16`` or
    ``ssdlite320_mobilenet_v3_large``; the number of classes (and SSDLite's reduced tail) is read from it.
    The model comes in eval mode, in the memory layout that is fastest for inference (``ssd.layout``).
    """
    state = read_state_dict(source)
    if "backbone.scale_weight" in state and "head.classification_head.module_list.0.weight" in state:
        num_classes = _num_classes(
            state, "head.regression_head.module_list.0.weight", "head.classification_head.module_list.0.weight"
        )
        model = SSD(ssd300_vgg16_coco(num_classes=num_classes, **overrides))
        converted = _rename_vgg(state, model)
    elif "backbone.extra.0.0.0.weight" in state and "head.classification_head.module_list.0.1.weight" in state:
        num_classes = _num_classes(
            state, "head.regression_head.module_list.0.1.weight", "head.classification_head.module_list.0.1.weight"
        )
        reduced_tail = state["backbone.extra.0.0.0.weight"].shape[1] == 480  # the full tail ends at 960 channels
        settings = {"num_classes": num_classes, "reduced_tail": reduced_tail, **overrides}
        model = SSD(ssdlite320_mobilenet_v3_large(**settings))
        converted = _rename_ssdlite(state, model)
    else:
        raise SSDError(
            "not a torchvision ssd300_vgg16 or ssdlite320_mobilenet_v3_large state dict "
            "(no backbone.scale_weight or backbone.extra with a classification head)"
        )
    try:
        model.load_state_dict(converted)
    except RuntimeError as exc:
        raise SSDError(f"torchvision weights do not fit: {exc}") from None
    return apply_layout(model.eval(), model.priors.device, training=False)
