"""Detection confusion matrix: a hand-worked image and counting invariants on random data."""

import torch

from ssd.metrics import confusion_matrix


def boxes(*rows):
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


def test_hand_case():
    # Classes: 0 background, 1, 2. Image 0 ground truth: A (1), B (2), C (1), D (2, difficult).
    A, B, C, D, FAR = [0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70], [80, 80, 90, 90]
    detections = [
        {
            # A as 1 -> [1, 1]; B as 1 -> [2, 1]; FAR as 2 -> FP [0, 2]; C below the score threshold -> C
            # missed [1, 0]; A shifted (IoU 90/110 with A, but A keeps its IoU-1 detection) -> FP [0, 1];
            # D as 2 -> matched to a difficult GT, not counted.
            "boxes": boxes(A, B, FAR, C, [1, 0, 11, 10], D),
            "scores": torch.tensor([0.9, 0.8, 0.7, 0.1, 0.6, 0.5]),
            "labels": torch.tensor([1, 1, 2, 1, 1, 2]),
        },
        # image 1: a crowd GT of class 1 detected as 2, and a difficult GT of class 2 missed: nothing counted
        {"boxes": boxes(A), "scores": torch.tensor([0.9]), "labels": torch.tensor([2])},
    ]
    targets = [
        {
            "boxes": boxes(A, B, C, D),
            "labels": torch.tensor([1, 2, 1, 2]),
            "difficult": torch.tensor([False, False, False, True]),
        },
        {
            "boxes": boxes(A, B),
            "labels": torch.tensor([1, 2]),
            "iscrowd": torch.tensor([True, False]),
            "difficult": torch.tensor([False, True]),
        },
    ]
    matrix = confusion_matrix(detections, targets, num_classes=3)
    expected = torch.tensor(
        [
            [0, 1, 1],  # true background: false positives predicted as 1, as 2
            [1, 1, 0],  # true 1: missed, found as 1, found as 2
            [0, 1, 0],  # true 2: missed, found as 1, found as 2
        ]
    )
    assert torch.equal(matrix, expected)
    assert matrix.dtype == torch.int64


def test_thresholds():
    # A 5x5 detection in the corner of a 10x10 GT: IoU 25/100, below 0.5 -> a miss and a FP;
    # with iou_threshold 0.2 it is a match. A score under score_threshold removes the detection.
    detections = [{"boxes": boxes([0, 0, 5, 5]), "scores": torch.tensor([0.3]), "labels": torch.tensor([1])}]
    targets = [{"boxes": boxes([0, 0, 10, 10]), "labels": torch.tensor([1])}]
    assert confusion_matrix(detections, targets, 2).tolist() == [[0, 1], [1, 0]]
    assert confusion_matrix(detections, targets, 2, iou_threshold=0.2).tolist() == [[0, 0], [0, 1]]
    assert confusion_matrix(detections, targets, 2, iou_threshold=0.2, score_threshold=0.5).tolist() == [[0, 0], [1, 0]]


def test_rows_and_columns_add_up_on_random_data():
    # Every non-ignored GT is counted once in its row; every kept detection not on an ignored GT once in its column.
    g = torch.Generator().manual_seed(0)
    num_classes = 5
    detections, targets = [], []
    num_gt = num_det = 0
    for _ in range(50):
        n = int(torch.randint(0, 6, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * 100
        gt_boxes = torch.cat([xy, xy + 10 + torch.rand(n, 2, generator=g) * 30], 1)
        targets.append({"boxes": gt_boxes, "labels": torch.randint(1, num_classes, (n,), generator=g)})
        m = int(torch.randint(0, 8, (1,), generator=g))
        src = torch.randint(0, max(n, 1), (m,), generator=g)
        base = gt_boxes[src] if n else torch.tensor([5.0, 5, 15, 15]).expand(m, 4)
        det_boxes = base + torch.randn(m, 4, generator=g) * 3
        scores = torch.rand(m, generator=g)
        det_labels = torch.randint(1, num_classes, (m,), generator=g)
        detections.append({"boxes": det_boxes, "scores": scores, "labels": det_labels})
        num_gt += n
        num_det += int((scores >= 0.25).sum())
    matrix = confusion_matrix(detections, targets, num_classes)
    assert matrix[1:].sum() == num_gt
    assert matrix[:, 1:].sum() == num_det
    assert matrix[0, 0] == 0
    assert matrix[1:, 1:].sum() > 0  # real matches happened
