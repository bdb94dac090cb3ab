import math

import torch

import ssd
from model_helpers import overfit
from ssd.boxes import xyxy_to_cxcywh
from ssd.loss import MultiBoxLoss

QUADRANTS_CXCYWH = xyxy_to_cxcywh(
    torch.tensor([[0, 0, 0.5, 0.5], [0.5, 0, 1, 0.5], [0, 0.5, 0.5, 1], [0.5, 0.5, 1, 1]])
)


def _targets(boxes, labels):
    boxes = torch.tensor([boxes], dtype=torch.float32).reshape(1, -1, 4)
    labels = torch.tensor([labels], dtype=torch.int64).reshape(1, -1)
    return boxes, labels, torch.ones_like(labels, dtype=torch.bool)


def test_loss_by_hand():
    loss_fn = MultiBoxLoss(QUADRANTS_CXCYWH)
    gt = _targets([[0, 0, 0.5, 0.5]], [2])  # exactly prior 0: encoded target is 0
    loc = torch.ones(1, 4, 4)  # smooth L1 of an error of 1 is 0.5, four coordinates -> 2.0
    conf = torch.zeros(1, 4, 3)  # every cross-entropy is log(3)
    losses = loss_fn(loc, conf, *gt)
    # 1 positive, min(3 * 1, 4 - 1) = 3 negatives, N = 1
    torch.testing.assert_close(losses["loc"], torch.tensor(2.0))
    torch.testing.assert_close(losses["conf"], torch.tensor(4 * math.log(3)))


def test_alpha_weights_the_localisation_term():
    gt = _targets([[0, 0, 0.5, 0.5]], [2])
    loc, conf = torch.ones(1, 4, 4), torch.zeros(1, 4, 3)
    plain = MultiBoxLoss(QUADRANTS_CXCYWH)(loc, conf, *gt)
    weighted = MultiBoxLoss(QUADRANTS_CXCYWH, loc_weight=0.5)(loc, conf, *gt)
    torch.testing.assert_close(weighted["loc"], plain["loc"] * 0.5)
    torch.testing.assert_close(weighted["conf"], plain["conf"])


def test_hard_negatives_are_the_highest_loss_background_priors():
    loss_fn = MultiBoxLoss(QUADRANTS_CXCYWH, neg_pos_ratio=1)
    gt = _targets([[0, 0, 0.5, 0.5]], [1])
    conf = torch.zeros(1, 4, 3)
    conf[0, 2, 2] = 5.0  # prior 2 confidently predicts a class: the hardest negative
    conf[0, 3, 1] = 1.0
    losses = loss_fn(torch.zeros(1, 4, 4), conf, *gt)
    ce_pos = math.log(3)  # prior 0: all logits equal
    ce_hard = -math.log(math.exp(0) / (2 + math.exp(5)))  # prior 2's background probability
    torch.testing.assert_close(losses["conf"], torch.tensor(ce_pos + ce_hard))


def test_zero_positives_gives_a_finite_zero_loss():
    loss_fn = MultiBoxLoss(QUADRANTS_CXCYWH)
    empty = torch.zeros(1, 0, 4), torch.zeros(1, 0, dtype=torch.int64), torch.zeros(1, 0, dtype=torch.bool)
    loc = torch.randn(1, 4, 4, requires_grad=True)
    conf = torch.randn(1, 4, 3, requires_grad=True)
    losses = loss_fn(loc, conf, *empty)
    total = sum(losses.values())
    assert torch.isfinite(total) and total.item() == 0.0
    total.backward()
    assert torch.isfinite(loc.grad).all() and torch.isfinite(conf.grad).all()


def test_negatives_are_limited_per_image():
    # image 0 has one positive, image 1 none: image 1 contributes no negatives
    loss_fn = MultiBoxLoss(QUADRANTS_CXCYWH)
    boxes = torch.tensor([[[0, 0, 0.5, 0.5]], [[0, 0, 0, 0]]], dtype=torch.float32)
    labels = torch.tensor([[1], [0]])
    valid = torch.tensor([[True], [False]])
    conf = torch.zeros(2, 4, 3)
    losses = loss_fn(torch.zeros(2, 4, 4), conf, boxes, labels, valid)
    torch.testing.assert_close(losses["conf"], torch.tensor(4 * math.log(3)))


def test_tiny_model_overfits_a_few_boxes():
    torch.manual_seed(0)
    model = ssd.build_model("ssd300_vgg16", num_classes=3, width=0.125, input_size=300).train()
    images = [torch.rand(3, 120, 160), torch.rand(3, 100, 100)]
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 70.0, 90.0], [80.0, 10.0, 150.0, 60.0]]), "labels": torch.tensor([1, 2])},
        {"boxes": torch.tensor([[30.0, 30.0, 60.0, 80.0]]), "labels": torch.tensor([2])},
    ]
    history = overfit(model, images, targets, steps=30, lr=1e-3)
    assert all(math.isfinite(v) for v in history)
    assert history[-1] < 0.5 * history[0]
