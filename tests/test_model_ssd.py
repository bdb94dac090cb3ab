import pytest
import torch

import ssd
from ssd.errors import SSDError


def test_parameter_count_matches_the_original():
    # the original Caffe SSD300 for VOC (21 classes) has 26,285,486 parameters (26.3M)
    model = ssd.build_model("ssd300_vgg16", 21)
    assert sum(p.numel() for p in model.parameters()) == 26_285_486


def test_network_outputs_c_plus_4_per_default_box():
    model = ssd.build_model("ssd512_vgg16", 7, width=0.125)
    loc, conf = model.net(torch.zeros(2, 3, 512, 512))
    assert loc.shape == (2, 24564, 4) and conf.shape == (2, 24564, 7)
    # heads: 4k and Ck channels per source map
    assert [m.out_channels for m in model.net.head.loc] == [16, 24, 24, 24, 24, 16, 16]
    assert [m.out_channels for m in model.net.head.conf] == [28, 42, 42, 42, 42, 28, 28]


def test_l2norm_scales_unit_vectors():
    base = ssd.build_model("ssd300_vgg16", 3, width=0.125).net.backbone
    x = torch.randn(1, base.l2norm.weight.numel(), 2, 2)
    y = base.l2norm(x)
    torch.testing.assert_close(y.norm(dim=1), torch.full((1, 2, 2), 20.0))


def test_eval_returns_detections_in_original_pixels():
    model = ssd.build_model("ssd300_vgg16", 4, width=0.125).eval()
    images = [torch.rand(3, 50, 400), torch.rand(3, 333, 120)]
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for det, img in zip(out, images):
        assert set(det) == {"boxes", "scores", "labels"}
        h, w = img.shape[1:]
        assert len(det["boxes"]) <= 200
        assert (det["boxes"][:, 2] <= w).all() and (det["boxes"][:, 3] <= h).all() and (det["boxes"] >= 0).all()
        assert ((det["labels"] >= 1) & (det["labels"] < 4)).all()
        assert torch.all(det["scores"][:-1] >= det["scores"][1:])


def test_preprocess_warps_and_subtracts_the_paper_mean():
    model = ssd.build_model("ssd300_vgg16", 4, width=0.125)
    image = torch.full((3, 10, 20), 0.5)
    x = model.preprocess([image])
    assert x.shape == (1, 3, 300, 300)
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor([127.5 - 123, 127.5 - 117, 127.5 - 104]))


def test_train_mode_returns_losses():
    model = ssd.build_model("ssd300_vgg16", 4, width=0.125).train()
    targets = [{"boxes": torch.tensor([[1.0, 2.0, 30.0, 40.0]]), "labels": torch.tensor([3])}]
    losses = model([torch.rand(3, 60, 80)], targets)
    assert set(losses) == {"loc", "conf"}
    assert all(torch.isfinite(v) and v.requires_grad for v in losses.values())
    with pytest.raises(SSDError, match="needs targets"):
        model([torch.rand(3, 60, 80)])


def test_too_small_input_is_a_clear_error():
    with pytest.raises(SSDError, match="input size"):
        ssd.build_model("ssd300_vgg16", 4, input_size=64)


def test_background_prior_sets_the_initial_class_probabilities(tiny_128):
    model = ssd.build_model("ssd300_vgg16", 4, **tiny_128, background_prior=0.99)
    for conv in model.net.head.conf:
        probs = conv.bias.detach().view(-1, 4).softmax(-1)  # every default box of the map, before any input
        torch.testing.assert_close(probs, torch.tensor([[0.99, 0.01 / 3, 0.01 / 3, 0.01 / 3]]).expand_as(probs))
    zero = ssd.build_model("ssd300_vgg16", 4, **tiny_128)
    assert all(not conv.bias.any() for conv in zero.net.head.conf)  # the paper's zero biases by default
    with pytest.raises(SSDError, match="background_prior"):
        ssd.build_model("ssd300_vgg16", 4, **tiny_128, background_prior=1.0)
