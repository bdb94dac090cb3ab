"""Image files and tensors: decoding with named errors, the shape check, the one resize to the square input."""

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from data_helpers import write_jpeg_file
from ssd.errors import DataError, SSDError
from ssd.images import (
    IMAGE_SUFFIXES,
    NotAnImageError,
    check_image,
    decode_image_bytes,
    read_image,
    read_image_size,
    resize_to_square,
)


def test_read_image_errors_name_the_file(tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    write_jpeg_file(good, 20, 30)
    assert read_image(good).shape == (3, 20, 30)
    assert read_image_size(good) == (20, 30)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:-40])
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    for path, message in [(truncated, "truncated"), (garbage, "cannot decode"), (tmp_path / "no.jpg", "not found")]:
        with pytest.raises(DataError, match=message) as info:
            read_image(path)
        assert info.value.path == str(path)
    with pytest.raises(DataError, match="cannot read image header"):
        read_image_size(garbage)


def test_the_format_comes_from_the_bytes_and_not_an_image_is_told_from_broken(tmp_path: Path) -> None:
    image = torch.randint(0, 256, (3, 10, 13), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    for name in ("PNG", "BMP", "GIF", "TIFF", "WEBP"):
        path = tmp_path / f"really_{name.lower()}.jpg"  # misnamed: read by what it holds
        PIL.Image.fromarray(image.permute(1, 2, 0).numpy()).save(path, format=name, lossless=True)
        decoded = decode_image_bytes(path.read_bytes(), "upload")
        assert decoded.shape == (3, 10, 13) and torch.equal(decoded, read_image(path)), name
        if name != "GIF":  # GIF holds a palette of the colours
            assert torch.equal(decoded, image), name
    for data, reason in [(b"", "the file is empty"), (b"%PDF-1.7 ...", "not a JPEG, PNG, WebP, BMP, GIF or TIFF")]:
        with pytest.raises(NotAnImageError, match=reason) as info:
            decode_image_bytes(data, "upload")
        assert info.value.path == "upload"
    png = (tmp_path / "really_png.jpg").read_bytes()
    with pytest.raises(DataError) as info:
        decode_image_bytes(png[: len(png) // 2], "upload")
    assert not isinstance(info.value, NotAnImageError) and "cannot decode image" in info.value.message


def test_bmp_images_are_read_with_pillow(tmp_path: Path) -> None:
    """torchvision cannot decode BMP: Pillow does, with the same DataError for a broken file."""
    image = torch.randint(0, 256, (3, 12, 17), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    PIL.Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp_path / "a.bmp")
    assert torch.equal(read_image(tmp_path / "a.bmp"), image)
    broken = tmp_path / "broken.bmp"
    broken.write_bytes(b"BM not really")
    with pytest.raises(DataError, match="cannot decode image") as info:
        read_image(broken)
    assert info.value.path == str(broken)


def test_every_listed_suffix_decodes(tmp_path: Path) -> None:
    image = torch.randint(0, 256, (3, 9, 14), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    for suffix in IMAGE_SUFFIXES:
        path = tmp_path / f"a{suffix}"
        PIL.Image.fromarray(image.permute(1, 2, 0).numpy()).save(
            path, **({"lossless": True} if suffix == ".webp" else {})
        )
        decoded = read_image(path)
        assert decoded.shape == (3, 9, 14) and decoded.dtype == torch.uint8
        if suffix in (".png", ".bmp", ".webp", ".tif", ".tiff"):  # lossless
            assert torch.equal(decoded, image), suffix


@pytest.mark.parametrize("bad", [torch.zeros(1, 8, 8), torch.zeros(3, 8), torch.zeros(2, 3, 8, 8), "image.jpg"])
def test_check_image_names_the_shape(bad) -> None:
    with pytest.raises(SSDError, match=r"expected images of shape \[3, H, W\]"):
        check_image(bad)
    check_image(torch.zeros(3, 5, 7))


def test_resize_matches_torchvision_bilinear_without_antialias() -> None:
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 40, 60, generator=g), torch.rand(3, 25, 31, generator=g)]
    batch = resize_to_square(images, 32)
    assert batch.shape == (2, 3, 32, 32)
    for image, resized in zip(images, batch):
        expected = TF.resize(image, [32, 32], interpolation=TF.InterpolationMode.BILINEAR, antialias=False)
        torch.testing.assert_close(resized, expected)


def test_resize_leaves_square_images_alone_and_batches_one_shape() -> None:
    g = torch.Generator().manual_seed(0)
    square = [torch.rand(3, 16, 16, generator=g) for _ in range(2)]
    assert torch.equal(resize_to_square(square, 16), torch.stack(square))
    same = [torch.rand(3, 10, 20, generator=g) for _ in range(3)]
    expected = F.interpolate(torch.stack(same), size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.equal(resize_to_square(same, 16), expected)
    with pytest.raises(SSDError, match="at least one image"):
        resize_to_square([], 16)


def _sixteen_bit_ramp() -> np.ndarray:
    return (np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 20).astype(np.uint16)  # 0 .. 61,420


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_bit_grayscale_is_scaled_to_eight_bits(tmp_path: Path, suffix: str) -> None:
    ramp = _sixteen_bit_ramp()
    PIL.Image.fromarray(ramp).save(tmp_path / f"g{suffix}")
    decoded = read_image(tmp_path / f"g{suffix}")
    assert decoded.dtype == torch.uint8 and decoded.shape == (3, 48, 64)
    expected = torch.from_numpy(np.round(ramp / 257.0).astype(np.uint8))  # 65,535 -> 255
    assert torch.equal(decoded[0], expected) and torch.equal(decoded[1], decoded[2])


@pytest.mark.parametrize(
    "mode, value, rgb",
    [("CMYK", (0, 255, 255, 0), (255, 0, 0)), ("RGBA", (10, 20, 30, 0), (10, 20, 30)), ("L", 77, (77, 77, 77))],
)
def test_other_colour_modes_become_rgb(tmp_path: Path, mode: str, value, rgb) -> None:
    path = tmp_path / ("a.jpg" if mode == "CMYK" else "a.png")
    PIL.Image.new(mode, (20, 10), value).save(path)
    decoded = read_image(path)
    assert decoded.shape == (3, 10, 20)
    assert (decoded[:, 5, 10].int() - torch.tensor(rgb)).abs().max() <= 2  # JPEG rounding


def test_palette_gif_reads_its_first_frame(tmp_path: Path) -> None:
    frames = [PIL.Image.new("RGB", (20, 10), colour).convert("P") for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert read_image(tmp_path / "a.gif")[:, 5, 10].tolist() == [255, 0, 0]


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
def test_exif_orientation_gives_the_upright_image_and_size(tmp_path: Path, suffix: str) -> None:
    stored = PIL.Image.new("RGB", (80, 40), (255, 255, 255))  # 80 wide as stored
    stored.paste((0, 0, 255), (0, 0, 16, 16))  # a blue square at the stored top-left corner
    exif = stored.getexif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise, as phones store portrait photos
    path = tmp_path / f"portrait{suffix}"
    stored.save(path, exif=exif.tobytes())
    decoded = read_image(path)
    assert decoded.shape == (3, 80, 40) and read_image_size(path) == (80, 40)  # upright: 80 tall, 40 wide
    assert decoded[2, 5, 34] > 200 and decoded[0, 5, 34] < 60  # clockwise: the square is now top-right
    assert decoded[0, 5, 5] > 200  # and the top-left is white
