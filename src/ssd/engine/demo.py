"""``ssd demo``: the whole pipeline on the built-in shapes dataset, on whatever device is there."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import load_run_config
from ..data import build_dataset, load_data_config
from ..data.shapes import generate_shapes
from ..presets import model_config
from .evaluate import run_evaluation
from .predict import predict_sources
from .predictor import Predictor
from .train import train

# fresh images rather than augmented repeats: drawing one costs less than augmenting it at every step, and a
# varied training set does not overfit in the demo's 10 minutes (docs/demo.md)
DEMO_TRAIN_IMAGES = 16_000


def save_prediction_images(weights: Path, data_yaml: Path, split: str, out_dir: Path, count: int = 12) -> None:
    """Draw the detections (score >= 0.3) of the first ``count`` images of ``split`` into ``out_dir``."""
    dataset = build_dataset(load_data_config(data_yaml), split)
    predict_sources(Predictor(weights, conf=0.3), dataset.paths[:count], out_dir, save_json=False, progress=False)


def run_demo(
    data_dir: str | Path = "datasets/shapes",
    out: str | Path = "runs/demo",
    *,
    config: str = "shapes",
    overrides: Sequence[str] = (),
    device: str | None = "auto",
    progress: bool = True,
    shapes: Mapping[str, Any] | None = None,
) -> dict:
    """Generate shapes, train the config on it, evaluate on the test split; returns the summary it writes.

    ``shapes``: keyword arguments for ``generate_shapes`` (default: ``DEMO_TRAIN_IMAGES`` training images drawn
    at the model's input size, so that the data loader has nothing to resize).
    """
    start = time.perf_counter()
    run = load_run_config(config, list(overrides))
    input_size = model_config(run.preset, **run.model).input_size
    data_yaml = generate_shapes(
        data_dir, **{"num_train": DEMO_TRAIN_IMAGES, "image_size": input_size, **(shapes or {})}
    )
    generated = time.perf_counter()
    run.data = str(data_yaml)
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    result = train(run, project=out.parent, name=out.name, exist_ok=True, device=device, progress=progress)
    trained = time.perf_counter()
    weights = out / "best.pt" if (out / "best.pt").exists() else out / "last.pt"
    results = run_evaluation(
        str(weights),
        str(data_yaml),
        split="test",
        metrics=["voc07", "voc", "coco"],
        device=device,
        workers=run.train.workers,
        out_dir=out,
        progress=progress,
    )
    save_prediction_images(weights, data_yaml, "test", out / "predictions")
    summary = {
        "voc07_map": float(results["voc07"]["map"]),
        "coco_map": float(results["coco"]["map"]),
        "iterations": result.iterations,
        "weights": weights.name,
        "seconds": {
            "generate": round(generated - start, 1),
            "train": round(trained - generated, 1),
            "total": round(time.perf_counter() - start, 1),
        },
    }
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    print(
        f"demo: VOC07 mAP@0.5 {summary['voc07_map']:.4f} on the shapes test split after "
        f"{summary['seconds']['train'] / 60:.1f} min of training; outputs in {out}"
    )
    return summary
