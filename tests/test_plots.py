"""PR curves, confusion matrix, loss and mAP curves: real PNG files of the requested pixel size, with content."""

from pathlib import Path

import matplotlib.image
import pytest
import torch
from torchvision.io import decode_image

from ssd.metrics import confusion_matrix, evaluate
from ssd.plots import plot_confusion_matrix, plot_loss_curves, plot_metric_curve, plot_pr_curves

NAMES = ["__background__", "cat", "dog", "bird"]


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")  # IHDR width, height


def assert_not_blank(path):
    pixels = matplotlib.image.imread(path)
    assert pixels[..., :3].std() > 0.01


def small_split():
    box_a, box_b, far = [0.0, 0, 50, 50], [100.0, 100, 160, 150], [300.0, 300, 320, 330]
    detections = [
        {
            "boxes": torch.tensor([box_a, far, box_b]),
            "scores": torch.tensor([0.9, 0.8, 0.4]),
            "labels": torch.tensor([1, 1, 2]),
        },
        {"boxes": torch.tensor([box_b]), "scores": torch.tensor([0.7]), "labels": torch.tensor([1])},
    ]
    targets = [
        {"boxes": torch.tensor([box_a, box_b]), "labels": torch.tensor([1, 2])},
        {"boxes": torch.tensor([box_b, far]), "labels": torch.tensor([2, 3])},
    ]
    return detections, targets


def test_pr_curves_png(tmp_path):
    detections, targets = small_split()
    result = evaluate(detections, targets, "voc", class_names=NAMES)
    path = tmp_path / "pr.png"
    plot_pr_curves(result, NAMES, path, figsize=(8, 5), dpi=50)
    assert png_size(path) == (400, 250)
    assert_not_blank(path)
    plot_pr_curves(result, NAMES, tmp_path / "default.png")
    assert png_size(tmp_path / "default.png") == (1000, 600)


def test_pr_curves_need_curves(tmp_path):
    detections, targets = small_split()
    with pytest.raises(ValueError, match="no PR curves"):
        plot_pr_curves(evaluate(detections, targets, "coco"), NAMES, tmp_path / "pr.png")


def test_confusion_matrix_png(tmp_path):
    detections, targets = small_split()
    matrix = confusion_matrix(detections, targets, num_classes=len(NAMES))
    path = tmp_path / "cm.png"
    plot_confusion_matrix(matrix, NAMES, path)  # default: max(6, 0.4 * 4 + 2) inches square at 100 dpi
    assert png_size(path) == (600, 600)
    assert_not_blank(path)
    plot_confusion_matrix(matrix, NAMES, tmp_path / "small.png", figsize=(4, 3), dpi=40)
    assert png_size(tmp_path / "small.png") == (160, 120)


def test_plots_are_800_by_500_pngs(tmp_path: Path):
    steps = range(0, 100, 10)
    history = {"loc": [(i, 3.0 / (i + 1)) for i in steps], "conf": [(i, 5.0 / (i + 1)) for i in steps]}
    plot_loss_curves(history, tmp_path / "loss.png")
    plot_metric_curve([(1000, 0.31), (2000, 0.45), (3000, 0.52)], tmp_path / "plots" / "map.png")
    for name in ("loss.png", "plots/map.png"):
        image = decode_image(str(tmp_path / name))
        assert image.shape[-2:] == (500, 800)
        assert (image[:3] < 128).any() and (image[:3] > 200).any()  # lines and text on a light background
