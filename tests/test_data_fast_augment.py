"""The fast photometric distortion and min-IoU crop: the same random draws and results as torchvision's."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as F
from torch import Tensor
from torchvision import tv_tensors
from torchvision.ops import box_iou

from ssd.data.fast_augment import MinIoURandomCrop, PhotometricDistort, adjust_hue
from ssd.data.transforms import seeded

# small images: intra-op threads only add overhead (and stall on a busy machine), as in loader workers
pytestmark = pytest.mark.usefixtures("one_thread")


def many_boxes(n: int = 40) -> tuple[tv_tensors.Image, tv_tensors.BoundingBoxes]:
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([150.0, 110.0])
    wh = 4 + torch.rand(n, 2, generator=g) * 60
    boxes_xyxy = torch.cat([xy, torch.minimum(xy + wh, torch.tensor([160.0, 120.0]))], dim=1)
    image = tv_tensors.Image(torch.zeros(3, 120, 160, dtype=torch.uint8))
    return image, tv_tensors.BoundingBoxes(boxes_xyxy, format="XYXY", canvas_size=(120, 160))


def test_crop_keeps_exactly_the_boxes_whose_centre_lies_inside():
    image, boxes = many_boxes()
    crop = MinIoURandomCrop()
    sanitize = T.SanitizeBoundingBoxes(labels_getter=lambda inputs: inputs[2])
    labels = torch.arange(len(boxes))
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    cropped = 0
    for s in range(60):
        with seeded(s):
            params = crop.make_params([image, boxes])
        with seeded(s):
            out_image, out_boxes, out_labels = sanitize(*crop(image, boxes, labels))
        if not params:  # the "whole image" option
            assert torch.equal(out_boxes, boxes)
            continue
        cropped += 1
        top, left, h, w = params["top"], params["left"], params["height"], params["width"]
        assert out_image.shape[-2:] == (h, w) and 0.3 * 120 - 1 <= h and 0.3 * 160 - 1 <= w and 0.5 <= w / h <= 2
        inside = (centres[:, 0] > left) & (centres[:, 0] < left + w) & (centres[:, 1] > top) & (centres[:, 1] < top + h)
        assert torch.equal(params["is_within_crop_area"], inside)
        expected = boxes[inside].as_subclass(Tensor) - torch.tensor([left, top, left, top])
        expected = torch.minimum(expected.clamp_min(0), torch.tensor([w, h, w, h]))  # clipped to the crop
        big_enough = ((expected[:, 2:] - expected[:, :2]) >= 1).all(1)
        assert torch.equal(out_labels, labels[inside][big_enough])
        assert torch.allclose(out_boxes.as_subclass(Tensor), expected[big_enough])
    assert cropped > 30


def test_crop_meets_the_min_iou_option():
    image, boxes = many_boxes(6)
    crop = MinIoURandomCrop(sampler_options=[0.7])
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    for s in range(30):
        with seeded(s):
            p = crop.make_params([image, boxes])
        window = torch.tensor([[p["left"], p["top"], p["left"] + p["width"], p["top"] + p["height"]]]).float()
        inside = p["is_within_crop_area"]
        assert inside.any()
        assert box_iou(window, boxes[inside].as_subclass(Tensor)).max() >= 0.7
        assert ((centres[inside] > window[0, :2]) & (centres[inside] < window[0, 2:])).all()


@pytest.mark.parametrize("hue_factor", [-0.5, -0.05, 0.0, 0.03, 0.25, 0.5])
def test_adjust_hue_matches_torchvision(hue_factor: float):
    image = torch.rand(3, 20, 30, generator=torch.Generator().manual_seed(1))
    image[:, :3] = image[0, :3]  # grey rows: no hue to rotate
    image[1, 3:6] = image[0, 3:6]  # ties between the max channels
    assert torch.allclose(adjust_hue(image, hue_factor), F.adjust_hue(image, hue_factor), atol=1e-5)


def test_photometric_distort_matches_torchvision_for_the_same_random_choices():
    ours, theirs = PhotometricDistort(p=0.5), T.RandomPhotometricDistort(p=0.5)
    float_image = tv_tensors.Image(torch.rand(3, 24, 32, generator=torch.Generator().manual_seed(2)))
    byte_image = tv_tensors.Image(F.to_dtype(float_image, torch.uint8, scale=True))
    for s in range(30):
        with seeded(s):
            a = ours(float_image)
        with seeded(s):
            b = theirs(float_image)
        assert torch.allclose(a, b, atol=1e-5)
        with seeded(s):
            a8 = ours(byte_image)
        with seeded(s):
            b8 = theirs(byte_image)
        assert a8.dtype == torch.uint8 and (a8.int() - b8.int()).abs().max() <= 6  # torchvision rounds every step
