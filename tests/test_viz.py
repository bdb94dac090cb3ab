"""Drawing boxes, writing images, the augmentation grid and the training plots."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image

from data_helpers import make_sample
from ssd.data.dataset import Sample
from ssd.data.transforms import TrainTransform
from ssd.errors import SSDError
from ssd.viz import (
    class_colour,
    draw_detections,
    save_augmentation_grid,
    save_image,
)


def grey(height: int = 100, width: int = 120) -> Tensor:
    return torch.full((3, height, width), 90, dtype=torch.uint8)


def test_box_edges_take_the_class_colour_and_the_rest_is_untouched():
    image = grey()
    box = torch.tensor([[20.0, 30.0, 70.0, 80.0]])
    drawn = draw_detections(image, box, torch.tensor([2]), class_names=["bg", "a", "b"])
    colour = torch.tensor(class_colour(2), dtype=torch.uint8)
    assert drawn.dtype == torch.uint8 and drawn.shape == image.shape
    for x, y in [(20, 60), (70, 60), (45, 80), (21, 55), (69, 79)]:  # left, right, bottom edges (2 px wide)
        assert torch.equal(drawn[:, y, x], colour), (x, y)
    changed = (drawn != image).any(0)  # [H, W]
    assert not changed[:29].any() and not changed[82:].any() and not changed[:, :19].any() and not changed[:, 72:].any()
    assert not changed[45:78, 23:68].any()  # the box's inside below its label
    assert changed[31:40, 22:40].any()  # the label "b" in its tag at the top left
    assert torch.equal(image, grey())  # the input is not drawn on


def test_classes_get_different_colours_and_low_scores_are_left_out():
    assert len({class_colour(c) for c in range(1, 81)}) == 80
    image = grey()
    boxes = torch.tensor([[10.0, 10.0, 50.0, 50.0], [60.0, 40.0, 110.0, 90.0]])
    drawn = draw_detections(image, boxes, torch.tensor([1, 3]), scores=torch.tensor([0.9, 0.2]), score_thresh=0.5)
    assert torch.equal(drawn[:, 30, 10], torch.tensor(class_colour(1), dtype=torch.uint8))
    assert torch.equal(drawn[:, 40:, 55:], image[:, 40:, 55:])  # the 0.2 box is not drawn
    low = torch.tensor([0.1, 0.2])
    nothing = draw_detections(image.float() / 255, boxes, torch.tensor([1, 3]), scores=low, score_thresh=0.5)
    assert nothing.dtype == torch.uint8 and torch.equal(nothing, image)


def test_save_image_round_trips(tmp_path: Path):
    image = torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    save_image(image, tmp_path / "sub" / "a.png")
    assert torch.equal(decode_image(str(tmp_path / "sub" / "a.png")), image)  # PNG is lossless
    save_image(image, tmp_path / "a.jpg")
    assert decode_image(str(tmp_path / "a.jpg")).shape == (3, 20, 30)
    with pytest.raises(SSDError, match="gif"):
        save_image(image, tmp_path / "a.gif")


def shape_samples() -> list[Sample]:
    """Two shapes-like images: a red square and a green disc on a grey background."""
    ys, xs = torch.meshgrid(torch.arange(80), torch.arange(100), indexing="ij")
    image = torch.full((3, 80, 100), 70, dtype=torch.uint8)
    image[:, 10:40, 15:45] = torch.tensor([220, 30, 30], dtype=torch.uint8)[:, None, None]
    disc = (xs - 70) ** 2 + (ys - 50) ** 2 < 18**2
    image[:, disc] = torch.tensor([30, 200, 60], dtype=torch.uint8)[:, None]
    boxes = torch.tensor([[15.0, 10.0, 45.0, 40.0], [52.0, 32.0, 88.0, 68.0]])
    no = torch.zeros(2, dtype=torch.bool)
    return [make_sample(image, boxes, torch.tensor([1, 2]), no, no.clone(), i) for i in range(2)]


def test_augmentation_grid_is_a_png_of_n_tiles(tmp_path: Path):
    path = tmp_path / "grid.png"
    names = ["__background__", "square", "disc"]
    save_augmentation_grid(shape_samples(), TrainTransform(64), path, n=6, class_names=names)
    grid = decode_image(str(path), mode=ImageReadMode.RGB)
    assert grid.shape == (3, 2 * 64 + 3 * 4, 3 * 64 + 4 * 4)  # 3 columns (ceil sqrt 6), 2 rows, 4 px padding
    tiles = [grid[:, 4 + r * 68 : 4 + r * 68 + 64, 4 + c * 68 : 4 + c * 68 + 64] for r in range(2) for c in range(3)]
    assert all(not torch.equal(tiles[0], tile) for tile in tiles[1:])  # repeated samples get fresh augmentations
    with pytest.raises(SSDError, match="cannot be read and neither could any"):
        save_augmentation_grid([None], TrainTransform(64), tmp_path / "none.png", n=2)
