"""VOC AP (2007 11-point and 2010+ all-point): hand-worked cases and a literal devkit loop on random data."""

import math

import numpy as np
import pytest
import torch

from ssd.metrics import evaluate, to_json_dict
from ssd.metrics.voc import average_precision, inclusive_iou, voc_evaluate


def det(boxes, scores, labels):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def gt(boxes, labels, difficult=None):
    target = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels)}
    if difficult is not None:
        target["difficult"] = torch.tensor(difficult, dtype=torch.bool)
    return target


A = [0, 0, 9, 9]  # 10 x 10 pixels inclusive
B = [20, 20, 29, 29]
FAR = [50, 50, 59, 59]


def test_two_images_three_gts_four_detections():
    # image 0: GT A, B; image 1: GT A.  Detections (class 1), ranked by score:
    #   0.9 img0 A -> TP (GT img0/A)      tp 1 fp 0   P 1/1   R 1/3
    #   0.8 img1 FAR -> FP (no overlap)   tp 1 fp 1   P 1/2   R 1/3
    #   0.7 img1 A -> TP (GT img1/A)      tp 2 fp 1   P 2/3   R 2/3
    #   0.6 img0 A -> FP (duplicate)      tp 2 fp 2   P 2/4   R 2/3
    # 11-point: t = 0, .1, .2, .3 -> max P at R >= t = 1; t = .4, .5, .6 -> 2/3; t = .7 .. 1 -> 0
    #   AP = (4 * 1 + 3 * 2/3) / 11 = 6/11
    # all-point: envelope 1 on (0, 1/3], 2/3 on (1/3, 2/3]: AP = 1/3 * 1 + 1/3 * 2/3 = 5/9
    detections = [det([A, A], [0.9, 0.6], [1, 1]), det([FAR, A], [0.8, 0.7], [1, 1])]
    targets = [gt([A, B], [1, 1]), gt([A], [1])]
    r07 = evaluate(detections, targets, "voc07")
    r10 = evaluate(detections, targets, "voc")
    assert r07["per_class"][1] == pytest.approx(6 / 11)
    assert r07["map"] == pytest.approx(6 / 11)
    assert r10["per_class"][1] == pytest.approx(5 / 9)
    assert r10["num_gt"] == {1: 3}
    precision, recall = r10["curves"][1]
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3, 2 / 4])
    np.testing.assert_allclose(recall, [1 / 3, 1 / 3, 2 / 3, 2 / 3])


def test_detection_on_difficult_gt_is_ignored_and_difficult_not_counted():
    # GT A (normal) and B (difficult). The 0.9 detection on B is ignored (neither TP nor FP), twice;
    # the 0.5 detection on A is a TP. Positives: 1 (B not counted) -> P = [1], R = [1] -> AP 1 both ways.
    # Were B counted as a positive, R would stop at 1/2; were the B detections FPs, P would be 1/3.
    detections = [det([B, B, A], [0.9, 0.8, 0.5], [1, 1, 1])]
    targets = [gt([A, B], [1, 1], difficult=[False, True])]
    for metric in ("voc07", "voc"):
        result = evaluate(detections, targets, metric)
        assert result["per_class"][1] == pytest.approx(1.0)
        assert result["num_gt"] == {1: 1}
        precision, recall = result["curves"][1]
        np.testing.assert_allclose(precision, [1.0])
        np.testing.assert_allclose(recall, [1.0])


def test_detection_keeps_its_best_gt_even_when_taken():
    # GT A = [0,0,9,9] and A2 = [2,0,11,9]. Detection 1 (0.9) is exactly A -> TP.
    # Detection 2 (0.8) = [0.5,0,9.5,9]: IoU with A = 95/105 = 0.905, with A2 = 85/115 = 0.739 (inclusive).
    # The devkit matches it to A (best IoU), already taken -> FP; it does not fall back to A2.
    # P = [1, 1/2], R = [1/2, 1/2] -> 11-point: t = 0 .. .5 -> 1 (6 points) -> 6/11; all-point 1/2.
    detections = [det([A, [0.5, 0, 9.5, 9]], [0.9, 0.8], [1, 1])]
    targets = [gt([A, [2, 0, 11, 9]], [1, 1])]
    assert evaluate(detections, targets, "voc07")["map"] == pytest.approx(6 / 11)
    assert evaluate(detections, targets, "voc")["map"] == pytest.approx(0.5)


