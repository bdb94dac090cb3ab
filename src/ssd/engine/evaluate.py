"""Run a detector over a dataset split and score it; the training loop's periodic evaluation uses the same code."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from .distributed import DistInfo, gather_to_main

Detector = Callable[[list[Tensor]], list[dict[str, Tensor]]]
PRECISIONS = ("fp32", "bf16", "fp16")


class AutocastDetector:
    """A PyTorch detector run under autocast in ``dtype`` (bf16 or fp16), while the model decodes boxes and runs
    NMS in fp32 (``postprocess`` casts the head outputs back)."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype, device: torch.device) -> None:
        self.model = model
        self.dtype = dtype
        self.device_type = device.type

    def __call__(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.model(images)


def with_precision(model: torch.nn.Module, precision: str, device: torch.device) -> Detector:
    """``model`` itself for fp32, else wrapped to run under autocast: bf16 (CPU or CUDA) or fp16 (CUDA only)."""
    from ..errors import SSDError

    if precision not in PRECISIONS:
        raise SSDError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return model
    if precision == "fp16" and device.type != "cuda":
        raise SSDError("precision fp16 needs a CUDA device; on the CPU use bf16")
    return AutocastDetector(model, torch.bfloat16 if precision == "bf16" else torch.float16, device)


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
    detections: list[dict[str, Tensor]], targets: list[dict[str, Tensor]], metrics: list[str], class_names: list[str]
) -> dict[str, dict[str, Any]]:
    """``{metric: result}`` for each metric name (voc07, voc, coco), computed by ``ssd.metrics``."""
    from ..metrics import evaluate

    return {name: evaluate(detections, targets, name, class_names=class_names) for name in metrics}


def class_names_or_default(names: list[str] | None, num_classes: int) -> list[str]:
    """The model's class names, or ``class1``, ``class2``, ... for a model saved without them."""
    return list(names or ["__background__"] + [f"class{i}" for i in range(1, num_classes)])


def load_detector(
    weights: str | Path, backend: str, device: torch.device, precision: str = "fp32"
) -> tuple[Detector, list[str], int]:
    """The detector behind ``weights`` with its class names and input size: a checkpoint (backend ``torch``,
    run in ``precision`` fp32, bf16 or fp16) or an ONNX file (backend ``onnxruntime``, which picks its own
    provider and takes CPU tensors)."""
    from ..errors import SSDError

    if backend == "onnxruntime":
        if precision != "fp32":
            raise SSDError(f"precision {precision} is for the torch backend; an ONNX model runs in its own precision")
        from ..export.runtime import OnnxRuntimeDetector

        ort_detector = OnnxRuntimeDetector(weights)
        names = class_names_or_default(ort_detector.class_names, ort_detector.num_classes)
        return ort_detector, names, int(ort_detector.input_size)
    if backend != "torch":
        raise SSDError(f"unknown backend {backend!r}: use torch or onnxruntime")
    if Path(weights).suffix.lower() == ".onnx":
        raise SSDError(f"{weights}: an ONNX file runs with backend='onnxruntime'")
    from ..checkpoint import load

    model = load(weights).to(device).eval()
    if device.type == "cpu":  # oneDNN's fastest layout: SSD300 1.2-1.4x, the shapes model 1.4-1.7x, same detections
        model.to(memory_format=torch.channels_last)
    names = class_names_or_default(model.config.class_names, model.num_classes)
    return with_precision(model, precision, device), names, model.config.input_size


def write_report(
    out_dir: Path,
    results: dict[str, dict[str, Any]],
    detections: list[dict[str, Tensor]],
    targets: list[dict[str, Tensor]],
    class_names: list[str],
    label_to_category_id: dict[int, int] | None = None,
) -> None:
    """metrics.json, detections in the COCO results format, PR curves and the confusion matrix, into ``out_dir``."""
    import json

    from ..metrics import confusion_matrix, evaluate, to_coco_results, to_json_dict
    from ..metrics.plots import plot_confusion_matrix, plot_pr_curves

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


def run_evaluation(
    weights: str,
    data: str,
    *,
    split: str = "test",
    metrics: list[str] = ("voc07",),
    batch_size: int = 16,
    workers: int = 2,
    device: str | None = "auto",
    backend: str = "torch",
    precision: str = "fp32",
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """``ssd eval``: run ``weights`` over a split, print the table, write the report; returns the results."""
    from ..data import build_dataset, load_data_config
    from ..data.loader import build_loader
    from ..data.transforms import EvalTransform
    from ..errors import SSDError
    from ..metrics import METRICS
    from .distributed import select_device

    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise SSDError(f"unknown metric(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(METRICS)}")
    torch_device = select_device(device)
    detector, class_names, input_size = load_detector(weights, backend, torch_device, precision)
    data_cfg = load_data_config(data)
    dataset = build_dataset(data_cfg, split, transform=EvalTransform(input_size), skip_bad=True)
    if list(dataset.class_names) != class_names:
        raise SSDError(
            f"{weights}: the model's classes {class_names[1:]} differ from the dataset's {list(dataset.class_names)[1:]}"
        )
    loader = build_loader(dataset, batch_size, shuffle=False, num_workers=workers)
    detections, targets = predict_dataset(detector, loader, torch_device, progress=progress, desc=f"eval {split}")
    results = evaluate_detections(detections, targets, metrics, class_names)
    print(format_table(results, class_names))
    if out_dir is None:
        from .runs import new_run_dir

        out_dir = new_run_dir("runs", None, False, prefix="eval")
    write_report(
        Path(out_dir), results, detections, targets, class_names, getattr(dataset, "label_to_category_id", None)
    )
    print(f"report written to {out_dir}")
    return results
