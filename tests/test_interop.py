import pytest
import torch
from torchvision.models.detection import ssd300_vgg16
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_convert

import ssd
from bench_vs_torchvision import torchvision_ssdlite
from ssd.errors import SSDError
from ssd.layout import apply_layout

CPU = torch.device("cpu")


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
    ours = apply_layout(ssd.from_torchvision(torchvision_ssd.state_dict()), CPU, training=False, setting=False)
    x = torch.randn(2, 3, 300, 300) * 50
    with torch.no_grad():
        features = list(torchvision_ssd.backbone(x).values())
        head = torchvision_ssd.head(features)
        loc, conf = ours.net(x)
    torch.testing.assert_close(loc, head["bbox_regression"])
    torch.testing.assert_close(conf, head["cls_logits"])


def test_rejects_other_state_dicts():
    with pytest.raises(SSDError, match="not a torchvision ssd300_vgg16 or ssdlite320_mobilenet_v3_large"):
        ssd.from_torchvision({"foo": torch.zeros(1)})


@pytest.fixture(scope="module")
def torchvision_lite():
    return torchvision_ssdlite(num_classes=91)


def test_ssdlite_has_torchvision_parameters_and_default_boxes(torchvision_lite):
    ours = ssd.from_torchvision(torchvision_lite.state_dict())
    assert sum(p.numel() for p in ours.parameters()) == 3_440_060
    assert ours.config.reduced_tail and ours.num_classes == 91
    features = list(torchvision_lite.backbone(torch.zeros(1, 3, 320, 320)).values())
    image_list = ImageList(torch.zeros(1, 3, 320, 320), [(320, 320)])
    anchors_xyxy = torchvision_lite.anchor_generator(image_list, features)[0]
    torch.testing.assert_close(box_convert(ours.priors, "cxcywh", "xyxy") * 320, anchors_xyxy, atol=1e-4, rtol=0)


def test_ssdlite_same_detections_as_torchvision(torchvision_lite, tmp_path):
    path = tmp_path / "tv_ssdlite.pth"
    torch.save(torchvision_lite.state_dict(), path)
    ours = ssd.from_torchvision(path)
    images = [torch.rand(3, 240, 320), torch.rand(3, 320, 320), torch.rand(3, 411, 199)]
    with torch.no_grad():
        expected, got = torchvision_lite(images), ours(images)
    for e, g in zip(expected, got):
        assert len(g["scores"]) == len(e["scores"]) == 300
        same = (g["labels"] == e["labels"]) & ((g["boxes"] - e["boxes"]).abs().amax(dim=1) < 1e-2)
        assert same.float().mean() >= 0.98
        assert (g["scores"] - e["scores"]).abs().max() < 1e-4
