"""Training throughput: images per second of the package's training step (``ssd.engine.train.train_step``) for
SSD300 (VGG-16 and ResNet-50) and SSDLite, per batch size, precision and data source; prints medians (not a test).

    python benchmarks/bench_train_gpu.py                                # one GPU
    torchrun --nproc_per_node=gpu benchmarks/bench_train_gpu.py         # every GPU of the machine, totals
    python benchmarks/bench_train_gpu.py --device cpu --steps 2 --rounds 2 --warmup 1 --batches 2 \\
        --models ssdlite320_mobilenet_v3_large                          # a quick check without a GPU

Precisions: ``fp32`` (TF32 off), ``tf32`` (TF32 convolutions and matmuls), ``amp`` (fp16 autocast with loss
scaling, ``train.amp``) and ``bf16`` (bf16 autocast); TF32 and fp16 run on CUDA only. Data sources: ``loader``,
the synthetic shapes dataset written to a temporary folder and read by the training loader that ``ssd train``
builds (the paper's augmentation, ``--workers`` processes), and ``synthetic``, random images at the input size
already in memory, so that the difference shows the loader's share. ``--batches`` are per process; under torchrun
the table gives the images per second of all processes together.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ssd.config import RunConfig, run_config_from_dict
from ssd.data import build_dataset, load_data_config
from ssd.data.shapes import generate_shapes
from ssd.engine import train as train_module
from ssd.engine.distributed import DistInfo, barrier, broadcast_object, cleanup, init_distributed, local_main_first
from ssd.engine.run_log import LossWindow
from ssd.engine.state import TrainState

MODELS = ("ssd300_vgg16", "ssd300_resnet50", "ssdlite320_mobilenet_v3_large")
MODES = ("fp32", "tf32", "amp", "bf16")
CUDA_ONLY_MODES = ("tf32", "amp")
SOURCES = ("loader", "synthetic")
AUTOCAST = {"fp32": None, "tf32": None, "amp": "fp16", "bf16": "bf16"}  # train.amp_dtype of each mode
SYNTHETIC_BATCHES = 4  # distinct in-memory batches, cycled
BOXES_PER_IMAGE = 4
NVIDIA_REFERENCE = (
    "NVIDIA DeepLearningExamples, PyTorch SSD300 v1.1 (ResNet-50 backbone, DALI loader, COCO), one A100 80GB, "
    "batch 64: 662.91 images/s with AMP, 364.27 with TF32 (its README, pytorch-22.10 container). The preset with "
    "that network here is ssd300_resnet50; ssd300_vgg16 has 31.4 G multiply-adds per image to its 20.2 G (README)."
)


@dataclass
class Case:
    model: str
    batch: int  # per process
    mode: str
    source: str


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="model presets")
    parser.add_argument("--batches", nargs="+", type=int, default=[32, 64], help="batch sizes per process")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES))
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (the table gives their median)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (loader start, autotuning)")
    parser.add_argument("--device", default="auto", help="auto, cuda, cpu, mps (under torchrun: the local GPU)")
    parser.add_argument("--workers", type=int, default=None, help="loader processes per process (default: cores)")
    parser.add_argument("--images", type=int, default=2048, help="shapes training images for the loader source")
    parser.add_argument("--image-size", type=int, default=300, help="side of the shapes images in pixels")
    return parser.parse_args(argv)


def default_workers(world_size: int) -> int:
    """The CPU cores of one process, at most 8: what a tuned ``train.workers`` would be."""
    return max(1, min(8, (os.cpu_count() or 1) // world_size))


def set_tf32(on: bool) -> None:
    """TF32 for the convolutions and matmuls of fp32 tensors on CUDA (PyTorch's newer setting where it has it)."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        conv.fp32_precision = torch.backends.cuda.matmul.fp32_precision = "tf32" if on else "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = on


def run_config(case: Case, data_yaml: str, workers: int, world_size: int) -> RunConfig:
    """The training config of ``case``: the preset's model, the package's default recipe, no evaluation."""
    train = {
        "batch_size": case.batch * world_size, "base_batch_size": case.batch * world_size, "workers": workers,
        "amp": AUTOCAST[case.mode] is not None, "amp_dtype": AUTOCAST[case.mode] or "auto", "val_split": "val",
        "eval_interval": 0,
    }  # fmt: skip
    return run_config_from_dict({"preset": case.model, "model": {}, "train": train, "data": data_yaml}, "benchmark")


def synthetic_batches(size: int, num_classes: int, batch: int, pin: bool) -> Iterator[tuple[list, list]]:
    """Random images ``[3, size, size]`` in 0..1 with random boxes, as the loader hands them over, cycled."""
    generator = torch.Generator().manual_seed(0)
    made = []
    for _ in range(SYNTHETIC_BATCHES):
        images = [torch.rand(3, size, size, generator=generator) for _ in range(batch)]
        corners = torch.rand(batch, BOXES_PER_IMAGE, 2, generator=generator) * 0.6 * size
        sides = (0.1 + 0.3 * torch.rand(batch, BOXES_PER_IMAGE, 2, generator=generator)) * size
        boxes = torch.cat([corners, corners + sides], dim=2)  # [B, N, 4] xyxy pixels
        labels = torch.randint(1, num_classes, (batch, BOXES_PER_IMAGE), generator=generator)
        if pin:
            images = [img.pin_memory() for img in images]
        made.append((images, [{"boxes": b, "labels": lab} for b, lab in zip(boxes, labels)]))
    return itertools.cycle(made)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def seconds_per_step(
    state: TrainState, net: torch.nn.Module, source: Iterator, dist_info: DistInfo, args: argparse.Namespace
) -> list[float]:
    """Seconds per step of each timed round; a round ends, as a log line of the loop does, by reading its losses,
    and then waits for the device to finish."""
    cfg = state.run.train

    def steps(count: int) -> LossWindow:
        window = LossWindow()
        for _ in range(count):
            images, targets = next(source)
            lr = state.lr
            losses = train_module.train_step(state, net, images, targets, dist_info.device)
            window.add(state.iteration, losses, lr, len(images))
            state.scheduler.step()
        return window

    train_module.check_finite(steps(args.warmup), cfg, dist_info)
    synchronize(dist_info.device)
    times = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        train_module.check_finite(steps(args.steps), cfg, dist_info)
        synchronize(dist_info.device)
        times.append((time.perf_counter() - start) / args.steps)
    return times


def measure(case: Case, data_yaml: str, dist_info: DistInfo, args: argparse.Namespace) -> float:
    """The median seconds per training step of ``case`` on this process."""
    set_tf32(case.mode != "fp32")
    run = run_config(case, data_yaml, args.workers, dist_info.world_size)
    torch.manual_seed(run.train.seed)
    data_cfg = load_data_config(run.data)
    with local_main_first(dist_info):
        train_set = build_dataset(data_cfg, run.train.train_split)
    model = train_module.build_training_model(run, train_set.class_names, dist_info)
    state = TrainState.create(run, model, dist_info.device)
    net = train_module.wrap_for_processes(model, run.train, dist_info)
    model.train()
    if case.source == "loader":
        loader = train_module.build_training_data(run, data_cfg, train_set, model, dist_info).train
        source = train_module.batches(loader, 0)
    else:
        pin = dist_info.device.type == "cuda"
        source = synthetic_batches(model.config.input_size, len(train_set.class_names), case.batch, pin)
    times = seconds_per_step(state, net, source, dist_info, args)
    del state, net, model, source
    if dist_info.device.type == "cuda":
        torch.cuda.empty_cache()
    return statistics.median(times)


def cases(args: argparse.Namespace, device: torch.device) -> Iterator[Case]:
    for model, batch, mode, source in itertools.product(args.models, args.batches, args.modes, args.sources):
        if mode in CUDA_ONLY_MODES and device.type != "cuda":
            continue
        yield Case(model, batch, mode, source)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def print_header(args: argparse.Namespace, dist_info: DistInfo) -> None:
    skipped = [m for m in args.modes if m in CUDA_ONLY_MODES] if dist_info.device.type != "cuda" else []
    print(
        f"{dist_info.world_size} x {device_name(dist_info.device)}, torch {torch.__version__}, "
        f"{args.workers} loader workers per process, median of {args.rounds} rounds of {args.steps} steps after "
        f"{args.warmup} warm-up steps" + (f"; {', '.join(skipped)} run on CUDA only" if skipped else "")
    )
    print("\n| model | batch per process | processes | precision | data | ms per step | images/s (all processes) |")
    print("|---|---|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    dist_info = init_distributed(args.device)
    args.workers = default_workers(dist_info.world_size) if args.workers is None else args.workers
    root = broadcast_object(tempfile.mkdtemp(prefix="ssd-bench-") if dist_info.is_main else None)
    try:
        with local_main_first(dist_info):
            if dist_info.local_rank == 0:
                generate_shapes(root, num_train=args.images, num_val=0, num_test=0, image_size=args.image_size)
        data_yaml = os.path.join(root, "shapes.yaml")
        if dist_info.is_main:
            print_header(args, dist_info)
        for case in cases(args, dist_info.device):
            seconds = measure(case, data_yaml, dist_info, args)
            if dist_info.is_main:
                images_per_second = case.batch * dist_info.world_size / seconds
                print(
                    f"| {case.model} | {case.batch} | {dist_info.world_size} | {case.mode} | {case.source} | "
                    f"{1000 * seconds:.1f} | {images_per_second:.1f} |",
                    flush=True,
                )
        if dist_info.is_main:
            print(f"\nFor reference: {NVIDIA_REFERENCE}")
        barrier()
    finally:
        if dist_info.local_rank == 0:
            shutil.rmtree(root, ignore_errors=True)
        cleanup()


if __name__ == "__main__":
    main()
