"""Every model preset side by side: parameters, multiply-adds, and milliseconds per image on this CPU.

Inference is end to end (a 480x360 image in, detections out) in PyTorch fp32 with the default (contiguous) and
the channels-last layout, and in ONNX Runtime fp32 and int8; the training step (forward, loss, backward, update)
on a batch of 300x300 images in both layouts. All variants of a preset run interleaved, round by round; the
layout ratios are what ``ssd.layout``'s rule for channels-last rests on. Prints a markdown table.

    python benchmarks/bench_presets.py --rounds 5 --out presets.md
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from ssd import PRESETS, build_model
from ssd.export.onnx import export_onnx
from ssd.export.quantize import quantize_onnx_int8
from ssd.export.runtime import OnnxRuntimeDetector
from ssd.model.ssd import SSD
from timing import Variant, interleaved, rows

BENCH_PRESETS = ("ssd300_vgg16", "ssd512_vgg16", "ssdlite320_mobilenet_v3_large", "ssdlite320_mobilenet_v2",
                 "ssd300_resnet50")  # fmt: skip


def multiply_adds(model: SSD) -> float:
    """Multiply-adds (G) of the network on one image at its input size (torchvision's "GFLOPS" convention)."""
    size = model.config.input_size
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.net(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 2e9


def images(count: int, seed: int = 0) -> list[Tensor]:
    return [torch.rand(3, 360, 480, generator=torch.Generator().manual_seed(seed + i)) for i in range(count)]


def inference_variants(name: str, workdir: Path) -> dict[str, Variant]:
    """Batch-1 detection of one preset (random weights, 21 classes) in each runtime and layout."""
    torch.manual_seed(0)
    model = build_model(name, 21).eval().to(memory_format=torch.contiguous_format)  # build_model picks a layout
    channels_last = build_model(name, 21).eval()
    channels_last.load_state_dict(model.state_dict())
    channels_last.to(memory_format=torch.channels_last)
    fp32 = export_onnx(model, workdir / f"{name}.onnx", verify=False)
    int8 = quantize_onnx_int8(fp32, workdir / f"{name}.int8.onnx", images(8, seed=100))
    detectors: dict[str, Callable[[list[Tensor]], object]] = {
        "pytorch fp32": model,
        "pytorch fp32 channels-last": channels_last,
        "onnxruntime fp32": OnnxRuntimeDetector(fp32, providers=["CPUExecutionProvider"]),
        "onnxruntime int8": OnnxRuntimeDetector(int8, providers=["CPUExecutionProvider"]),
    }
    batch = images(1)

    def run(detector: Callable[[list[Tensor]], object]) -> Variant:
        def call() -> object:
            with torch.inference_mode():
                return detector(batch)

        return call

    return {label: run(detector) for label, detector in detectors.items()}


def training_variants(name: str, batch: int) -> dict[str, Variant]:
    """One SGD step of one preset on ``batch`` images with two boxes each, in both layouts."""
    generator = torch.Generator().manual_seed(0)
    batch_images = [torch.rand(3, 300, 300, generator=generator) for _ in range(batch)]
    targets = [{"boxes": torch.tensor([[30.0, 40.0, 150.0, 200.0], [120.0, 60.0, 280.0, 170.0]]),
                "labels": torch.tensor([1, 2])} for _ in range(batch)]  # fmt: skip

    def step(channels_last: bool) -> Variant:
        torch.manual_seed(0)
        model = build_model(name, 21).train()
        model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)

        def call() -> object:
            total = sum(model(batch_images, targets).values())
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            return total

        return call

    return {"training fp32": step(False), "training fp32 channels-last": step(True)}


def bench_preset(name: str, rounds: int, batch: int) -> list[str]:
    model = build_model(name, 21).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    macs = multiply_adds(model)
    with tempfile.TemporaryDirectory() as tmp:
        inference = rows(interleaved(inference_variants(name, Path(tmp)), rounds), 1, "pytorch fp32")
    training = rows(interleaved(training_variants(name, batch), max(2, rounds // 2)), batch, "training fp32")
    ms = {label: (value, ratio) for label, value, _, ratio in inference + training}
    cells = [f"{ms[k][0]:.1f} ({ms[k][1]:.2f})" for k in ms]
    return [f"| {name} | {params:.2f} | {macs:.2f} | " + " | ".join(cells) + " |"]


def run_bench(presets: tuple[str, ...], rounds: int, batch: int, out: str | None) -> str:
    lines = [
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, 21 classes, medians of {rounds} interleaved "
        f"rounds; ms per image (ratio to the contiguous PyTorch fp32 of the same kind).",
        "",
        "| preset | params (M) | G multiply-adds | fp32 | fp32 channels-last | ORT fp32 | ORT int8 "
        f"| training, batch {batch} | training channels-last |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in presets:
        lines += bench_preset(name, rounds, batch)
        print(lines[-1], flush=True)
    table = "\n".join(lines) + "\n"
    if out:
        Path(out).write_text(table)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(BENCH_PRESETS), choices=sorted(PRESETS))
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per measurement")
    parser.add_argument("--batch", type=int, default=8, help="images per training step")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    print(run_bench(tuple(args.presets), args.rounds, args.batch, args.out), end="")


if __name__ == "__main__":
    main()
