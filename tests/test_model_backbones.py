"""The backbone contract of MobileNetV3-Large, MobileNetV2 and ResNet-50 (VGG-16: test_model_backbones_vgg.py):
channels and sizes of the source maps, default boxes, SSDLite's batch norms and separable extra layers."""

import pytest
import torch
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

import ssd
from ssd.errors import SSDError
from ssd.model.backbones.mobilenet_v3 import MobileNetV3Backbone
from ssd.presets import SSDLITE_EXTRAS, model_config

# per preset: source-map sides at its input size, channels of the maps, default boxes
EXPECTED = {
    "ssdlite320_mobilenet_v3_large": ([20, 10, 5, 3, 2, 1], [672, 480, 512, 256, 256, 128], 3234),
    "ssdlite320_mobilenet_v2": ([20, 10, 5, 3, 2, 1], [96, 1280, 512, 256, 256, 128], 3234),
    "ssd300_resnet50": ([38, 19, 10, 5, 3, 1], [1024, 512, 512, 256, 256, 256], 8732),
}
SSDLITES = ["ssdlite320_mobilenet_v3_large", "ssdlite320_mobilenet_v2"]


@pytest.fixture(scope="module")
def built():
    """``built(preset)``: the preset's SSD (its own number of classes, eval mode), the source maps and head outputs
    of one image at its input size; made once per preset."""
    made = {}

    def get(preset):
        if preset not in made:
            torch.manual_seed(0)
            model = ssd.build_model(preset).eval()
            size = model.config.input_size
            with torch.no_grad():
                sources = model.net.backbone(torch.randn(1, 3, size, size))
                loc, conf = model.net.head(sources)
            made[preset] = model, sources, loc, conf
        return made[preset]

    return get


@pytest.mark.parametrize("preset", list(EXPECTED))
def test_out_channels_are_the_channels_of_the_maps(preset, built):
    model, sources, _, _ = built(preset)
    backbone = model.net.backbone
    assert [f.shape[1] for f in sources] == backbone.out_channels == EXPECTED[preset][1]
    # the heads are built on these channels: the first conv of every predictor takes them
    first_convs = [next(m for m in p.modules() if isinstance(m, nn.Conv2d)) for p in model.net.head.loc]
    assert [c.in_channels for c in first_convs] == backbone.out_channels


@pytest.mark.parametrize("preset", list(EXPECTED))
def test_feature_sizes_are_the_sides_of_the_maps(preset, built):
    model, sources, _, _ = built(preset)
    assert [tuple(f.shape[-2:]) for f in sources] == [(s, s) for s in EXPECTED[preset][0]]
    assert model.feature_sizes == EXPECTED[preset][0]


@pytest.mark.parametrize("preset", list(EXPECTED))
def test_one_prediction_per_default_box(preset, built):
    model, _, loc, conf = built(preset)
    boxes = EXPECTED[preset][2]
    assert model.priors.shape == (boxes, 4)
    assert loc.shape == (1, boxes, 4) and conf.shape == (1, boxes, model.num_classes)


def test_resnet50_first_map_is_layer3_at_38x38(built):
    _, sources, _, _ = built("ssd300_resnet50")
    assert sources[0].shape == (1, 1024, 38, 38)  # stride 8 at 300 px: layer3 runs at stride 1


@pytest.mark.parametrize(("reduced_tail", "c5_channels"), [(True, 480), (False, 960)])
def test_mobilenet_v3_tail(reduced_tail, c5_channels):
    with torch.device("meta"):
        backbone = MobileNetV3Backbone(SSDLITE_EXTRAS, reduced_tail=reduced_tail).eval()
        sources = backbone(torch.empty(1, 3, 320, 320))
    assert sources[0].shape == (1, 672, 20, 20)  # the C4 expansion, the same either way
    assert sources[1].shape == (1, c5_channels, 10, 10)
    assert backbone.out_channels[:2] == [672, c5_channels]
    assert backbone.extras[0][0][0].in_channels == c5_channels


