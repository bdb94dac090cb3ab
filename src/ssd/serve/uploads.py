"""An uploaded image, from the request to a decoded tensor, within the server's limits; every problem an
``HTTPException`` with the status a client can act on (400, 413, 415). Nothing a client sends is used as a path."""

from __future__ import annotations

import io

import PIL.Image
from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect
from torch import Tensor

from ..errors import DataError
from ..images import NotAnImageError, decode_image_bytes, sniff_format

UPLOAD = "upload"  # how errors name the uploaded image


async def upload_bytes(request: Request, max_bytes: int) -> bytes:
    """The image of a request: the one file of a ``multipart/form-data`` body, or the raw body. 413 over
    ``max_bytes`` (from ``Content-Length`` before reading, or while reading), 400 when empty or malformed."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(int(declared), max_bytes)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise _too_large(len(body), max_bytes)
    except ClientDisconnect:
        raise HTTPException(400, "the client left before the upload was complete") from None
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        body = await _multipart_file(request, bytes(body))
    if not body:
        raise HTTPException(400, "empty request: send the image as the request body or as a multipart file")
    return bytes(body)


async def _multipart_file(request: Request, body: bytes) -> bytes:
    async def chunks():
        yield body

    try:
        form = await MultiPartParser(request.headers, chunks(), max_files=1, max_fields=16).parse()
    except MultiPartException as exc:
        raise HTTPException(400, f"malformed multipart body: {exc.message}") from None
    try:
        files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not files:
            raise HTTPException(400, "the multipart body holds no file: send the image as a file field (e.g. 'file')")
        return await files[0].read()
    finally:
        await form.close()


def decode_upload(data: bytes, max_pixels: int) -> Tensor:
    """The uploaded image as ``uint8 [3, H, W]`` RGB, upright (EXIF orientation applied). 415 for bytes of no image
    format read here, 413 over ``max_pixels`` (from the header, before decoding), 400 for a corrupt image."""
    if sniff_format(data) is None:
        raise HTTPException(415, f"not an image: send a JPEG, PNG, WebP, BMP, GIF or TIFF ({len(data)} bytes received)")
    _check_pixels(data, max_pixels)
    try:
        return decode_image_bytes(data, UPLOAD)
    except NotAnImageError as err:
        raise HTTPException(415, err.message) from None
    except DataError as err:
        raise HTTPException(400, f"the image cannot be decoded: {err.message}") from None


def _check_pixels(data: bytes, max_pixels: int) -> None:
    """413 when the header states more than ``max_pixels`` (or more than Pillow's decompression-bomb limit); 400
    when there is no header to read. Only the header is parsed: no pixel is decoded here."""
    try:
        with PIL.Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except PIL.Image.DecompressionBombError as exc:
        raise HTTPException(413, f"image too large to decode: {exc}") from None
    except (OSError, ValueError) as exc:
        raise HTTPException(400, f"the image cannot be decoded: cannot read its header: {exc}") from None
    if width * height > max_pixels:
        raise HTTPException(413, f"image of {width}x{height} pixels: over this server's limit of {max_pixels}")


def _too_large(size: int, max_bytes: int) -> HTTPException:
    return HTTPException(413, f"upload of {size} bytes: over this server's limit of {max_bytes} bytes")
