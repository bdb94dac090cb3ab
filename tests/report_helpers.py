"""Checks of an evaluation report against what it was made from: the model's detections and the ground truth."""

import json
from pathlib import Path

import torch

import ssd
from ssd.data import build_dataset, load_data_config
from ssd.metrics import evaluate


def written_detections(report_dir: Path, image_ids: list) -> list[dict[str, torch.Tensor]]:
    """``report_dir/detections_coco.json`` (COCO results: xywh pixels, category id = label) as one dict per image."""
    rows: dict = {image_id: [] for image_id in image_ids}
    for row in json.loads((Path(report_dir) / "detections_coco.json").read_text()):
        rows[row["image_id"]].append(row)
    detections = []
    for image_id in image_ids:
        boxes = torch.tensor([r["bbox"] for r in rows[image_id]], dtype=torch.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        scores = torch.tensor([r["score"] for r in rows[image_id]], dtype=torch.float64)
        labels = torch.tensor([r["category_id"] for r in rows[image_id]], dtype=torch.int64)
        detections.append({"boxes": boxes, "scores": scores, "labels": labels})
    return detections


def check_report(report_dir: Path, weights: Path, data_yaml: str | Path, split: str) -> dict:
    """Assert that the written detections are the model's on every image of ``split``, in its pixels (each image's
    best detection: label, box, score), and return the VOC07 of the written detections, recomputed."""
    dataset = build_dataset(load_data_config(data_yaml), split)
    detections = written_detections(report_dir, dataset.image_ids)
    model = ssd.load(weights).eval()
    for index, written in enumerate(detections):
        with torch.no_grad():
            (own,) = model([dataset[index].image.float() / 255])
        assert len(written["scores"]) > 0 and len(own["scores"]) > 0, dataset.image_ids[index]
        best, own_best = written["scores"].argmax(), own["scores"].argmax()
        assert written["labels"][best] == own["labels"][own_best], dataset.image_ids[index]
        torch.testing.assert_close(written["scores"][best].float(), own["scores"][own_best], atol=1e-5, rtol=0)
        torch.testing.assert_close(written["boxes"][best].float(), own["boxes"][own_best], atol=1e-2, rtol=0)
    targets = [dataset.targets(i) for i in range(len(dataset))]
    return evaluate(detections, targets, "voc07", class_names=dataset.class_names)