def test_iou_tie_goes_to_the_first_gt():
    # GT g0 = [0,0,9,9], g1 = [2,0,11,9]. Detection 1 (0.9) = [1,0,10,9] overlaps both by 9 x 10 px: IoU 90/110
    # each; the devkit's strict "ov > ovmax" keeps g0 -> TP. Detection 2 (0.8) = g1 exactly -> TP. AP = 1.
    # (Keeping the last tied GT would give g1 to detection 1 and make detection 2 a duplicate FP.)
    detections = [det([[1, 0, 10, 9], [2, 0, 11, 9]], [0.9, 0.8], [1, 1])]
    targets = [gt([A, [2, 0, 11, 9]], [1, 1])]
    assert evaluate(detections, targets, "voc")["map"] == pytest.approx(1.0)


def test_inclusive_pixel_convention_crosses_the_threshold():
    # GT [0,0,2,2], detection [0,0,2,4.5]. Continuous areas: 4 and 9, IoU 4/9 = 0.444 < 0.5 -> FP.
    # Devkit (+1): GT 3*3 = 9, detection 3*5.5 = 16.5, intersection 9 -> IoU 9/16.5 = 0.545 -> TP.
    box_gt, box_det = [0, 0, 2, 2], [0, 0, 2, 4.5]
    iou = inclusive_iou(np.array([box_det], dtype=float), np.array([box_gt], dtype=float))
    assert iou[0] == pytest.approx(9 / 16.5)
    result = evaluate([det([box_det], [0.9], [1])], [gt([box_gt], [1])], "voc")
    assert result["map"] == pytest.approx(1.0)


def test_iou_exactly_at_threshold_is_a_match():
    # GT [0,0,1,1] (2*2 = 4 px inclusive), detection [0,0,1,3] (2*4 = 8): IoU 4/8 = 0.5 >= 0.5 -> TP,
    # as VOCevaldet.m's "ovmax >= minoverlap".
    result = evaluate([det([[0, 0, 1, 3]], [0.9], [1])], [gt([[0, 0, 1, 1]], [1])], "voc07")
    assert result["map"] == pytest.approx(1.0)


def test_classes_without_detections_or_without_gt():
    # class 1: GT A, detection A -> AP 1; class 2: GT B, no detection -> AP 0 (counted in the mean);
    # class 3: a detection but no GT -> None, left out of the mean; class 4 (from class_names): nothing -> None.
    names = ["__background__", "a", "b", "c", "d"]
    detections = [det([A, FAR], [0.9, 0.8], [1, 3])]
    targets = [gt([A, B], [1, 2])]
    result = voc_evaluate(detections, targets, use_07_metric=False, class_names=names)
    assert result["per_class"] == {1: pytest.approx(1.0), 2: 0.0, 3: None, 4: None}
    assert result["map"] == pytest.approx(0.5)
    assert result["num_gt"] == {1: 1, 2: 1, 3: 0, 4: 0}
    assert set(result["curves"]) == {1, 2}
    assert len(result["curves"][2][0]) == 0


def test_class_with_only_difficult_gt_is_undefined():
    result = evaluate([det([A], [0.9], [1])], [gt([A], [1], difficult=[True])], "voc")
    assert result["per_class"] == {1: None}
    assert result["map"] == -1.0


def test_detection_labels_never_match_other_classes():
    # The detection overlaps the class-1 GT perfectly but says class 2: FP for 2 (no GT: None), miss for 1.
    result = evaluate([det([A], [0.9], [2])], [gt([A], [1])], "voc")
    assert result["per_class"] == {1: 0.0, 2: None}


def test_average_precision_formulas():
    precision = np.array([1.0, 0.5, 2 / 3])
    recall = np.array([0.25, 0.25, 0.5])
    # 11-point: t = 0 .. .2 -> 1 (3 pts), t = .3 .. .5 -> 2/3 (3 pts): (3 + 2) / 11
    assert average_precision(precision, recall, True) == pytest.approx(5 / 11)
    # all-point: 0.25 * 1 + 0.25 * 2/3
    assert average_precision(precision, recall, False) == pytest.approx(0.25 + 0.25 * 2 / 3)
    assert average_precision(np.zeros(0), np.zeros(0), True) == 0.0
    assert average_precision(np.zeros(0), np.zeros(0), False) == 0.0


