"""Default boxes fitted to the data (``model.prior_fit: auto``) against the config's own, on three synthetic sets:
the demo's shapes, small shapes (4-12% of the side) and long thin shapes (drawn 3 times wider than high).

Each run trains the demo's ``shapes`` config for the same number of iterations (not minutes, so that the budget
does not depend on the machine's load) and scores VOC07 mAP on the held-out test split; every set is trained
once per seed (``train.seed``, which also picks the sample the fit searches on; the images stay the same).
Prints one row per set and seed, then a markdown table of means and standard deviations over the seeds.

    python benchmarks/bench_prior_fit.py --iterations 800 --seeds 0 1 2 --out prior_fit.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from ssd.build import build_model
from ssd.config import load_run_config
from ssd.data import build_dataset, load_data_config
from ssd.data.check import normalized_boxes
from ssd.engine.demo import run_demo
from ssd.prior_fit import PriorFit, fit_priors

SETS = {
    "shapes (demo)": {},
    "small shapes": {"size_range": (0.04, 0.12)},
    "long thin shapes": {"size_range": (0.08, 0.3), "stretch": 3},
}


def fit(data_yaml: Path, seed: int) -> PriorFit:
    """The fit that ``prior_fit: auto`` makes with this ``train.seed``, scored on every training box: coverage at
    IoU >= 0.5 and mean positives per box."""
    run = load_run_config("shapes")
    model = build_model(run.preset, 7, **run.model)
    boxes = normalized_boxes(build_dataset(load_data_config(data_yaml), "train"))
    return fit_priors(boxes, model.config, model.feature_sizes, seed=seed)


def mean_sd(values: list[float], fmt: str) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{format(statistics.mean(values), fmt)} ± {format(sd, fmt)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=800)
    parser.add_argument("--train-images", type=int, default=3000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="train.seed of the runs, one run each")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS), help="which data sets")
    parser.add_argument("--out", help="also write the table to this markdown file")
    args = parser.parse_args()
    lines = [
        "| data | coverage: config | fitted | positives per box: config | fitted | VOC07 mAP: config | fitted |"
        " mAP gain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    per_seed = []
    with tempfile.TemporaryDirectory() as work:
        for name in args.sets:
            data_dir = Path(work) / name.split()[0]
            shapes = {"num_train": args.train_images, "num_val": 0, "num_test": 300, "image_size": 192, **SETS[name]}
            rows = []
            for seed in args.seeds:
                common = [f"train.iterations={args.iterations}", "train.max_minutes=600", "train.eval_interval=0",
                          f"train.seed={seed}"]  # fmt: skip
                scores = {}
                for mode in ("off", "auto"):
                    summary = run_demo(data_dir, Path(work) / f"run_{mode}", overrides=[*common, f"model.prior_fit={mode}"],
                                       progress=False, shapes=shapes)  # fmt: skip
                    scores[mode] = summary["voc07_map"]
                fitted = fit(data_dir / "shapes.yaml", seed)
                before, after = fitted.before, fitted.after
                row = (before.share_iou50, after.share_iou50, before.mean_positives, after.mean_positives,
                       scores["off"], scores["auto"], scores["auto"] - scores["off"])  # fmt: skip
                rows.append(row)
                per_seed.append({"data": name, "seed": seed, "coverage": row[:2], "positives": row[2:4],
                                 "voc07_map": row[4:6]})  # fmt: skip
                print(json.dumps(per_seed[-1]), flush=True)
            cols = list(zip(*rows))
            cells = [mean_sd([100 * v for v in c], ".1f") + "%" for c in cols[:2]]
            cells += [mean_sd(list(c), ".2f") for c in cols[2:4]] + [mean_sd(list(c), ".3f") for c in cols[4:]]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    print(json.dumps({"iterations": args.iterations, "train_images": args.train_images, "seeds": args.seeds}))


if __name__ == "__main__":
    main()
