"""Checkpoints: the model's config with its weights, written atomically, loaded with ``weights_only=True``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .config import ModelConfig
from .errors import DataError, SSDError
from .files import atomic_write
from .layout import apply_layout
from .model.ssd import SSD

FORMAT_VERSION = 1


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj)`` into ``path``, atomically: an interruption never leaves half a checkpoint."""
    atomic_write(path, lambda f: torch.save(obj, f))


def save(model: SSD, path: str | os.PathLike[str], **extra: Any) -> None:
    """Save ``model`` (config and weights, plus any ``extra`` entries such as optimizer state) to ``path``."""
    atomic_torch_save(
        {"format_version": FORMAT_VERSION, "config": model.config.to_dict(), "model": model.state_dict(), **extra}, path
    )


def read_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict, with a clear error for a missing, truncated or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint file not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise DataError(path, f"cannot read checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
        raise DataError(path, "not an ssd-detector checkpoint (expected the keys 'config' and 'model')")
    return ckpt


def load(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> SSD:
    """Rebuild the model saved at ``path`` (the checkpoint alone is enough), in eval mode and in the memory layout
    that is fastest for inference on its device (``ssd.layout``)."""
    ckpt = read_checkpoint(path, map_location)
    config = ModelConfig.from_dict(ckpt["config"], source=f"{path}: config")
    model = SSD(config)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise DataError(path, f"weights do not fit the saved config: {exc}") from None
    return apply_layout(model.eval(), model.priors.device, training=False)


def load_matching_weights(model: SSD, source: str | os.PathLike[str]) -> tuple[int, list[str]]:
    """Fine-tuning: copy every tensor of checkpoint ``source`` whose name and shape fit ``model``.

    Heads of a model with another number of classes do not fit and keep their fresh initialisation.
    Returns the number of tensors copied and the names of the model's tensors left as they were.
    """
    state = read_checkpoint(source)["model"]
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not fitting:
        raise DataError(source, "no tensor of this checkpoint fits the model (another architecture?)")
    model.load_state_dict(fitting, strict=False)
    return len(fitting), sorted(set(own) - set(fitting))


def read_state_dict(source: str | os.PathLike[str] | Mapping[str, Tensor]) -> Mapping[str, Tensor]:
    """A state dict given as such, or read from a file (a plain state dict or an ssd-detector checkpoint)."""
    if isinstance(source, Mapping):
        return source
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SSDError(f"{source}: weights file not found") from None
    except Exception as exc:
        raise SSDError(f"{source}: cannot read weights ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "model" in state and "config" in state:
        state = state["model"]
    if not isinstance(state, Mapping):
        raise SSDError(f"{source}: not a state dict (a mapping of names to tensors)")
    return state
