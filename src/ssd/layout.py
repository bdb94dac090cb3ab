"""The memory layout a model runs in: channels-last where PyTorch's convolutions (oneDNN, cuDNN) are faster in it.

One rule, justified by ``benchmarks/bench_presets.py`` (its table is in ``benchmarks/results.md``): channels-last
for inference on CPUs and CUDA GPUs, and for training on CUDA GPUs and AVX-512 CPUs; on other CPUs for training
every backbone but VGG-16, whose weight gradients are slower in channels-last there. Other devices (MPS) keep
the default layout. A model moved to another device keeps its layout: call ``apply_layout`` again after moving it.
"""

from __future__ import annotations

import torch
from torch import nn


def prefers_channels_last(device: torch.device, training: bool, backbone: str) -> bool:
    """Whether ``backbone`` runs faster channels-last on ``device``, for training or for inference."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    if not training:
        return True
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512") or backbone != "vgg16"


def apply_layout(model: nn.Module, device: torch.device, training: bool, setting: bool | str = "auto") -> nn.Module:
    """Put ``model`` (an ``SSD``) in channels-last or the default layout: ``setting`` True/False, or "auto" for
    ``prefers_channels_last``. Returns the model, converted in place."""
    if setting == "auto":
        setting = prefers_channels_last(device, training, model.config.backbone)
    model.to(memory_format=torch.channels_last if setting else torch.contiguous_format)
    return model
