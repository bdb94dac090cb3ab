"""Image files and tensors: decoding with named errors, the shape check, the one resize to the square input."""

from pathlib import Path

import PIL.Image
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from data_helpers import write_jpeg_file
from ssd.errors import DataError, SSDError
from ssd.images import IMAGE_SUFFIXES, check_image, read_image, read_image_size, resize_to_square


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
        if suffix in (".png", ".bmp", ".webp"):  # lossless
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
