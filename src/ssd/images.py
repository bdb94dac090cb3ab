"""Images in and out of the model: the file types read, decoding to ``uint8 [3, H, W]``, the check of a tensor's
shape, and the one resize to the network's square input that training, evaluation, the model and the ONNX
runtime all use."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image

from .errors import DataError, SSDError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
EXIF_ORIENTATION_TAG = 0x0112
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
KNOWN_FORMATS = "JPEG, PNG, WebP, BMP, GIF or TIFF"


class NotAnImageError(DataError):
    """The bytes are empty or of no image format read here (as opposed to an image that is corrupt or cut short)."""


def read_image(path: str | os.PathLike[str]) -> Tensor:
    """Decode an image file to ``Tensor[3, H, W]`` uint8 RGB as a viewer shows it; DataError naming the file if it
    cannot be read (see ``decode_image_bytes``)."""
    if not os.path.isfile(path):
        raise DataError(path, "image file not found")
    return decode_image_bytes(Path(path).read_bytes(), path)


def decode_image_bytes(data: bytes, source: str | os.PathLike[str]) -> Tensor:
    """Decode an encoded image to ``Tensor[3, H, W]`` uint8 RGB as a viewer shows it; errors name ``source``.

    The format comes from the bytes, not a file name. The EXIF orientation is applied; grayscale, palette, CMYK
    and alpha images become RGB (alpha dropped); 16-bit images are scaled to 8 bits; of a GIF or multi-page TIFF
    the first frame is read. torchvision decodes JPEG, PNG and WebP, Pillow BMP, GIF and TIFF. NotAnImageError
    for empty or unknown bytes, DataError for a corrupt or truncated image.
    """
    kind = sniff_format(data)
    if kind is None:
        reason = "the file is empty" if not data else f"not a {KNOWN_FORMATS} file"
        raise NotAnImageError(source, f"cannot decode image: {reason}")
    if kind not in ("jpeg", "png", "webp"):
        return _read_with_pillow(data, source)
    try:
        encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        image = decode_image(encoded, mode=ImageReadMode.RGB, apply_exif_orientation=True)
    except RuntimeError as exc:
        # torchvision prefixes its messages with the C++ source location: keep only the reason
        reason = re.sub(r"^.*\.cpp:\d+, ", "", str(exc)).strip()
        raise DataError(source, f"cannot decode image: {reason}") from None
    return _to_uint8(image)


def sniff_format(data: bytes) -> str | None:
    """``"jpeg"``, ``"png"``, ``"webp"``, ``"gif"``, ``"bmp"`` or ``"tiff"`` from the first bytes; None otherwise."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data.startswith(b"BM"):
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def _read_with_pillow(data: bytes, source: str | os.PathLike[str]) -> Tensor:
    try:
        with PIL.Image.open(io.BytesIO(data)) as img:
            return _pillow_rgb(PIL.ImageOps.exif_transpose(img))
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as exc:  # UnidentifiedImageError is an OSError
        raise DataError(source, f"cannot decode image: {exc}") from None


def _pillow_rgb(img: PIL.Image.Image) -> Tensor:
    """``uint8 [3, H, W]`` of a Pillow image; high-bit grayscale (``I;16``, ``I``) scaled from 16 bits to 8."""
    if img.mode.startswith("I"):
        gray = _to_uint8(torch.from_numpy(np.array(img, dtype=np.int32)))
        return gray.expand(3, -1, -1).contiguous()
    return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)  # np.array: a writable copy


def _to_uint8(image: Tensor) -> Tensor:
    """A 16-bit image (0..65535, any integer dtype) scaled to uint8; 8-bit images unchanged."""
    if image.dtype == torch.uint8:
        return image
    return (image.to(torch.float32) / 257.0).round().clamp(0, 255).to(torch.uint8)


def read_image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(height, width)`` of an image as ``read_image`` returns it (EXIF orientation applied); DataError if it cannot
    be read. From the header only, unless the orientation swaps the sides: then Pillow applies it."""
    if not os.path.isfile(path):
        raise DataError(path, "image file not found")
    try:
        with PIL.Image.open(path) as img:
            width, height = img.size
            if img.getexif().get(EXIF_ORIENTATION_TAG, 1) in TRANSPOSING_ORIENTATIONS:
                width, height = PIL.ImageOps.exif_transpose(img).size
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
