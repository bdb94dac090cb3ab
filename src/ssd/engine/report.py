"""The evaluation report: metrics.json, COCO-format detections, PR curves, confusion matrix, and the printed table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor

from ..metrics import confusion_matrix, evaluate, to_coco_results, to_json_dict
from ..plots import plot_confusion_matrix, plot_pr_curves


def write_report(
    out_dir: Path,
    results: dict[str, dict[str, Any]],
    detections: list[dict[str, Tensor]],
    targets: list[dict[str, Tensor]],
    class_names: list[str],
    label_to_category_id: dict[int, int] | None = None,
) -> None:
    """metrics.json, detections in the COCO results format, PR curves and the confusion matrix, into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {name: to_json_dict(result, class_names) for name, result in results.items()}
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    image_ids = [t["image_id"].item() if isinstance(t["image_id"], Tensor) else t["image_id"] for t in targets]
    coco_results = to_coco_results(detections, image_ids, label_to_category_id)
    (out_dir / "detections_coco.json").write_text(json.dumps(coco_results))
    voc_result = next((r for n, r in results.items() if n in ("voc07", "voc")), None)
    if voc_result is None:  # the curves come from the VOC evaluation
        voc_result = evaluate(detections, targets, "voc07", class_names=class_names)
    plot_pr_curves(voc_result, class_names, out_dir / "pr_curves.png")
    matrix = confusion_matrix(detections, targets, len(class_names), iou_threshold=0.5)
    plot_confusion_matrix(matrix, class_names, out_dir / "confusion_matrix.png")


def format_table(results: dict[str, dict[str, Any]], class_names: list[str]) -> str:
    """Per-class table: class, ground-truth count, AP per metric; the mean last."""
    names = list(results)
    first = results[names[0]]
    num_gt = first.get("num_gt", {})
    width = max(12, *(len(n) for n in class_names))
    lines = [f"{'class':<{width}} {'gt':>7} " + " ".join(f"{n:>8}" for n in names)]
    for label in range(1, len(class_names)):
        aps = []
        for n in names:
            ap = results[n]["per_class"].get(label)
            aps.append(f"{ap:8.4f}" if ap is not None else f"{'-':>8}")
        lines.append(f"{class_names[label]:<{width}} {int(num_gt.get(label, 0)):>7} " + " ".join(aps))
    total = sum(int(v) for v in num_gt.values())
    lines.append(f"{'mean':<{width}} {total:>7} " + " ".join(f"{float(results[n]['map']):8.4f}" for n in names))
    return "\n".join(lines)
