import math

import torch

from ssd.boxes import cxcywh_to_xyxy, decode, encode, match, pad_boxes, xyxy_to_cxcywh

VAR = [0.1, 0.1, 0.2, 0.2]
# four priors tiling the unit square in quadrants
QUADRANTS = torch.tensor([[0, 0, 0.5, 0.5], [0.5, 0, 1, 0.5], [0, 0.5, 0.5, 1], [0.5, 0.5, 1, 1]])


def test_encode_by_hand():
    prior = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    gt = torch.tensor([[0.52, 0.46, 0.4, 0.2]])
    # (0.02 / (0.1 * 0.2), -0.04 / (0.1 * 0.4), log(2) / 0.2, log(0.5) / 0.2)
    expected = torch.tensor([[1.0, -1.0, math.log(2) / 0.2, math.log(0.5) / 0.2]])
    torch.testing.assert_close(encode(gt, prior, VAR), expected)


def test_encode_decode_round_trip():
    priors = torch.rand(500, 4) * 0.5 + 0.1
    boxes = torch.rand(500, 4) * 0.5 + 0.1
    torch.testing.assert_close(decode(encode(boxes, priors, VAR), priors, VAR), boxes, atol=1e-5, rtol=1e-5)


def test_decode_caps_extreme_sizes():
    out = decode(torch.tensor([[0.0, 0.0, 1e4, 1e4]]), torch.tensor([[0.5, 0.5, 0.1, 0.1]]), VAR)
    assert torch.isfinite(out).all()


def test_format_conversions_round_trip():
    xyxy = torch.tensor([[0.1, 0.2, 0.5, 0.9]])
    torch.testing.assert_close(xyxy_to_cxcywh(xyxy), torch.tensor([[0.3, 0.55, 0.4, 0.7]]))
    torch.testing.assert_close(cxcywh_to_xyxy(xyxy_to_cxcywh(xyxy)), xyxy)


def _match_one(gt, priors=QUADRANTS, threshold=0.5):
    boxes, labels, valid = pad_boxes([gt], [torch.ones(len(gt), dtype=torch.int64)])
    return match(boxes, valid, priors, threshold)[0]


def test_no_ground_truth_means_all_background():
    boxes, labels, valid = pad_boxes([torch.zeros(0, 4)], [torch.zeros(0, dtype=torch.int64)])
    assert match(boxes, valid, QUADRANTS).tolist() == [[-1, -1, -1, -1]]


def test_tiny_box_still_gets_its_best_prior():
    # IoU with the first quadrant is 1e-4 / 0.25, far below 0.5, but it is forced
    assert _match_one(torch.tensor([[0.1, 0.1, 0.11, 0.11]])).tolist() == [0, -1, -1, -1]


def test_box_covering_the_image():
    # IoU 0.25 with every quadrant: only the forced (first, on a tie) prior is positive ...
    assert _match_one(torch.tensor([[0.0, 0.0, 1.0, 1.0]])).tolist() == [0, -1, -1, -1]
    # ... while a prior that covers the image too matches by the threshold rule
    priors = torch.cat([QUADRANTS, torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.6]])])
    assert _match_one(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), priors).tolist() == [-1, -1, -1, -1, 0, 0]


def test_two_boxes_with_the_same_best_prior_do_not_steal():
    g0 = [0.0, 0.0, 0.5, 0.4]  # IoU with quadrant 0: 0.2 / 0.25 = 0.8
    g1 = [0.2, 0.2, 0.55, 0.45]  # IoU with quadrant 0: 0.075 / 0.2625 = 0.286, with quadrant 1: 0.0125 / 0.325
    # g0 keeps quadrant 0 (higher overlap); g1 falls back to its next best, quadrant 1
    assert _match_one(torch.tensor([g0, g1])).tolist() == [0, 1, -1, -1]
    # the order of the ground truths does not matter
    assert _match_one(torch.tensor([g1, g0])).tolist() == [1, 0, -1, -1]


def test_threshold_rule_and_best_ground_truth():
    priors = torch.tensor([[0, 0, 0.5, 0.5], [0, 0, 0.5, 0.45], [0.5, 0.5, 1, 1]])
    gt = torch.tensor([[0.0, 0.0, 0.5, 0.5]])
    # prior 1 has IoU 0.9 >= 0.5: positive too; prior 2 does not overlap
    assert _match_one(gt, priors).tolist() == [0, 0, -1]
    assert _match_one(gt, priors, threshold=0.95).tolist() == [0, -1, -1]


def test_batched_matching_equals_one_image_at_a_time():
    priors = cxcywh_to_xyxy(torch.rand(300, 4) * 0.5 + 0.2)
    gts = []
    for n in (3, 0, 7):
        corner, size = torch.rand(n, 2) * 0.7, torch.rand(n, 2) * 0.3 + 0.01
        gts.append(torch.cat([corner, corner + size], dim=1))
    labels = [torch.ones(len(g), dtype=torch.int64) for g in gts]
    boxes, _, valid = pad_boxes(gts, labels)
    batched = match(boxes, valid, priors)
    for i, g in enumerate(gts):
        b1, _, v1 = pad_boxes([g], [labels[i]])
        torch.testing.assert_close(batched[i], match(b1, v1, priors)[0])
    # every ground truth owns at least one prior, and forced priors are distinct
    for i, g in enumerate(gts):
        assert set(batched[i][batched[i] >= 0].tolist()) == set(range(len(g)))
