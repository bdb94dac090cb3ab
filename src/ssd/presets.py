"""Named model presets: the paper's SSD300 and SSD512, torchvision's COCO SSD300 and SSDLite, mmdetection's
SSDLite-MobileNetV2 and NVIDIA's SSD300-ResNet50."""

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


def linear_scales(smallest: float, largest: float, num_maps: int) -> list[float]:
    """The paper's scales, evenly spaced from ``smallest`` to ``largest``, plus 1.0 for the last map's second
    square (torchvision's ``DefaultBoxGenerator``)."""
    return [smallest + (largest - smallest) * k / (num_maps - 1.0) for k in range(num_maps)] + [1.0]


# SSDLite's four extra blocks after the stride-32 map: to 512, 256, 256 and 128 channels, each at stride 2
SSDLITE_EXTRAS = [[256, 512, 3, 2, 1], [128, 256, 3, 2, 1], [128, 256, 3, 2, 1], [64, 128, 3, 2, 1]]


def ssdlite320_mobilenet_v3_large(**overrides: Any) -> ModelConfig:
    """torchvision's ``ssdlite320_mobilenet_v3_large`` (COCO, 91 labels): 6 maps 20/10/5/3/2/1, 3234 boxes."""
    values: dict[str, Any] = dict(
        name="ssdlite320_mobilenet_v3_large",
        num_classes=91,
        input_size=320,
        backbone="mobilenet_v3_large",
        head="separable",
        reduced_tail=True,
        extras=SSDLITE_EXTRAS,
        min_sizes=None,
        max_sizes=None,
        scales=linear_scales(0.2, 0.95, 6),
        steps=None,
        aspect_ratios=[[2, 3]] * 6,
        clip=True,
        image_mean=[127.5] * 3,
        image_std=[127.5] * 3,
        score_thresh=0.001,
        nms_thresh=0.55,
        topk_candidates=300,
        detections_per_img=300,
    )
    return ModelConfig(**{**values, **overrides})


def ssdlite320_mobilenet_v2(**overrides: Any) -> ModelConfig:
    """mmdetection's SSDLite with MobileNetV2 (COCO, 81 labels): maps 20/10/5/3/2/1 at strides 16 ... 320."""
    values: dict[str, Any] = dict(
        name="ssdlite320_mobilenet_v2",
        num_classes=81,
        input_size=320,
        backbone="mobilenet_v2",
        head="separable",
        extras=SSDLITE_EXTRAS,
        min_sizes=[48, 100, 150, 202, 253, 304],
        max_sizes=[100, 150, 202, 253, 304, 320],
        steps=[16, 32, 64, 107, 160, 320],
        aspect_ratios=[[2, 3]] * 6,
        image_mean=[123.675, 116.28, 103.53],
        image_std=[58.395, 57.12, 57.375],
        head_init_std=0.001,
        score_thresh=0.02,
        nms_thresh=0.45,
        detections_per_img=200,
    )
    return ModelConfig(**{**values, **overrides})


def ssd300_resnet50(**overrides: Any) -> ModelConfig:
    """NVIDIA's SSD300 v1.1 (COCO, 81 labels): ResNet-50 to layer3, 6 maps 38/19/10/5/3/1, 8732 boxes."""
    values: dict[str, Any] = dict(
        name="ssd300_resnet50",
        num_classes=81,
        backbone="resnet50",
        extras=[
            [256, 512, 3, 2, 1],
            [256, 512, 3, 2, 1],
            [128, 256, 3, 2, 1],
            [128, 256, 3, 1, 0],
            [128, 256, 3, 1, 0],
        ],
        min_sizes=[21, 45, 99, 153, 207, 261],
        max_sizes=[45, 99, 153, 207, 261, 315],
        clip=True,
        image_mean=[0.485 * 255, 0.456 * 255, 0.406 * 255],
        image_std=[0.229 * 255, 0.224 * 255, 0.225 * 255],
        score_thresh=0.05,
        nms_thresh=0.5,
    )
    return ModelConfig(**{**values, **overrides})


PRESETS: dict[str, Callable[..., ModelConfig]] = {
    "ssd300_vgg16": ssd300_vgg16,
    "ssd512_vgg16": ssd512_vgg16,
    "ssd300_vgg16_coco": ssd300_vgg16_coco,
    "ssdlite320_mobilenet_v3_large": ssdlite320_mobilenet_v3_large,
    "ssdlite320_mobilenet_v2": ssdlite320_mobilenet_v2,
    "ssd300_resnet50": ssd300_resnet50,
}


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """The ModelConfig of preset ``name`` with ``overrides`` applied."""
    if name not in PRESETS:
        raise SSDError(f"unknown model preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
    try:
        return PRESETS[name](**overrides)
    except TypeError as exc:
        raise SSDError(f"model preset {name}: {exc}") from None
