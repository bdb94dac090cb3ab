"""The training loop's time per step on this machine for one or more source trees of the package, run in turn
(each run a fresh process with that tree first on the path); prints medians (not a test).

    git worktree add ../before HEAD~1
    python benchmarks/bench_train_step.py --trees before=../before after=. --rounds 5 --iterations 40

Two models: the demo's ``shapes`` config (batch 8 at 192 pixels) and a tiny one (1/8-width SSD300 at 96 pixels,
batch 2, no batch norm), whose step is short enough for the loop's own cost to show. The time per step is the
run's training clock (``train_seconds`` of ``last.pt``: from the loop's start to the end of its last step, no
evaluation) over its iterations, in a run after a short warm-up run in the same process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TINY = [
    "model.input_size=96", "model.width=0.125", "model.batch_norm=false",
    "model.extras=[[256, 512, 3, 2, 1], [128, 256, 3, 2, 1]]", "model.aspect_ratios=[[2], [2, 3], [2], [2]]",
    "model.min_sizes=[10, 25, 45, 70]", "model.max_sizes=[25, 45, 70, 96]", "train.batch_size=2",
    "train.base_batch_size=2",
]  # fmt: skip
MODELS = {"shapes (demo)": [], "tiny": TINY}
WARMUP_ITERATIONS = 3
COMMON = ["train.eval_interval=0", "train.checkpoint_interval=100000", "train.val_split=none"]


def child(data: str, iterations: int, overrides: list[str], out: str) -> None:
    """A warm-up run of the ``shapes`` config in this process (oneDNN prepares its kernels once per process),
    then the measured one; prints its seconds per step as JSON."""
    import torch

    from ssd.config import load_run_config
    from ssd.engine.train import train

    for name, steps in (("warmup", WARMUP_ITERATIONS), ("run", iterations)):
        run = load_run_config("shapes", [*COMMON, f"train.iterations={steps}", *overrides])
        run.data = data
        result = train(run, project=out, name=name, device="cpu", progress=False)
    seconds = torch.load(result.run_dir / "last.pt", weights_only=False)["train_seconds"]
    print(json.dumps(seconds / result.iterations))


def run_tree(tree: Path, data: str, iterations: int, overrides: list[str]) -> float:
    """Seconds per step of one run with ``tree``'s package."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve() / "src")}
    with tempfile.TemporaryDirectory() as out:
        args = [sys.executable, __file__, "--child", json.dumps([data, iterations, overrides, out])]
        done = subprocess.run(args, env=env, check=True, capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trees", nargs="+", default=["this=."], help="NAME=PATH: source trees of the package")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=40, help="training steps per run")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*json.loads(args.child))
        return
    trees = dict(item.split("=", 1) for item in args.trees)
    from ssd.data.shapes import generate_shapes

    times: dict[tuple[str, str], list[float]] = {(m, t): [] for m in args.models for t in trees}
    with tempfile.TemporaryDirectory() as root:
        data = str(generate_shapes(root, num_train=400, num_val=0, num_test=0, image_size=192))
        for _ in range(args.rounds):  # round-robin: a busier moment hits every tree alike
            for model in args.models:
                for name, path in trees.items():
                    times[model, name].append(run_tree(Path(path), data, args.iterations, MODELS[model]))
    first = next(iter(trees))
    print(f"| model | tree | ms per step (median of {args.rounds}) | runs (ms) | ratio to {first} |")
    print("|---|---|---|---|---|")
    for model in args.models:
        reference = statistics.median(times[model, first])
        for name in trees:
            values = times[model, name]
            runs = ", ".join(f"{1000 * v:.1f}" for v in values)
            median = statistics.median(values)
            print(f"| {model} | {name} | {1000 * median:.1f} | {runs} | {median / reference:.3f} |")


if __name__ == "__main__":
    main()
