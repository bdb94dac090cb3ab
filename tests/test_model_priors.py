import math

import pytest
import torch
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList

import ssd
from ssd.model.priors import boxes_per_location, generate_priors, prior_shapes


@pytest.mark.parametrize(
    "name, sizes, count",
    [
        ("ssd300_vgg16", [38, 19, 10, 5, 3, 1], 8732),
        ("ssd512_vgg16", [64, 32, 16, 8, 4, 2, 1], 24564),
        ("ssd300_vgg16_coco", [38, 19, 10, 5, 3, 1], 8732),
    ],
)
def test_feature_maps_and_prior_counts(name, sizes, count):
    model = ssd.build_model(name, num_classes=21)
    assert model.feature_sizes == sizes
    assert model.priors.shape == (count, 4)
    # count from the formula: sum over maps of S^2 * (2 + 2 * len(ratios))
    ks = boxes_per_location(model.config.aspect_ratios)
    assert sum(s * s * k for s, k in zip(sizes, ks)) == count


def test_boxes_per_location():
    assert boxes_per_location([[2], [2, 3]]) == [4, 6]


def test_ssd300_prior_coordinates_by_hand():
    priors = ssd.build_model("ssd300_vgg16", 21).priors
    # first cell of conv4_3 (38x38, step 8): centre 0.5 * 8 / 300; sizes 30 and sqrt(30 * 60) pixels
    c = 4 / 300
    expected = torch.tensor(
        [
            [c, c, 0.1, 0.1],
            [c, c, math.sqrt(30 * 60) / 300, math.sqrt(30 * 60) / 300],
            [c, c, 0.1 * math.sqrt(2), 0.1 / math.sqrt(2)],
            [c, c, 0.1 / math.sqrt(2), 0.1 * math.sqrt(2)],
        ]
    )
    torch.testing.assert_close(priors[:4], expected)
    # second cell of the same row moves by one step in x only
    torch.testing.assert_close(priors[4, :2], torch.tensor([12 / 300, 4 / 300]))
    # the single 1x1 cell (step 300): centre 0.5, min 264, max 315, ratio 2, unclipped
    last = priors[-4:]
    torch.testing.assert_close(last[:, :2], torch.full((4, 2), 0.5))
    torch.testing.assert_close(last[1, 2], torch.tensor(math.sqrt(264 * 315) / 300))
    torch.testing.assert_close(last[3], torch.tensor([0.5, 0.5, 0.88 / math.sqrt(2), 0.88 * math.sqrt(2)]))
    # conv7 (19x19, step 16) starts right after 38*38*4 boxes with 6 boxes per cell
    first_conv7 = priors[38 * 38 * 4 : 38 * 38 * 4 + 6]
    torch.testing.assert_close(first_conv7[:, 0], torch.full((6,), 8 / 300))
    torch.testing.assert_close(first_conv7[4, 2:], torch.tensor([0.2 * math.sqrt(3), 0.2 / math.sqrt(3)]))


def test_ssd512_prior_coordinates_by_hand():
    priors = ssd.build_model("ssd512_vgg16", 21).priors
    torch.testing.assert_close(priors[0], torch.tensor([4 / 512, 4 / 512, 0.07, 0.07]))
    torch.testing.assert_close(priors[1, 2], torch.tensor(math.sqrt(35.84 * 76.8) / 512))


def test_clip_limits_width_and_height():
    wh = prior_shapes(0.9, 1.1, [2], clip=True)
    assert wh.max() == 1.0
    wh_unclipped = prior_shapes(0.9, 1.1, [2], clip=False)
    assert wh_unclipped.max() > 1.0


def test_steps_default_to_input_over_feature_size():
    with_steps = generate_priors([4], 32, [0.2], [0.4], [[2]], steps=[8])
    without = generate_priors([4], 32, [0.2], [0.4], [[2]], steps=None)
    torch.testing.assert_close(with_steps, without)


def test_torchvision_layout_equals_torchvision_default_boxes():
    model = ssd.build_model("ssd300_vgg16_coco", 91)
    generator = DefaultBoxGenerator(
        [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
        scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
        steps=[8, 16, 32, 64, 100, 300],
    )
    features = [torch.zeros(1, 1, s, s) for s in model.feature_sizes]
    images = ImageList(torch.zeros(1, 3, 300, 300), [(300, 300)])
    tv_xyxy = generator(images, features)[0]  # pixels of the 300x300 input
    ours = ssd.boxes.cxcywh_to_xyxy(model.priors) * 300
    torch.testing.assert_close(ours, tv_xyxy, atol=1e-4, rtol=0)
