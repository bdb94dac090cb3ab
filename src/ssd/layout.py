"""The memory layout a model runs in: channels-last where PyTorch's convolutions (oneDNN, cuDNN) are faster in it.

The rule rests on ``benchmarks/bench_presets.py`` (figures in ``benchmarks/results.md``): channels-last is faster
for inference on every CPU measured and for training on CUDA and AVX-512 CPUs; on AVX2 CPUs it trains the
MobileNets and ResNet-50 faster too, but VGG-16 (1.7 to 2 times slower there).
"""

from __future__ import annotations

import torch
from torch import nn

LAYOUT_SETTINGS = ("auto", True, False)


def prefers_channels_last(device: torch.device, training: bool, backbone: str) -> bool:
    """Whether ``backbone`` runs faster channels-last on ``device``, for training or for inference."""
    if device.type == "cuda" or not training:
        return device.type in ("cuda", "cpu")
    if device.type != "cpu":
        return False
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512") or backbone != "vgg16"


def apply_layout(model: nn.Module, device: torch.device, training: bool, setting: bool | str = "auto") -> nn.Module:
    """Put ``model`` (an ``SSD``) in channels-last or the default layout: ``setting`` True/False, or "auto" for
    ``prefers_channels_last``. Returns the model, converted in place."""
    if setting == "auto":
        setting = prefers_channels_last(device, training, model.config.backbone)
    model.to(memory_format=torch.channels_last if setting else torch.contiguous_format)
    return model
