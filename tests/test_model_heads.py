"""Multibox heads: output shapes, the order of their outputs against the default boxes, the background prior."""

import math
from functools import partial

import pytest
import torch

import ssd
from ssd.model.heads import MultiboxHead
from ssd.model.priors import boxes_per_location, generate_priors, prior_shapes


def test_outputs_have_one_row_per_default_box():
    head = MultiboxHead(in_channels=[8, 16, 12], boxes_per_location=[4, 6, 4], num_classes=5)
    features = [torch.rand(2, 8, 5, 5), torch.rand(2, 16, 3, 3), torch.rand(2, 12, 1, 1)]
    loc, conf = head(features)
    boxes = 5 * 5 * 4 + 3 * 3 * 6 + 1 * 1 * 4  # 158
    assert loc.shape == (2, boxes, 4) and conf.shape == (2, boxes, 5)
    assert [c.out_channels for c in head.loc] == [16, 24, 16]
    assert [c.out_channels for c in head.conf] == [20, 30, 20]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in [*head.loc, *head.conf])


def label_outputs(conv: torch.nn.Conv2d, map_index: int) -> None:
    """Make ``conv`` output ``feature channel 0 + 100000 * map + output channel``: the value names its source."""
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, 0, 1, 1] = 1.0  # centre tap of input channel 0
        conv.bias.copy_(torch.arange(conv.out_channels, dtype=torch.float32) + 100000 * map_index)


def test_outputs_are_ordered_like_the_default_boxes():
    """Row p of loc/conf and prior p belong to the same map, cell (row, column) and box shape."""
    sizes, ratios, num_classes = [3, 2], [[2], [2, 3]], 3
    ks = boxes_per_location(ratios)  # [4, 6]
    head = MultiboxHead([4, 4], ks, num_classes)
    features = []
    for m, size in enumerate(sizes):
        label_outputs(head.loc[m], m)
        label_outputs(head.conf[m], m)
        f = torch.zeros(1, 4, size, size)
        f[0, 0] = 1000 * torch.arange(size).view(-1, 1) + 100 * torch.arange(size).view(1, -1)  # 1000 row + 100 col
        features.append(f)
    loc, conf = head(features)

    min_sizes, max_sizes = [0.2, 0.5], [0.5, 0.8]
    priors = generate_priors(sizes, 60, min_sizes, max_sizes, ratios)
    p = 0
    for m, size in enumerate(sizes):
        shapes = prior_shapes(min_sizes[m], max_sizes[m], ratios[m], clip=False).float()
        for row in range(size):
            for col in range(size):
                for box in range(ks[m]):
                    source = 100000 * m + 1000 * row + 100 * col
                    assert loc[0, p].tolist() == [source + 4 * box + v for v in range(4)]
                    assert conf[0, p].tolist() == [source + num_classes * box + c for c in range(num_classes)]
                    centre = [(col + 0.5) / size, (row + 0.5) / size]
                    torch.testing.assert_close(priors[p], torch.tensor([*centre, *shapes[box].tolist()]))
                    p += 1
    assert p == len(priors) == loc.shape[1] == conf.shape[1] == 9 * 4 + 4 * 6


@pytest.mark.parametrize(("prior", "num_classes"), [(0.99, 4), (0.9, 5), (0.5, 2), (0.2, 21)])
def test_background_prior_is_the_initial_softmax_probability(prior, num_classes):
    head = MultiboxHead([8, 8], [4, 6], num_classes, background_prior=prior)
    _, conf = head([torch.zeros(1, 8, 3, 3), torch.zeros(1, 8, 2, 2)])  # zero features: the biases alone
    probs = conf.softmax(-1)
    torch.testing.assert_close(probs[..., 0], torch.full((1, 9 * 4 + 4 * 6), prior))
    torch.testing.assert_close(probs[..., 1:], torch.full((1, 60, num_classes - 1), (1 - prior) / (num_classes - 1)))
    assert all(not conv.bias.any() for conv in head.loc)


def test_background_prior_bias_by_hand():
    # p = 0.9 with 5 classes: b = log(0.9 * 4 / 0.1) = log 36, and e^b / (e^b + 4) = 36 / 40
    head = MultiboxHead([8], [4], 5, background_prior=0.9)
    bias = head.conf[0].bias.detach().view(4, 5)
    torch.testing.assert_close(bias[:, 0], torch.full((4,), math.log(36.0)))
    assert not bias[:, 1:].any()


