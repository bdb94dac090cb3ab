"""Time VOC07, VOC and COCO evaluation on a synthetic split; prints a table of medians.

Default: 5,000 images, 200 detections each (21 classes with background), 1-15 ground truths per image,
half of the detections jittered copies of ground truths (so matching does real work), 10% difficult.
COCO runs with each of ``--coco-backends`` (default: pycocotools and, when installed, faster-coco-eval), the runs of
the backends interleaved; the first backend is the reference of the speed ratio and of the largest difference of
the 12 summary stats.
Run: ``python benchmarks/bench_metrics.py [--images N] [--repeats R] [--coco-repeats R] [--metrics voc07 voc]
[--coco-backends pycocotools faster-coco-eval]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from ssd.metrics import STAT_NAMES, evaluate
from ssd.metrics.coco import BACKENDS, coco_backend


def make_split(
    num_images: int, dets_per_image: int, num_classes: int, seed: int = 0
) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    """Random ground truth on 500x375 images and detections, half of them near a ground truth."""
    g = torch.Generator().manual_seed(seed)
    detections, targets = [], []
    for _ in range(num_images):
        n_gt = int(torch.randint(1, 16, (1,), generator=g))
        xy = torch.rand(n_gt, 2, generator=g) * torch.tensor([400.0, 300.0])
        wh = 8 + torch.rand(n_gt, 2, generator=g) * 150
        gt_boxes = torch.cat([xy, xy + wh], dim=1)
        gt_labels = torch.randint(1, num_classes, (n_gt,), generator=g)
        targets.append(
            {
                "boxes": gt_boxes,
                "labels": gt_labels,
                "difficult": torch.rand(n_gt, generator=g) < 0.1,
                "iscrowd": torch.zeros(n_gt, dtype=torch.bool),
            }  # fmt: skip
        )
        n_near = dets_per_image // 2
        source = torch.randint(0, n_gt, (n_near,), generator=g)
        near = gt_boxes[source] + torch.randn(n_near, 4, generator=g) * 6
        wrong = torch.randint(1, num_classes, (n_near,), generator=g)
        near_labels = torch.where(torch.rand(n_near, generator=g) < 0.8, gt_labels[source], wrong)
        n_far = dets_per_image - n_near
        far_xy = torch.rand(n_far, 2, generator=g) * torch.tensor([400.0, 300.0])
        far = torch.cat([far_xy, far_xy + 8 + torch.rand(n_far, 2, generator=g) * 150], dim=1)
        detections.append(
            {
                "boxes": torch.cat([near, far]),
                "scores": torch.rand(dets_per_image, generator=g),
                "labels": torch.cat([near_labels, torch.randint(1, num_classes, (n_far,), generator=g)]),
            }  # fmt: skip
        )
    return detections, targets


def timed_runs(runs: dict[str, Callable[[], dict]], repeats: int) -> dict[str, tuple[float, float, dict]]:
    """``{name: (median wall s, median CPU s, result)}`` of each run, the runs interleaved ``repeats`` times.

    CPU seconds (the process's, all threads) are the steadier figure on a machine that other work shares.
    """
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, dict] = {}
    for _ in range(repeats):
        for name, run in runs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            results[name] = run()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name]), results[name]) for name in runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--dets", type=int, default=200, help="detections per image")
    parser.add_argument("--classes", type=int, default=21, help="including background")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each VOC metric")
    parser.add_argument("--coco-repeats", type=int, default=1, help="runs of COCO (pycocotools is slow)")
    parser.add_argument("--metrics", nargs="+", default=["voc07", "voc", "coco"], choices=["voc07", "voc", "coco"])
    installed = ["pycocotools"] + (["faster-coco-eval"] if coco_backend("auto") == "faster-coco-eval" else [])
    parser.add_argument("--coco-backends", nargs="+", default=installed, choices=BACKENDS, help="first = reference")
    args = parser.parse_args()

    detections, targets = make_split(args.images, args.dets, args.classes)
    num_dets = sum(len(d["scores"]) for d in detections)
    num_gt = sum(len(t["labels"]) for t in targets)
    print(f"{args.images} images, {num_dets} detections, {num_gt} ground truths, {args.classes} classes")
    print(f"{'metric':<22} {'median s':>10} {'CPU s':>8} {'runs':>5} {'mAP':>8}")
    for metric in args.metrics:
        if metric == "coco":
            runs = {f"coco {b}": partial(evaluate, detections, targets, "coco", backend=b) for b in args.coco_backends}
            repeats = args.coco_repeats
        else:
            runs, repeats = {metric: partial(evaluate, detections, targets, metric)}, args.repeats
        timed = timed_runs(runs, repeats)
        for name, (seconds, cpu_seconds, result) in timed.items():
            print(f"{name:<22} {seconds:>10.3f} {cpu_seconds:>8.3f} {repeats:>5} {result['map']:>8.4f}")
        (reference, (ref_seconds, ref_cpu, ref_result)), *others = timed.items()
        for name, (seconds, cpu_seconds, result) in others:
            diff = max(abs(result[stat] - ref_result[stat]) for stat in STAT_NAMES)
            print(
                f"{name} / {reference}: {ref_seconds / seconds:.2f}x the speed ({ref_cpu / cpu_seconds:.2f}x in CPU "
                f"time); largest difference of the {len(STAT_NAMES)} stats {diff:.1e}"
            )


if __name__ == "__main__":
    main()
