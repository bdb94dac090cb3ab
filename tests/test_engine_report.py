"""The evaluation report: the printed per-class table and the files written."""

import json

import torch

from ssd.engine.report import format_table, write_report
from ssd.metrics import evaluate


def test_format_table_lists_classes_gt_and_mean():
    results = {"voc07": {"map": 0.5, "per_class": {1: 0.25, 2: None}, "num_gt": {1: 3, 2: 0}}}
    lines = format_table(results, ["__background__", "cat", "dog"]).splitlines()
    assert lines[1].split() == ["cat", "3", "0.2500"]
    assert lines[2].split() == ["dog", "0", "-"]
    assert lines[-1].split() == ["mean", "3", "0.5000"]


def test_report_writes_metrics_detections_and_plots(tmp_path):
    detections = [
        {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
    ]
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([1]), "image_id": 7,
                "difficult": torch.tensor([False]), "iscrowd": torch.tensor([False])}]  # fmt: skip
    results = {"voc07": evaluate(detections, targets, "voc07", class_names=["__background__", "cat"])}
    write_report(tmp_path / "out", results, detections, targets, ["__background__", "cat"], {1: 17})
    coco = json.loads((tmp_path / "out" / "detections_coco.json").read_text())
    assert coco == [{"image_id": 7, "category_id": 17, "bbox": [0.0, 0.0, 10.0, 10.0], "score": coco[0]["score"]}]
    assert abs(coco[0]["score"] - 0.9) < 1e-6
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["voc07"]["map"] == 1.0
    assert all((tmp_path / "out" / name).stat().st_size > 0 for name in ("pr_curves.png", "confusion_matrix.png"))
