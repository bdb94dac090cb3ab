"""ssd-detector: the Single Shot MultiBox Detector (Liu et al., ECCV 2016) in PyTorch."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from .checkpoint import load, save
from .config import ModelConfig
from .engine.predict import Predictor
from .errors import DataError, SSDError
from .interop import from_torchvision, load_vgg16_imagenet, vgg16_from_imagenet
from .metrics import evaluate
from .model.ssd import SSD, SSDNet
from .presets import PRESETS, model_config

__version__ = "0.1.0"


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


__all__ = [
    "SSD",
    "SSDNet",
    "ModelConfig",
    "Predictor",
    "evaluate",
    "PRESETS",
    "DataError",
    "SSDError",
    "build_model",
    "from_torchvision",
    "load",
    "save",
    "vgg16_from_imagenet",
    "load_vgg16_imagenet",
]