@pytest.mark.parametrize("preset", SSDLITES)
def test_ssdlite_batch_norms_have_tensorflows_eps_and_momentum(preset, built):
    model, _, _, _ = built(preset)
    parts = {"base": model.net.backbone.features, "extras": model.net.backbone.extras, "head": model.net.head}
    for name, part in parts.items():
        norms = [m for m in part.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        assert norms, name
        assert {(m.eps, m.momentum) for m in norms} == {(0.001, 0.03)}, name


@pytest.mark.parametrize("preset", SSDLITES)
def test_ssdlite_extra_blocks_are_1x1_depthwise_3x3_1x1(preset, built):
    model, _, _, _ = built(preset)
    backbone = model.net.backbone
    in_ch = backbone.out_channels[1]
    assert len(backbone.extras) == len(SSDLITE_EXTRAS)
    for block, (mid, out, _, _, _) in zip(backbone.extras, SSDLITE_EXTRAS):
        assert len(block) == 3 and all(isinstance(layer, Conv2dNormActivation) for layer in block)
        squeeze, depthwise, expand = (layer[0] for layer in block)
        assert (squeeze.in_channels, squeeze.out_channels, squeeze.kernel_size) == (in_ch, mid, (1, 1))
        assert depthwise.kernel_size == (3, 3) and depthwise.stride == (2, 2) and depthwise.padding == (1, 1)
        assert depthwise.groups == depthwise.in_channels == depthwise.out_channels == mid
        assert (expand.in_channels, expand.out_channels, expand.kernel_size) == (mid, out, (1, 1))
        assert squeeze.groups == expand.groups == 1 and squeeze.stride == expand.stride == (1, 1)
        assert all(isinstance(layer[2], nn.ReLU6) for layer in block)
        in_ch = out


def test_ssdlite320_mobilenet_v3_large_has_torchvisions_parameter_count(built):
    model, _, _, _ = built("ssdlite320_mobilenet_v3_large")
    assert model.num_classes == 91
    assert sum(p.numel() for p in model.parameters()) == 3_440_060  # torchvision's ssdlite320_mobilenet_v3_large


def test_ssdlite320_mobilenet_v2_priors_on_the_step_107_map(built):
    model, _, _, _ = built("ssdlite320_mobilenet_v2")
    first = 6 * (20 * 20 + 10 * 10 + 5 * 5)  # 3150: six boxes a cell on the 20, 10 and 5 maps come first
    on_3x3 = model.priors[first : first + 6 * 3 * 3]
    centres = torch.tensor([53.5, 160.5, 267.5]) / 320  # (j + 0.5) * 107 / 320
    torch.testing.assert_close(on_3x3[:, 0].unique(), centres)
    torch.testing.assert_close(on_3x3[:, 1].unique(), centres)
    torch.testing.assert_close(on_3x3[:6, :2], torch.full((6, 2), 53.5 / 320))  # cell (0, 0): all six boxes
    # the neighbours belong to the other maps: the last cell of the 5x5 map (step 64), the first of the 2x2 (160)
    torch.testing.assert_close(model.priors[first - 1, :2], torch.tensor([4.5 * 64 / 320] * 2))
    torch.testing.assert_close(model.priors[first + 54, :2], torch.tensor([80 / 320] * 2))


@pytest.mark.parametrize(("preset", "extras"), [("ssdlite320_mobilenet_v2", 3), ("ssd300_resnet50", 4)])
def test_maps_and_aspect_ratios_must_agree(preset, extras):
    fewer = model_config(preset).extras[:extras]  # one map fewer than the six aspect_ratios rows
    with pytest.raises(SSDError, match=r"gives 5 feature maps, but model\.aspect_ratios lists 6"):
        ssd.build_model(preset, extras=fewer)


@pytest.mark.parametrize(("key", "value"), [("backbone", "resnet18"), ("head", "dense")])
def test_unknown_backbone_or_head(key, value):
    with pytest.raises(SSDError, match=rf"model\.{key} must be one of .*got '{value}'"):
        ssd.build_model("ssdlite320_mobilenet_v2", **{key: value})


@pytest.mark.parametrize(
    ("preset", "key", "message"),
    [
        ("ssd300_resnet50", "reduced_tail", "reduced_tail is for the mobilenet_v3_large backbone"),
        ("ssdlite320_mobilenet_v2", "batch_norm", "batch_norm is for the vgg16 backbone"),
    ],
)
def test_backbone_specific_keys_are_refused_elsewhere(preset, key, message):
    with pytest.raises(SSDError, match=message):
        ssd.model_config(preset, **{key: True})