def devkit_ap(detections, targets, label, use_07_metric):
    """A literal transcription of VOCevaldet.m's loop (one class), as the reference."""
    gts = []
    npos = 0
    for t in targets:
        keep = t["labels"] == label
        diff = t.get("difficult", torch.zeros(len(t["labels"]), dtype=torch.bool))[keep]
        bb = t["boxes"][keep].double().numpy()
        gts.append({"bb": bb, "diff": diff.numpy(), "det": np.zeros(len(bb), bool)})
        npos += int((~diff).sum())
    ids, conf, bbs = [], [], []
    for i, d in enumerate(detections):
        keep = d["labels"] == label
        ids += [i] * int(keep.sum())
        conf += d["scores"][keep].tolist()
        bbs += d["boxes"][keep].double().tolist()
    order = np.argsort(-np.array(conf), kind="stable")
    tp, fp = np.zeros(len(order)), np.zeros(len(order))
    for n, k in enumerate(order):
        g = gts[ids[k]]
        bb = bbs[k]
        ovmax, jmax = -math.inf, -1
        for j, bbgt in enumerate(g["bb"]):
            iw = min(bb[2], bbgt[2]) - max(bb[0], bbgt[0]) + 1
            ih = min(bb[3], bbgt[3]) - max(bb[1], bbgt[1]) + 1
            if iw > 0 and ih > 0:
                ua = (
                    (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1)
                    + (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1)
                    - iw * ih
                )
                if iw * ih / ua > ovmax:
                    ovmax, jmax = iw * ih / ua, j
        if ovmax >= 0.5:
            if not g["diff"][jmax]:
                if not g["det"][jmax]:
                    tp[n] = 1
                    g["det"][jmax] = True
                else:
                    fp[n] = 1
        else:
            fp[n] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07_metric:
        return sum(max(prec[rec >= t], default=0.0) for t in np.arange(11) / 10) / 11
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def random_split(num_images, num_classes, seed):
    g = torch.Generator().manual_seed(seed)
    detections, targets = [], []
    for _ in range(num_images):
        n_gt = int(torch.randint(0, 6, (1,), generator=g))
        xy = torch.randint(0, 40, (n_gt, 2), generator=g).float()
        boxes = torch.cat([xy, xy + torch.randint(1, 20, (n_gt, 2), generator=g)], 1)
        labels = torch.randint(1, num_classes, (n_gt,), generator=g)
        targets.append({"boxes": boxes, "labels": labels, "difficult": torch.rand(n_gt, generator=g) < 0.2})
        n_det = int(torch.randint(0, 12, (1,), generator=g))
        src = torch.randint(0, max(n_gt, 1), (n_det,), generator=g)
        base = boxes[src] if n_gt else torch.tensor([[0.0, 0, 10, 10]]).expand(n_det, 4)
        dboxes = base + torch.randint(-3, 4, (n_det, 4), generator=g).float()
        dlabels = labels[src] if n_gt else torch.randint(1, num_classes, (n_det,), generator=g)
        flip = torch.rand(n_det, generator=g) < 0.2
        dlabels = torch.where(flip, torch.randint(1, num_classes, (n_det,), generator=g), dlabels)
        # scores on a coarse grid so ties happen and the stable ranking is exercised
        scores = torch.randint(0, 10, (n_det,), generator=g).float() / 10
        detections.append({"boxes": dboxes, "scores": scores, "labels": dlabels})
    return detections, targets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_literal_devkit_loop_on_random_data(seed):
    num_classes = 4
    detections, targets = random_split(40, num_classes, seed)
    for metric, use_07 in (("voc07", True), ("voc", False)):
        result = evaluate(detections, targets, metric, class_names=["bg", "a", "b", "c"])
        for label in range(1, num_classes):
            if result["num_gt"][label] == 0:
                assert result["per_class"][label] is None
            else:
                expected = devkit_ap(detections, targets, label, use_07)
                assert result["per_class"][label] == pytest.approx(expected, abs=1e-12)


def test_empty_inputs_and_json():
    result = evaluate([det([], [], []), det([], [], [])], [gt([A], [1]), gt([], [])], "voc07", class_names=["bg", "x"])
    assert result["per_class"] == {1: 0.0}
    as_json = to_json_dict(result, class_names=["bg", "x"])
    assert as_json == {"metric": "voc07", "map": 0.0, "per_class": {"x": 0.0}, "num_gt": {"x": 1}}


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="detection dicts"):
        evaluate([det([A], [0.9], [1])], [], "voc")
    with pytest.raises(ValueError, match=r"detections\[0\]: labels"):
        evaluate([det([A], [0.9], [0])], [gt([A], [1])], "voc")
    with pytest.raises(ValueError, match=r"targets\[0\]: labels"):
        evaluate([det([A], [0.9], [1])], [gt([A], [5])], "voc", class_names=["bg", "a"])
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate([], [], "map")
