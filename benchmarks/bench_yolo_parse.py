"""Parse time of a large YOLO split (the index cache off), for one or more source trees of the package, interleaved.

The split is written here: ``--images`` copies of one small JPEG, each with a label file of 1 to 15 objects of
80 classes. Each parse runs in a fresh process with that tree first on the path; prints medians (not a test).

    git worktree add ../before HEAD~1
    python benchmarks/bench_yolo_parse.py --trees before=../before after=. --images 20000 --rounds 5
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = 80
PARSE = """
import os, sys, time
os.environ["SSD_INDEX_CACHE"] = "off"
from ssd.data import build_dataset, load_data_config
start = time.perf_counter()
dataset = build_dataset(load_data_config(sys.argv[1]), "train")
print(time.perf_counter() - start, len(dataset), len(dataset.box_table()["labels"]))
"""


def write_split(root: Path, num_images: int, seed: int = 0) -> Path:
    """A YOLO split of ``num_images`` 64 x 48 JPEGs with random labels; returns its data YAML."""
    rng = random.Random(seed)
    images, labels = root / "images" / "train", root / "labels" / "train"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    jpeg = io.BytesIO()
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(jpeg, format="JPEG")
    for i in range(num_images):
        (images / f"{i:07d}.jpg").write_bytes(jpeg.getvalue())
        rows = [
            f"{rng.randrange(CLASSES)} {rng.uniform(0.3, 0.7):.6f} {rng.uniform(0.3, 0.7):.6f} "
            f"{rng.uniform(0.05, 0.5):.6f} {rng.uniform(0.05, 0.5):.6f}"
            for _ in range(rng.randint(1, 15))
        ]
        (labels / f"{i:07d}.txt").write_text("\n".join(rows) + "\n")
    names = ", ".join(f"c{k}" for k in range(CLASSES))
    data = root / "data.yaml"
    data.write_text(f"path: .\ntrain: images/train\nnames: [{names}]\n")
    return data


def parse_once(tree: Path, data: Path) -> tuple[float, int, int]:
    """Seconds, images and boxes of one parse with ``tree``'s package, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve() / "src")}
    done = subprocess.run([sys.executable, "-c", PARSE, str(data)], env=env, check=True, capture_output=True, text=True)
    seconds, images, boxes = done.stdout.split()
    return float(seconds), int(images), int(boxes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trees", nargs="+", default=["this=."], help="NAME=PATH: source trees of the package")
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    trees = dict(item.split("=", 1) for item in args.trees)
    times: dict[str, list[float]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as root:
        data = write_split(Path(root), args.images)
        for _ in range(args.rounds):  # round-robin: a busier moment hits every tree alike
            for name, path in trees.items():
                seconds, images, boxes = parse_once(Path(path), data)
                times[name].append(seconds)
    first = statistics.median(times[next(iter(trees))])
    print(f"{images} images, {boxes} boxes; median of {args.rounds} parses each")
    print(f"| tree | seconds | runs | ratio to {next(iter(trees))} |")
    print("|---|---|---|---|")
    for name, values in times.items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {name} | {statistics.median(values):.2f} | {runs} | {statistics.median(values) / first:.2f} |")


if __name__ == "__main__":
    main()
