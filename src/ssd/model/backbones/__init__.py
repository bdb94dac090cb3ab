"""Backbones: each turns a batch of normalised images ``Tensor[B, 3, S, S]`` into the list of source feature maps.

Every backbone has ``out_channels`` (one per map, derived from its layers), ``norm_layer`` (the batch norm its
SSDLite heads use) and its own extra layers, built from ``extras`` rows ``[mid, out, kernel, stride, padding]``.
"""

from __future__ import annotations

from torch import nn

from ...config import ModelConfig
from .mobilenet_v2 import MobileNetV2Backbone
from .mobilenet_v3 import MobileNetV3Backbone
from .resnet import ResNet50Backbone
from .vgg import VGG16Base


def build_backbone(config: ModelConfig) -> nn.Module:
    """The backbone ``config.backbone`` names, with its extra layers."""
    if config.backbone == "vgg16":
        return VGG16Base(config.extras, config.width, config.batch_norm, config.l2norm_scale)
    if config.backbone == "mobilenet_v3_large":
        return MobileNetV3Backbone(config.extras, config.width, config.reduced_tail)
    if config.backbone == "mobilenet_v2":
        return MobileNetV2Backbone(config.extras, config.width)
    return ResNet50Backbone(config.extras)
