"""Named model presets: the paper's SSD300 and SSD512 and torchvision's COCO layout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .config import ModelConfig
from .errors import SSDError


def ssd300_vgg16(**overrides: Any) -> ModelConfig:
    """The paper's SSD300 (VOC): 6 maps 38/19/10/5/3/1, 8732 default boxes."""
    return ModelConfig(**{"name": "ssd300_vgg16", **overrides})


def ssd512_vgg16(**overrides: Any) -> ModelConfig:
    """The paper's SSD512 (VOC): 7 maps 64/32/16/8/4/2/1, 24564 default boxes."""
    values: dict[str, Any] = dict(
        name="ssd512_vgg16",
        input_size=512,
        extras=[
            [256, 512, 3, 2, 1],
            [128, 256, 3, 2, 1],
            [128, 256, 3, 2, 1],
            [128, 256, 3, 2, 1],
            [128, 256, 4, 1, 1],
        ],
        min_sizes=[35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8],
        max_sizes=[76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6],
        steps=[8, 16, 32, 64, 128, 256, 512],
        aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]],
    )
    return ModelConfig(**{**values, **overrides})


def ssd300_vgg16_coco(**overrides: Any) -> ModelConfig:
    """torchvision's ``ssd300_vgg16`` layout (COCO, 91 labels): its scales, clipping and mean/std."""
    values: dict[str, Any] = dict(
        name="ssd300_vgg16_coco",
        num_classes=91,
        min_sizes=None,
        max_sizes=None,
        scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
        clip=True,
        image_mean=[0.48235 * 255, 0.45882 * 255, 0.40784 * 255],
        image_std=[1.0, 1.0, 1.0],
    )
    return ModelConfig(**{**values, **overrides})


PRESETS: dict[str, Callable[..., ModelConfig]] = {
    "ssd300_vgg16": ssd300_vgg16,
    "ssd512_vgg16": ssd512_vgg16,
    "ssd300_vgg16_coco": ssd300_vgg16_coco,
}


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """The ModelConfig of preset ``name`` with ``overrides`` applied."""
    if name not in PRESETS:
        raise SSDError(f"unknown model preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
    try:
        return PRESETS[name](**overrides)
    except TypeError as exc:
        raise SSDError(f"model preset {name}: {exc}") from None
