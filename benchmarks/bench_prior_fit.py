"""Default boxes fitted to the data (``model.prior_fit: auto``) against the config's own, on three synthetic sets:
the demo's shapes, small shapes (4-12% of the side) and long thin shapes (drawn 3 times wider than high).

Each run trains the demo's ``shapes`` config for the same number of iterations (not minutes, so that the budget
does not depend on the machine's load) and scores VOC07 mAP on the held-out test split. Prints a markdown table.

    python benchmarks/bench_prior_fit.py --iterations 1500 --out prior_fit.md
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from ssd.build import build_model
from ssd.config import load_run_config
from ssd.data import build_dataset, load_data_config
from ssd.data.check import normalized_boxes
from ssd.engine.demo import run_demo
from ssd.prior_fit import fit_priors

SETS = {
    "shapes (demo)": {},
    "small shapes": {"size_range": (0.04, 0.12)},
    "long thin shapes": {"size_range": (0.08, 0.3), "stretch": 3},
}


def coverage(data_yaml: Path) -> tuple[float, float]:
    """Share of training boxes with a default box at IoU >= 0.5: the config's boxes, and the fitted ones."""
    run = load_run_config("shapes")
    model = build_model(run.preset, 7, **run.model)
    boxes = normalized_boxes(build_dataset(load_data_config(data_yaml), "train"))
    fit = fit_priors(boxes, model.config, model.feature_sizes)
    return fit.before.share_iou50, fit.after.share_iou50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--train-images", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0, help="train.seed of every run")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS), help="which data sets")
    parser.add_argument("--out", help="also write the table to this markdown file")
    args = parser.parse_args()
    lines = ["| data | coverage: config | fitted | VOC07 mAP: config | fitted |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as work:
        for name in args.sets:
            variant = SETS[name]
            data_dir = Path(work) / name.split()[0]
            shapes = {"num_train": args.train_images, "num_val": 0, "num_test": 300, "image_size": 192, **variant}
            scores = {}
            for fit in ("off", "auto"):
                overrides = [f"train.iterations={args.iterations}", "train.max_minutes=600", "train.eval_interval=0",
                             f"train.seed={args.seed}", f"model.prior_fit={fit}"]  # fmt: skip
                summary = run_demo(data_dir, Path(work) / f"run_{fit}", overrides=overrides, progress=False,
                                   shapes=shapes)  # fmt: skip
                scores[fit] = summary["voc07_map"]
            before, after = coverage(data_dir / "shapes.yaml")
            lines.append(f"| {name} | {before:.1%} | {after:.1%} | {scores['off']:.3f} | {scores['auto']:.3f} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    print(json.dumps({"iterations": args.iterations, "train_images": args.train_images, "seed": args.seed}))


if __name__ == "__main__":
    main()
