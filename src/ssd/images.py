"""Images in and out of the model: the file types read, decoding to ``uint8 [3, H, W]``, the check of a tensor's
shape, and the one resize to the network's square input that training, evaluation, the model and the ONNX
runtime all use."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image

from .errors import DataError, SSDError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def read_image(path: str | os.PathLike[str]) -> Tensor:
    """Decode an image file to ``Tensor[3, H, W]`` uint8 RGB; DataError naming the file if it cannot be read.

    torchvision decodes JPEG, PNG, WebP and GIF; Pillow decodes BMP, which torchvision cannot.
    """
    if not os.path.isfile(path):
        raise DataError(path, "image file not found")
    if Path(path).suffix.lower() == ".bmp":
        try:
            with PIL.Image.open(path) as img:
                array = np.asarray(img.convert("RGB"))
        except (OSError, PIL.Image.DecompressionBombError) as exc:  # UnidentifiedImageError is an OSError
            raise DataError(path, f"cannot decode image: {exc}") from None
        return torch.from_numpy(array.copy()).permute(2, 0, 1)
    try:
        return decode_image(str(path), mode=ImageReadMode.RGB)
    except RuntimeError as exc:
        # torchvision prefixes its messages with the C++ source location: keep only the reason
        reason = re.sub(r"^.*\.cpp:\d+, ", "", str(exc)).strip()
        raise DataError(path, f"cannot decode image: {reason}") from None


def read_image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(height, width)`` of an image from its header only (no decoding); DataError if it cannot be read."""
    if not os.path.isfile(path):
        raise DataError(path, "image file not found")
    try:
        with PIL.Image.open(path) as img:
            width, height = img.size
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as exc:
        raise DataError(path, f"cannot read image header: {exc}") from None
    return height, width


def check_image(image: Tensor) -> None:
    """SSDError unless ``image`` is a ``Tensor[3, H, W]``."""
    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise SSDError(f"expected images of shape [3, H, W], got {shape}")


def resize_to_square(images: Sequence[Tensor], size: int) -> Tensor:
    """Images ``[3, H, W]`` in 0..1 warped to float32 ``Tensor[B, 3, size, size]``, ignoring the aspect ratio.

    Bilinear without antialiasing, as the original Caffe SSD and torchvision's SSD resize; images already at
    ``size`` are not resized, and a batch of one shape is resized in one call.
    """
    if not images:
        raise SSDError("need at least one image")
    for image in images:
        check_image(image)
    images = [image.float() for image in images]
    if all(img.shape[-2:] == (size, size) for img in images):
        return torch.stack(images)
    if all(img.shape == images[0].shape for img in images):
        return _bilinear(torch.stack(images), size)
    return torch.cat([_bilinear(img[None], size) for img in images])


def _bilinear(batch: Tensor, size: int) -> Tensor:
    return F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False)
