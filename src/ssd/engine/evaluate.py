"""Run a detector over a dataset split and score it; the training loop's periodic evaluation uses the same code."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from ..data import build_dataset, load_data_config
from ..data.loader import build_loader
from ..data.transforms import EvalTransform
from ..errors import SSDError
from ..files import atomic_write_text
from ..metrics import METRICS, evaluate
from .detectors import Detector, load_detector
from .distributed import DistInfo, gather_to_main
from .report import format_table, write_report
from .runs import new_run_dir

UNREADABLE_FILE = "unreadable_images.json"


@torch.no_grad()
def predict_dataset(
    detector: Detector,
    loader: Any,
    device: torch.device,
    dist_info: DistInfo | None = None,
    progress: bool = True,
    desc: str = "eval",
) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
    """Detections and targets for every image of ``loader`` (an EvalTransform loader), in original pixels.

    The loader yields images warped to the network size and targets holding the original boxes and
    ``orig_size``; detections are mapped back from the warped size. Under torchrun each process runs its
    shard and the lists are gathered on every rank, the sampler's padding repeats removed by image id.
    """
    dist_info = dist_info or DistInfo()
    detections: list[dict[str, Tensor]] = []
    targets: list[dict[str, Tensor]] = []
    show = progress and dist_info.is_main
    for images, batch_targets in tqdm(loader, desc=desc, disable=not show, leave=False, dynamic_ncols=True):
        if not images:  # every image of the batch was unreadable (each already warned about)
            continue
        outputs = detector([img.to(device, non_blocking=True) for img in images])
        for img, det, target in zip(images, outputs, batch_targets):
            height, width = (int(v) for v in target["orig_size"])
            scale = torch.tensor(
                [width / img.shape[-1], height / img.shape[-2]] * 2, dtype=torch.float32, device=det["boxes"].device
            )
            detections.append({k: v.cpu() for k, v in {**det, "boxes": det["boxes"] * scale}.items()})
            targets.append({k: v.cpu() if isinstance(v, Tensor) else v for k, v in target.items()})
    if not dist_info.distributed:
        return detections, targets
    pairs = gather_to_main(list(zip(detections, targets)))
    # the distributed sampler pads the last round with repeats of the first images: drop those
    unique: dict[Any, tuple[dict, dict]] = {}
    for det, target in pairs:
        key = target["image_id"]
        unique.setdefault(key.item() if isinstance(key, Tensor) else key, (det, target))
    return [p[0] for p in unique.values()], [p[1] for p in unique.values()]


def evaluate_detections(
    detections: list[dict[str, Tensor]],
    targets: list[dict[str, Tensor]],
    metrics: Sequence[str],
    class_names: list[str],
) -> dict[str, dict[str, Any]]:
    """``{metric: result}`` for each metric name (voc07, voc, coco), computed by ``ssd.metrics``."""
    return {name: evaluate(detections, targets, name, class_names=class_names) for name in metrics}


def run_evaluation(
    weights: str,
    data: str,
    *,
    split: str = "test",
    metrics: Sequence[str] = ("voc07",),
    batch_size: int = 16,
    workers: int = 2,
    device: str | None = "auto",
    backend: str = "torch",
    precision: str = "fp32",
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """``ssd eval``: run ``weights`` over a split, print the table, write the report; returns the results.

    An image that cannot be read is left out with a warning (its objects too) and listed in the report folder's
    ``unreadable_images.json``; SSDError if none can be read.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise SSDError(f"unknown metric(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(METRICS)}")
    loaded = load_detector(weights, backend, device, precision)
    dataset = build_dataset(load_data_config(data), split, transform=EvalTransform(loaded.input_size), skip_bad=True)
    if list(dataset.class_names) != loaded.class_names:
        raise SSDError(
            f"{weights}: the model's classes {loaded.class_names[1:]} differ from the dataset's "
            f"{list(dataset.class_names)[1:]}"
        )
    loader = build_loader(dataset, batch_size, shuffle=False, num_workers=workers)
    detections, targets = predict_dataset(
        loaded.detector, loader, loaded.device, progress=progress, desc=f"eval {split}"
    )
    unreadable = [dataset.paths[i] for i in dataset.unreadable.indices()]
    if not targets:
        raise SSDError(f"{data}: none of the {len(dataset)} images of split {split!r} could be read (named above)")
    results = evaluate_detections(detections, targets, metrics, loaded.class_names)
    print(format_table(results, loaded.class_names))
    out_dir = Path(out_dir) if out_dir is not None else new_run_dir("runs", None, False, prefix="eval")
    category_ids = getattr(dataset, "label_to_category_id", None)
    write_report(out_dir, results, detections, targets, loaded.class_names, category_ids)
    if unreadable:
        atomic_write_text(out_dir / UNREADABLE_FILE, json.dumps(unreadable, indent=1))
        print(
            f"{len(unreadable)} of {len(dataset)} images could not be read and are left out of the scores, their "
            f"objects included (named above; listed in {out_dir / UNREADABLE_FILE})"
        )
    print(f"report written to {out_dir}")
    return results
