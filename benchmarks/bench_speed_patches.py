"""Each CPU speed patch of the package measured on and off, interleaved; prints a markdown table of medians.

- fast augmentation: the paper's training augmentation of one 500x375 image with ``ssd.data.fast_augment``'s
  photometric distortion and min-IoU crop against torchvision's;
- keeping freed memory: the same training step in fresh processes with and without
  ``ssd.engine.memory.keep_freed_memory`` (process-wide, so it cannot be switched off in one process).

    python benchmarks/bench_speed_patches.py --rounds 7 --out results.md
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

import torch
import torchvision.transforms.v2 as T

from ssd.build import build_model
from ssd.config import load_run_config
from ssd.data.dataset import Sample
from ssd.data.transforms import TrainTransform, aligned_fields
from timing import Variant, interleaved


def shapes_training_step(batch: int = 8, seed: int = 0) -> Variant:
    """One AdamW step of the shapes preset (channels-last, as its config trains) on random images."""
    run = load_run_config("shapes")
    torch.manual_seed(seed)
    model = build_model(run.preset, 7, **run.model).train().to(memory_format=torch.channels_last)
    size = model.config.input_size
    generator = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, size, size, generator=generator) for _ in range(batch)]
    targets = [{"boxes": torch.tensor([[20.0, 30.0, 90.0, 120.0]]), "labels": torch.tensor([1])}] * batch
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> object:
        losses = model(images, targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        return losses

    return step


def augmentation(fast: bool, seed: int = 0) -> Variant:
    """The full training augmentation of one 500x375 image with 6 boxes; torchvision's two steps when not ``fast``."""
    transform = TrainTransform(300)
    if not fast:
        transform.photometric = T.RandomPhotometricDistort(p=0.5)
        transform.crop = T.Compose([T.RandomIoUCrop(), T.SanitizeBoundingBoxes(labels_getter=aligned_fields)])
    generator = torch.Generator().manual_seed(seed)
    xy = torch.rand(6, 2, generator=generator) * torch.tensor([400.0, 280.0])
    boxes = torch.cat([xy, xy + 20 + torch.rand(6, 2, generator=generator) * 80], dim=1)
    no = torch.zeros(6, dtype=torch.bool)
    image = torch.randint(0, 256, (3, 375, 500), dtype=torch.uint8, generator=generator)
    sample = Sample(image, boxes, torch.arange(1, 7), no, no.clone(), 0, "bench.jpg")

    def call() -> object:
        return [transform(sample) for _ in range(10)]  # ten draws: the random options vary in cost

    return call


MALLOC_PROBE = """
import sys, time
sys.path.insert(0, sys.argv[2])
from bench_speed_patches import shapes_training_step
from ssd.engine.memory import keep_freed_memory
if sys.argv[1] == "on":
    assert keep_freed_memory()
step = shapes_training_step()
for _ in range(3):
    step()
times = []
for _ in range(int(sys.argv[3])):
    start = time.perf_counter(); step(); times.append(time.perf_counter() - start)
print(sorted(times)[len(times) // 2])
"""


def malloc_medians(rounds: int, steps: int = 10) -> dict[str, list[float]]:
    """Median step time of fresh processes, alternately with and without keep_freed_memory."""
    folder = str(Path(__file__).parent)
    times: dict[str, list[float]] = {"keep freed memory": [], "glibc default": []}
    for _ in range(rounds):
        for name, mode in (("keep freed memory", "on"), ("glibc default", "off")):
            command = [sys.executable, "-c", MALLOC_PROBE, mode, folder, str(steps)]
            times[name].append(float(subprocess.run(command, capture_output=True, text=True, check=True).stdout))
    return times


def table(measurements: dict[str, tuple[dict[str, list[float]], str, str]]) -> str:
    lines = ["| patch | what is timed | on (ms) | off (ms) | off / on |", "|---|---|---|---|---|"]
    for patch, (times, on, off) in measurements.items():
        on_ms, off_ms = (1000 * statistics.median(times[name]) for name in (on, off))
        lines.append(f"| {patch} | {on} vs {off} | {on_ms:.1f} | {off_ms:.1f} | {off_ms / on_ms:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per measurement")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    augment = interleaved({"fast": augmentation(True), "torchvision": augmentation(False)}, args.rounds)
    for times in augment.values():  # ten images per call
        times[:] = [t / 10 for t in times]
    measurements = {
        "augmentation, one 500x375 image": (augment, "fast", "torchvision"),
        "malloc, shapes training step (batch 8)": (malloc_medians(args.rounds), "keep freed memory", "glibc default"),
    }
    header = f"torch {torch.__version__}, {torch.get_num_threads()} threads, medians of {args.rounds} rounds\n\n"
    text = header + table(measurements)
    print(text, end="")
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