def test_reset_parameters_restores_the_prior_and_zero_biases():
    head = MultiboxHead([8], [4], 3, background_prior=0.99)
    with torch.no_grad():
        for conv in [*head.loc, *head.conf]:
            conv.bias.fill_(1.0)
    head.reset_parameters()
    assert not head.loc[0].bias.any()
    torch.testing.assert_close(head.conf[0].bias.view(4, 3)[:, 0], torch.full((4,), math.log(0.99 * 2 / 0.01)))
    plain = MultiboxHead([8], [4], 3)
    assert not plain.conf[0].bias.any() and plain.conf[0].weight.abs().sum() > 0


SSDLITE_NORM = partial(torch.nn.BatchNorm2d, eps=0.001, momentum=0.03)


def test_separable_predictors_are_depthwise_3x3_bn_relu6_then_1x1():
    head = MultiboxHead([8, 16], [4, 6], 5, separable=True, norm_layer=SSDLITE_NORM)
    for predictors, values in ((head.loc, 4), (head.conf, 5)):
        for predictor, channels, k in zip(predictors, [8, 16], [4, 6]):
            (depthwise, norm, act), pointwise = predictor
            assert isinstance(depthwise, torch.nn.Conv2d) and depthwise.bias is None
            assert depthwise.kernel_size == (3, 3) and depthwise.padding == (1, 1) and depthwise.stride == (1, 1)
            assert depthwise.groups == depthwise.in_channels == depthwise.out_channels == channels
            assert isinstance(norm, torch.nn.BatchNorm2d) and (norm.eps, norm.momentum) == (0.001, 0.03)
            assert norm.num_features == channels and isinstance(act, torch.nn.ReLU6)
            assert isinstance(pointwise, torch.nn.Conv2d) and pointwise.kernel_size == (1, 1)
            assert (pointwise.in_channels, pointwise.out_channels, pointwise.groups) == (channels, k * values, 1)


def test_separable_outputs_have_one_row_per_default_box():
    head = MultiboxHead([8, 16, 12], [4, 6, 4], 5, separable=True)
    loc, conf = head([torch.rand(2, 8, 5, 5), torch.rand(2, 16, 3, 3), torch.rand(2, 12, 1, 1)])
    assert loc.shape == (2, 158, 4) and conf.shape == (2, 158, 5)  # 5*5*4 + 3*3*6 + 1*4


@pytest.mark.parametrize(("prior", "num_classes"), [(0.99, 4), (0.9, 91)])
def test_separable_background_prior_is_the_initial_softmax_probability(prior, num_classes):
    head = MultiboxHead([8, 8], [4, 6], num_classes, background_prior=prior, separable=True).eval()
    _, conf = head([torch.zeros(1, 8, 3, 3), torch.zeros(1, 8, 2, 2)])  # zero features: the last biases alone
    probs = conf.softmax(-1)
    torch.testing.assert_close(probs[..., 0], torch.full((1, 60), prior))
    torch.testing.assert_close(probs[..., 1:], torch.full((1, 60, num_classes - 1), (1 - prior) / (num_classes - 1)))
    assert all(not predictor[-1].bias.any() for predictor in head.loc)


def test_separable_convs_start_from_normal_with_std_0_03():
    head = MultiboxHead([256, 128], [6, 6], 21, separable=True)
    weights = torch.cat([m.weight.detach().flatten() for m in head.modules() if isinstance(m, torch.nn.Conv2d)])
    assert weights.numel() > 50_000
    assert abs(weights.mean().item()) < 0.001 and weights.std().item() == pytest.approx(0.03, rel=0.03)
    # normal, not uniform of the same std (bounded by 0.03 * sqrt 3): about 4.6 % lie beyond two std
    assert 0.04 < (weights.abs() > 0.06).float().mean().item() < 0.052
    assert all(not predictor[-1].bias.any() for predictor in [*head.loc, *head.conf])


def test_head_init_std_follows_the_preset():
    torch.manual_seed(0)
    v2 = ssd.build_model("ssdlite320_mobilenet_v2", 5)  # mmdetection initialises its head from normal(0, 0.001)
    v3 = ssd.build_model("ssdlite320_mobilenet_v3_large", 5)  # torchvision from normal(0, 0.03)
    for model, std in ((v2, 0.001), (v3, 0.03)):
        weights = torch.cat([p.flatten() for p in model.net.head.parameters() if p.ndim == 4])  # every conv
        assert weights.std().item() == pytest.approx(std, rel=0.05)
