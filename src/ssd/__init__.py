"""ssd-detector: the Single Shot MultiBox Detector (Liu et al., ECCV 2016) in PyTorch."""

from .backbone_weights import load_backbone_weights, load_vgg16_imagenet, vgg16_from_imagenet
from .build import build_model
from .checkpoint import load, save
from .config import ModelConfig
from .engine.predictor import Predictor
from .errors import DataError, SSDError
from .interop import from_torchvision
from .metrics import evaluate
from .model.ssd import SSD, SSDNet
from .presets import PRESETS, model_config

__version__ = "0.1.0"

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
    "model_config",
    "vgg16_from_imagenet",
    "load_vgg16_imagenet",
    "load_backbone_weights",
]
