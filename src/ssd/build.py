"""``build_model``: an SSD from a preset name, optionally with ImageNet VGG-16 weights in its base."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from .interop import load_vgg16_imagenet
from .model.ssd import SSD
from .presets import model_config


def build_model(
    name: str = "ssd300_vgg16",
    num_classes: int | None = None,
    backbone_weights: str | os.PathLike[str] | Mapping[str, Tensor] | None = None,
    **overrides: Any,
) -> SSD:
    """An SSD from preset ``name`` (see ``ssd.PRESETS``) with ``num_classes`` including background.

    ``backbone_weights``: torchvision's ImageNet VGG-16 state dict or file, converted as in the paper.
    Any ``ModelConfig`` field can be overridden, e.g. ``input_size=512`` or ``score_thresh=0.3``.
    """
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    model = SSD(model_config(name, **overrides))
    if backbone_weights is not None:
        load_vgg16_imagenet(model, backbone_weights)
    return model
