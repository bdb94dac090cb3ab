"""ImageNet weights from torchvision's files: VGG-16's fc6/fc7 decimation, and MobileNetV3-Large, MobileNetV2 and
ResNet-50 copied layer by layer, checked against torchvision's own classifiers (random weights, same keys)."""

import copy
import re
from functools import partial

import pytest
import torch
from torch import nn
from torchvision.models import mobilenet_v2, mobilenet_v3_large, resnet50, vgg16

import ssd
from ssd.errors import SSDError

SSDLITE_NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
CLASSIFIERS = {
    "ssdlite320_mobilenet_v3_large": lambda: mobilenet_v3_large(weights=None, norm_layer=SSDLITE_NORM),
    "ssdlite320_mobilenet_v2": lambda: mobilenet_v2(weights=None, norm_layer=SSDLITE_NORM),
    "ssd300_resnet50": lambda: resnet50(weights=None),
}
# the classifier's tensors that the detector does not use: the classification layers (and ResNet's layer4)
NOT_LOADED = {
    "ssdlite320_mobilenet_v3_large": ("classifier.",),
    "ssdlite320_mobilenet_v2": ("classifier.",),
    "ssd300_resnet50": ("layer4.", "fc."),
}
MV3_C4 = 13  # torchvision mobilenet_v3_large().features: the stride-2 blocks are 2, 4, 7 and 13 (C4)


@pytest.fixture(scope="module")
def imagenet_vgg_state():
    torch.manual_seed(0)
    return vgg16(weights=None).state_dict()


def test_imagenet_fc6_fc7_decimation(imagenet_vgg_state):
    converted = ssd.vgg16_from_imagenet(imagenet_vgg_state)
    conv6, conv7 = converted["conv5_to_7.8.weight"], converted["conv5_to_7.10.weight"]
    assert conv6.shape == (1024, 512, 3, 3) and conv7.shape == (1024, 1024, 1, 1)
    fc6 = imagenet_vgg_state["classifier.0.weight"].view(4096, 512, 7, 7)
    fc7 = imagenet_vgg_state["classifier.3.weight"]
    # every 4th filter; fc6 taps 0, 3, 6 of the 7x7 window; fc7 every 4th input too
    assert torch.equal(conv6[5, 7, 1, 2], fc6[20, 7, 3, 6])
    assert torch.equal(conv6[1023, 0, 2, 0], fc6[4092, 0, 6, 0])
    assert torch.equal(conv7[3, 10, 0, 0], fc7[12, 40])
    assert torch.equal(converted["conv5_to_7.8.bias"][3], imagenet_vgg_state["classifier.0.bias"][12])
    # conv5_1 comes from features.24, conv1_1 keeps its index
    assert torch.equal(converted["conv5_to_7.1.weight"], imagenet_vgg_state["features.24.weight"])
    assert torch.equal(converted["features.0.weight"], imagenet_vgg_state["features.0.weight"])


def test_build_model_with_imagenet_weights_file(imagenet_vgg_state, tmp_path):
    path = tmp_path / "vgg16.pth"
    torch.save(imagenet_vgg_state, path)
    model = ssd.build_model("ssd300_vgg16", 21, backbone_weights=path)
    base = model.net.backbone
    assert torch.equal(base.features[21].weight, imagenet_vgg_state["features.21.weight"])  # conv4_3
    assert torch.equal(base.conv5_to_7[5].weight, imagenet_vgg_state["features.28.weight"])  # conv5_3
    assert torch.all(base.l2norm.weight == 20.0)


def test_imagenet_weights_need_the_full_width_base(imagenet_vgg_state):
    with pytest.raises(SSDError, match="width"):
        ssd.build_model("ssd300_vgg16", 21, width=0.5, backbone_weights=imagenet_vgg_state)


def perturbed_batch_norms(classifier: nn.Module) -> nn.Module:
    """``classifier`` in eval mode with batch-norm statistics, scales and shifts away from their defaults."""
    with torch.no_grad():
        for m in classifier.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.2, 0.2)
                m.num_batches_tracked.fill_(7)
    return classifier.eval()


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """``imagenet(preset)``: a torchvision classifier of the preset's backbone with random weights and non-default
    batch norms, and the file of its state dict, made once per preset."""
    folder, made = tmp_path_factory.mktemp("imagenet"), {}

    def get(preset):
        if preset not in made:
            torch.manual_seed(1)
            classifier = perturbed_batch_norms(CLASSIFIERS[preset]())
            path = folder / f"{preset}.pth"
            torch.save(classifier.state_dict(), path)
            made[preset] = classifier, path
        return made[preset]

    return get


@pytest.fixture(scope="module")
def loaded(imagenet):
    """``loaded(preset)``: the preset's SSD (5 classes, eval mode) built with the classifier's file, made once."""
    made = {}

    def get(preset):
        if preset not in made:
            torch.manual_seed(2)
            model = ssd.build_model(preset, 5, backbone_weights=imagenet(preset)[1]).eval()
            made[preset] = model.to(memory_format=torch.contiguous_format)  # the layout of the reference
        return made[preset]

    return get


