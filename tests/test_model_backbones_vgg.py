"""The VGG-16 base: source map sizes and channels, torchvision's layer layout, dilated fc6, pool5, L2Norm."""

import pytest
import torch
import torchvision
from torch import nn

from ssd.model.backbones.vgg import L2Norm, VGG16Base
from ssd.presets import model_config

SSD300_EXTRAS = model_config("ssd300_vgg16").extras
SSD512_EXTRAS = model_config("ssd512_vgg16").extras


def meta_sources(extras, size: int, width: float = 1.0, **kw) -> list[torch.Tensor]:
    """The source maps of a base on the meta device: shapes without any compute or memory."""
    with torch.device("meta"):
        return VGG16Base(extras, width=width, **kw).eval()(torch.empty(1, 3, size, size))


@pytest.mark.parametrize(
    ("extras", "size", "sides"),
    [(SSD300_EXTRAS, 300, [38, 19, 10, 5, 3, 1]), (SSD512_EXTRAS, 512, [64, 32, 16, 8, 4, 2, 1])],
)
def test_source_map_sizes(extras, size, sides):
    sources = meta_sources(extras, size, width=0.125)
    assert [tuple(f.shape[-2:]) for f in sources] == [(s, s) for s in sides]


def test_source_map_sizes_of_a_real_forward_at_300():
    with torch.no_grad():
        sources = VGG16Base(SSD300_EXTRAS, width=0.125).eval()(torch.rand(1, 3, 300, 300))
    assert [tuple(f.shape[1:]) for f in sources] == [
        (64, 38, 38), (128, 19, 19), (64, 10, 10), (32, 5, 5), (32, 3, 3), (32, 1, 1)
    ]  # fmt: skip


def test_source_channels_at_full_and_narrow_width():
    with torch.device("meta"):
        full = VGG16Base(SSD300_EXTRAS, width=1.0)
    assert full.out_channels == [512, 1024, 512, 256, 256, 256]
    assert [f.shape[1] for f in meta_sources(SSD300_EXTRAS, 300)] == full.out_channels
    narrow = VGG16Base(SSD512_EXTRAS, width=0.125)
    assert narrow.out_channels == [64, 128, 64, 32, 32, 32, 32]
    assert [f.shape[1] for f in meta_sources(SSD512_EXTRAS, 512, width=0.125)] == narrow.out_channels
    # channels never fall below 8, however narrow
    assert VGG16Base(SSD300_EXTRAS, width=0.005).out_channels == [8] * 6


def test_features_have_torchvision_vgg16_layout_except_ceil_mode_pool3():
    with torch.device("meta"):
        ours = VGG16Base(SSD300_EXTRAS).features
        reference = torchvision.models.vgg16(weights=None).features[:23]
    assert len(ours) == len(reference) == 23
    for index, (a, b) in enumerate(zip(ours, reference)):
        assert type(a) is type(b), index
        if isinstance(a, nn.Conv2d):
            assert (a.in_channels, a.out_channels, a.kernel_size, a.padding) == (
                b.in_channels, b.out_channels, b.kernel_size, b.padding
            ), index  # fmt: skip
        if isinstance(a, nn.MaxPool2d):
            assert (a.kernel_size, a.stride) == (b.kernel_size, b.stride) == (2, 2), index
            assert a.ceil_mode == (index == 16), index  # pool3 only


def test_ceil_mode_pool3_gives_38_not_37_at_300():
    with torch.device("meta"):
        base = VGG16Base(SSD300_EXTRAS, width=0.125).eval()
        x = torch.empty(1, 3, 300, 300)
    assert base.features(x).shape[-1] == 38
    base.features[16].ceil_mode = False
    assert base.features(x).shape[-1] == 37


def test_pool5_and_dilated_fc6_keep_the_19x19_map():
    with torch.device("meta"):
        layers = VGG16Base(SSD300_EXTRAS).conv5_to_7
    pool4, pool5, conv6, conv7 = layers[0], layers[7], layers[8], layers[10]
    assert isinstance(pool4, nn.MaxPool2d) and (pool4.kernel_size, pool4.stride) == (2, 2)
    assert isinstance(pool5, nn.MaxPool2d)
    assert (pool5.kernel_size, pool5.stride, pool5.padding) == (3, 1, 1)
    assert (conv6.in_channels, conv6.out_channels, conv6.kernel_size) == (512, 1024, (3, 3))
    assert conv6.dilation == (6, 6) and conv6.padding == (6, 6)
    assert (conv7.in_channels, conv7.out_channels, conv7.kernel_size) == (1024, 1024, (1, 1))
    out = layers(torch.empty(1, 512, 38, 38, device="meta"))
    assert out.shape == (1, 1024, 19, 19)


def test_l2norm_by_hand():
    norm = L2Norm(3)
    assert norm.weight.tolist() == [20.0, 20.0, 20.0]
    x = torch.zeros(1, 3, 1, 2)
    x[0, :, 0, 0] = torch.tensor([3.0, 4.0, 0.0])  # norm 5
    x[0, :, 0, 1] = torch.tensor([0.0, 0.0, -2.0])  # norm 2
    y = norm(x)
    torch.testing.assert_close(y[0, :, 0, 0], torch.tensor([12.0, 16.0, 0.0]))  # 20 * (0.6, 0.8, 0)
    torch.testing.assert_close(y[0, :, 0, 1], torch.tensor([0.0, 0.0, -20.0]))
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 3.0]))  # the scale is per channel
    torch.testing.assert_close(norm(x)[0, :, 0, 0], torch.tensor([0.6, 1.6, 0.0]))
    assert torch.equal(norm(torch.zeros(1, 3, 2, 2)), torch.zeros(1, 3, 2, 2))  # no NaN at zero


def test_the_first_source_is_the_l2_normalised_conv4_3(tiny_96):
    base = VGG16Base(tiny_96["extras"], width=tiny_96["width"], l2norm_scale=10.0).eval()
    x = torch.rand(1, 3, tiny_96["input_size"], tiny_96["input_size"])
    conv4_3 = base.features(x)
    first = base(x)[0]
    assert isinstance(base.features[-1], nn.ReLU) and base.l2norm.weight.tolist() == [10.0] * 64
    nonzero = conv4_3.norm(dim=1) > 0
    torch.testing.assert_close(first.norm(dim=1)[nonzero], torch.full((int(nonzero.sum()),), 10.0))
    torch.testing.assert_close(first, 10.0 * conv4_3 / conv4_3.norm(dim=1, keepdim=True).clamp_min(1e-12))


def test_batch_norm_adds_one_per_conv_and_drops_the_conv_bias():
    plain = VGG16Base(SSD300_EXTRAS, width=0.125)
    with_bn = VGG16Base(SSD300_EXTRAS, width=0.125, batch_norm=True)
    convs = [m for m in with_bn.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in with_bn.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(convs) == len(norms) == 15 + 2 * len(SSD300_EXTRAS)  # 13 conv, fc6, fc7, two per extra layer
    assert all(c.bias is None for c in convs)
    assert all(m.bias is not None for m in plain.modules() if isinstance(m, nn.Conv2d))
