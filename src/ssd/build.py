"""``build_model``: an SSD from a preset name, optionally with torchvision's ImageNet weights in its base."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from .backbone_weights import load_backbone_weights
from .layout import apply_layout
from .model.ssd import SSD
from .presets import model_config


def build_model(
    name: str = "ssd300_vgg16",
    num_classes: int | None = None,
    backbone_weights: str | os.PathLike[str] | Mapping[str, Tensor] | None = None,
    **overrides: Any,
) -> SSD:
    """An SSD from preset ``name`` (see ``ssd.PRESETS``) with ``num_classes`` including background.

    ``backbone_weights``: torchvision's ImageNet state dict or file of the backbone (``vgg16``, converted as in
    the paper, ``mobilenet_v3_large``, ``mobilenet_v2`` or ``resnet50``). With them MobileNetV3 keeps its full
    tail, as torchvision's SSDLite does, unless ``reduced_tail`` is given.
    Any ``ModelConfig`` field can be overridden, e.g. ``input_size=512`` or ``score_thresh=0.3``.
    The model is on the CPU, in train mode and in the memory layout that is fastest for training (``ssd.layout``).
    """
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    if backbone_weights is not None:
        overrides.setdefault("reduced_tail", False)
    model = SSD(model_config(name, **overrides))
    if backbone_weights is not None:
        load_backbone_weights(model, backbone_weights)
    return apply_layout(model, model.priors.device, training=True)