@pytest.mark.parametrize("preset", ["ssdlite320_mobilenet_v3_large", "ssdlite320_mobilenet_v2"])
def test_mobilenet_stages_in_sequence_are_torchvisions_features(preset, imagenet, loaded):
    classifier, _ = imagenet(preset)
    stages = loaded(preset).net.backbone.features
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected = classifier.features(x)
        got = x
        for stage in stages:
            got = stage(got)
    assert got.shape == expected.shape == (2, stages[-1][-1].out_channels, 3, 3)
    torch.testing.assert_close(got, expected)


def test_resnet50_trunk_is_torchvisions_conv1_to_layer3_at_stride_8(imagenet, loaded):
    classifier = copy.deepcopy(imagenet("ssd300_resnet50")[0])
    first = classifier.layer3[0]  # torchvision's stride sits in conv2 and the downsample; all three set to 1
    first.conv1.stride = first.conv2.stride = first.downsample[0].stride = (1, 1)
    c = classifier
    trunk = nn.Sequential(c.conv1, c.bn1, c.relu, c.maxpool, c.layer1, c.layer2, c.layer3)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = trunk(x)
        got = loaded("ssd300_resnet50").net.backbone.features(x)
    assert got.shape == expected.shape == (1, 1024, 8, 8)  # 64 / 8
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("preset", list(CLASSIFIERS))
def test_every_backbone_tensor_is_loaded_in_order(preset, imagenet, loaded):
    classifier, _ = imagenet(preset)
    expected = {k: v for k, v in classifier.state_dict().items() if not k.startswith(NOT_LOADED[preset])}
    ours = loaded(preset).net.backbone.features.state_dict()
    assert len(ours) == len(expected)
    for (key, got), want in zip(ours.items(), expected.values()):
        assert got.shape == want.shape and torch.equal(got, want), key

    backbone = loaded(preset).net.backbone
    extras = copy.deepcopy(backbone.extras.state_dict())
    assert backbone.load_imagenet(classifier.state_dict()) == len(expected)  # the number of tensors copied
    for key, value in backbone.extras.state_dict().items():
        assert torch.equal(value, extras[key]), key  # the extra layers are not touched


def test_mobilenet_v3_first_map_is_the_c4_expansion_and_the_tail_is_full(imagenet, loaded):
    classifier, _ = imagenet("ssdlite320_mobilenet_v3_large")
    model = loaded("ssdlite320_mobilenet_v3_large")
    assert model.config.reduced_tail is False  # chosen by build_model for ImageNet weights
    assert model.feature_sizes[:2] == [20, 10]  # strides 16 and 32 at 320
    assert model.net.backbone.out_channels[:2] == [672, 960]  # the full tail; the reduced one ends at 480
    x = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        sources = model.net.backbone(x)
        expansion = classifier.features[MV3_C4].block[0](classifier.features[:MV3_C4](x))
    assert sources[0].shape == (1, 672, 10, 10) and sources[1].shape == (1, 960, 5, 5)
    torch.testing.assert_close(sources[0], expansion)


def test_reduced_tail_with_imagenet_weights_is_an_error(imagenet):
    _, path = imagenet("ssdlite320_mobilenet_v3_large")
    with pytest.raises(SSDError, match=f"(?s){re.escape(str(path))}.*mobilenet_v3_large.*size mismatch"):
        ssd.build_model("ssdlite320_mobilenet_v3_large", 5, reduced_tail=True, backbone_weights=path)


def test_weights_of_another_backbone_are_an_error_naming_the_file(imagenet):
    _, path = imagenet("ssd300_resnet50")
    pattern = f"{re.escape(str(path))}: not torchvision mobilenet_v2 ImageNet weights.*unexpected.*'conv1.weight'"
    with pytest.raises(SSDError, match=pattern):
        ssd.build_model("ssdlite320_mobilenet_v2", 5, backbone_weights=path)


def test_missing_weights_file(tmp_path):
    path = tmp_path / "absent.pth"
    with pytest.raises(SSDError, match=f"{re.escape(str(path))}: weights file not found"):
        ssd.build_model("ssdlite320_mobilenet_v2", 5, backbone_weights=path)


@pytest.mark.parametrize(
    ("content", "problem"),
    [([torch.zeros(2), torch.ones(3)], "not a state dict"), (b"these are not weights", "cannot read weights")],
)
def test_a_file_that_is_not_a_state_dict(tmp_path, content, problem):
    path = tmp_path / "weights.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(SSDError, match=f"{re.escape(str(path))}: {problem}"):
        ssd.build_model("ssdlite320_mobilenet_v2", 5, backbone_weights=path)
