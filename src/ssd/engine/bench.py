"""``ssd bench``: our SSD300 against torchvision's ``ssd300_vgg16`` with the same weights, side by side.

Every variant runs on the same images, interleaved round by round (so a slower or busier moment hits all
variants alike); the table reports medians and ratios to torchvision. Peak memory is measured in a fresh
process per variant, since a process's peak resident size only grows.
"""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from ..interop import from_torchvision

Variant = Callable[[], object]


def torchvision_ssd(num_classes: int, seed: int = 0) -> torch.nn.Module:
    """torchvision's SSD300 with random weights (nothing is downloaded), in eval mode."""
    from torchvision.models.detection import ssd300_vgg16

    torch.manual_seed(seed)
    model = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=num_classes).eval()
    with torch.no_grad():  # random heads saturate the softmax; realistic score spreads keep NMS realistic
        for conv in model.head.classification_head.module_list:
            conv.weight.mul_(0.002)
    return model


def _time(fn: Variant) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(variants: dict[str, Variant], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of every variant, measured round-robin ``rounds`` times after ``warmup`` rounds."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(warmup + rounds):
        for name, fn in variants.items():
            t = _time(fn)
            if r >= warmup:
                times[name].append(t)
    return times


def inference_variants(num_classes: int, batch: int, workdir: Path, fastest: bool = True) -> dict[str, Variant]:
    """End-to-end detection (list of 480x360 images in, detections out) for each implementation."""
    from ..export.onnx import export_onnx
    from ..export.runtime import OnnxRuntimeDetector

    tv = torchvision_ssd(num_classes)
    ours = from_torchvision(tv.state_dict()).eval()
    images = [torch.rand(3, 360, 480, generator=torch.Generator().manual_seed(i)) for i in range(batch)]
    onnx_path = export_onnx(ours, workdir / "ssd300.onnx", verify=False)
    ort = OnnxRuntimeDetector(onnx_path, providers=["CPUExecutionProvider"])
    ours_cl = from_torchvision(tv.state_dict()).eval().to(memory_format=torch.channels_last)

    def run(model: Callable[[list[Tensor]], object]) -> Variant:
        def call() -> object:
            with torch.inference_mode():
                return model(images)

        return call

    variants = {"torchvision fp32": run(tv), "ours fp32": run(ours), "ours fp32 channels-last": run(ours_cl),
                "ours onnxruntime fp32": run(ort)}  # fmt: skip
    if fastest:
        from ..export.quantize import quantize_onnx_int8

        int8_path = quantize_onnx_int8(onnx_path, workdir / "ssd300.int8.onnx", images)
        variants["ours onnxruntime int8"] = run(OnnxRuntimeDetector(int8_path, providers=["CPUExecutionProvider"]))
    return variants


def training_variants(num_classes: int, batch: int) -> dict[str, Variant]:
    """One SGD step (forward, loss, backward, update) on ``batch`` 300x300 images with two boxes each."""
    tv = torchvision_ssd(num_classes).train()
    ours = from_torchvision(tv.state_dict()).train()
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 300, 300, generator=generator) for _ in range(batch)]
    targets = [{"boxes": torch.tensor([[30.0, 40.0, 150.0, 200.0], [120.0, 60.0, 280.0, 170.0]]),
                "labels": torch.tensor([1, 2])} for _ in range(batch)]  # fmt: skip

    def step(model: torch.nn.Module) -> Variant:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)

        def call() -> object:
            losses = model(images, targets)
            total = sum(losses.values())
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            return total

        return call

    return {"torchvision fp32": step(tv), "ours fp32": step(ours)}


def _peak_rss_worker(kind: str, impl: str, num_classes: int, batch: int, queue: multiprocessing.Queue) -> None:
    torch.set_num_threads(torch.get_num_threads())
    if kind == "inference":
        tv = torchvision_ssd(num_classes)
        model = tv if impl == "torchvision" else from_torchvision(tv.state_dict()).eval()
        del tv
        images = [torch.rand(3, 360, 480) for _ in range(batch)]
        with torch.inference_mode():
            model(images)
    else:
        variants = training_variants(num_classes, batch)
        variants["torchvision fp32" if impl == "torchvision" else "ours fp32"]()
    queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # KiB -> MiB on Linux


def peak_memory_mib(kind: str, impl: str, num_classes: int, batch: int) -> float:
    """Peak resident memory (MiB) of a fresh process doing one inference or one training step."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_rss_worker, args=(kind, impl, num_classes, batch, queue))
    proc.start()
    value = queue.get()
    proc.join()
    return float(value)


def _rows(times: dict[str, list[float]], images_per_call: int, reference: str) -> list[tuple[str, float, float, float]]:
    ref = statistics.median(times[reference])
    rows = []
    for name, values in times.items():
        med = statistics.median(values)
        rows.append((name, med * 1000 / images_per_call, images_per_call / med, med / ref))
    return rows


def run_bench(
    num_classes: int = 21,
    rounds: int = 5,
    batch: int = 8,
    out: str | Path | None = "benchmarks/results.md",
    memory: bool = True,
    training: bool = True,
    fastest: bool = True,
) -> str:
    """Measure and return the markdown table (written to ``out`` too)."""
    lines = [
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, SSD300 with {num_classes} classes, "
        f"medians of {rounds} interleaved rounds; ratio = time / torchvision's time (lower is better).",
        "",
        "| what | variant | ms per image | images/s | ratio |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        latency = interleaved(inference_variants(num_classes, 1, Path(tmp), fastest), rounds)
        for name, ms, ips, ratio in _rows(latency, 1, "torchvision fp32"):
            lines.append(f"| latency, batch 1 | {name} | {ms:.1f} | {ips:.2f} | {ratio:.2f} |")
        throughput = interleaved(inference_variants(num_classes, batch, Path(tmp), fastest), rounds)
        for name, ms, ips, ratio in _rows(throughput, batch, "torchvision fp32"):
            lines.append(f"| throughput, batch {batch} | {name} | {ms:.1f} | {ips:.2f} | {ratio:.2f} |")
    if training:
        steps = interleaved(training_variants(num_classes, batch), max(2, rounds // 2))
        for name, ms, ips, ratio in _rows(steps, batch, "torchvision fp32"):
            lines.append(f"| training step, batch {batch} | {name} | {ms:.1f} | {ips:.2f} | {ratio:.2f} |")
    if memory:
        lines += ["", "| peak resident memory (MiB) | torchvision | ours | ratio |", "|---|---|---|---|"]
        for kind, label in (("inference", f"inference, batch 1"), ("training", f"training step, batch {batch}")):
            n = 1 if kind == "inference" else batch
            tv_mib = peak_memory_mib(kind, "torchvision", num_classes, n)
            our_mib = peak_memory_mib(kind, "ours", num_classes, n)
            lines.append(f"| {label} | {tv_mib:.0f} | {our_mib:.0f} | {our_mib / tv_mib:.2f} |")
    table = "\n".join(lines) + "\n"
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(table)
    return table
