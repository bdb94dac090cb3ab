import pytest
import torch
from torchvision.models import vgg16
from torchvision.models.detection import ssd300_vgg16

import ssd
from ssd.errors import SSDError


@pytest.fixture(scope="module")
def torchvision_ssd():
    torch.manual_seed(0)
    tv = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21).eval()
    with torch.no_grad():  # random weights saturate the softmax; smaller logits give distinct scores
        for conv in tv.head.classification_head.module_list:
            conv.weight.mul_(0.002)
    return tv


def test_same_detections_as_torchvision(torchvision_ssd, tmp_path):
    path = tmp_path / "tv_ssd.pth"
    torch.save(torchvision_ssd.state_dict(), path)
    ours = ssd.from_torchvision(path)  # from a file, as users have it
    assert ours.num_classes == 21 and ours.config.scales[0] == 0.07
    images = [torch.rand(3, 240, 320), torch.rand(3, 300, 300), torch.rand(3, 411, 199)]
    with torch.no_grad():
        expected = torchvision_ssd(images)
        got = ours(images)
    for e, g in zip(expected, got):
        assert len(g["scores"]) == len(e["scores"]) == 200
        assert g["labels"].tolist() == e["labels"].tolist()
        torch.testing.assert_close(g["scores"], e["scores"], atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(g["boxes"], e["boxes"], atol=5e-3, rtol=0)


def test_same_head_outputs_as_torchvision(torchvision_ssd):
    ours = ssd.from_torchvision(torchvision_ssd.state_dict())
    x = torch.randn(2, 3, 300, 300) * 50
    with torch.no_grad():
        features = list(torchvision_ssd.backbone(x).values())
        head = torchvision_ssd.head(features)
        loc, conf = ours.net(x)
    torch.testing.assert_close(loc, head["bbox_regression"])
    torch.testing.assert_close(conf, head["cls_logits"])


def test_rejects_other_state_dicts():
    with pytest.raises(SSDError, match="not a torchvision ssd300_vgg16"):
        ssd.from_torchvision({"foo": torch.zeros(1)})


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
