"""Our SSD300 or SSDLite against torchvision's ``ssd300_vgg16`` / ``ssdlite320_mobilenet_v3_large`` with the same
weights, side by side; prints a markdown table.

Every variant runs on the same images, interleaved round by round (so a slower or busier moment hits all
variants alike); the table reports medians and ratios to torchvision. Peak memory is measured in a fresh
process per variant, since a process's peak resident size only grows. With ``--weights`` and ``--data``, also
the VOC07 mAP of each inference mode of a trained checkpoint.

    python benchmarks/bench_vs_torchvision.py --rounds 7 --out results.md
    python benchmarks/bench_vs_torchvision.py --model ssdlite320_mobilenet_v3_large --classes 91
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large

from ssd.checkpoint import load
from ssd.data import build_dataset, load_data_config
from ssd.data.loader import build_loader
from ssd.data.transforms import EvalTransform
from ssd.engine.detectors import with_precision
from ssd.engine.evaluate import evaluate_detections, predict_dataset
from ssd.errors import SSDError
from ssd.export.onnx import export_onnx
from ssd.export.quantize import quantize_onnx_int8
from ssd.export.runtime import OnnxRuntimeDetector
from ssd.interop import from_torchvision
from timing import Variant, interleaved, rows

ARCHITECTURES = ("ssd300_vgg16", "ssdlite320_mobilenet_v3_large")


def torchvision_ssd(num_classes: int, seed: int = 0) -> nn.Module:
    """torchvision's SSD300 with random weights (nothing is downloaded), in eval mode."""
    torch.manual_seed(seed)
    model = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=num_classes).eval()
    with torch.no_grad():  # random heads saturate the softmax; realistic score spreads keep NMS realistic
        for conv in model.head.classification_head.module_list:
            conv.weight.mul_(0.002)
    return model


def measure_batch_norm_statistics(model: nn.Module, forward: Callable[[], object]) -> nn.Module:
    """``model`` in eval mode, the running statistics of its batch norms replaced by their average over
    ``forward()`` (a pass over calibration data in train mode); the momenta are kept.

    A random SSDLite needs it: with a fresh model's statistics its normal(0, 0.03) weights shrink the signal layer
    by layer and every score comes out 1 / num_classes.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the calibration pass
    model.train()
    with torch.no_grad():
        forward()
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    return model.eval()


def torchvision_ssdlite(num_classes: int, seed: int = 0) -> nn.Module:
    """torchvision's SSDLite320 with random weights, in eval mode, its batch-norm statistics measured on random
    images."""
    torch.manual_seed(seed)
    model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)
    images = (torch.rand(8, 3, 320, 320, generator=torch.Generator().manual_seed(seed)) - 0.5) / 0.5
    return measure_batch_norm_statistics(model, lambda: model.head(list(model.backbone(images).values())))


def torchvision_detector(architecture: str, num_classes: int) -> nn.Module:
    return (torchvision_ssd if architecture == "ssd300_vgg16" else torchvision_ssdlite)(num_classes)


def inference_variants(
    num_classes: int, batches: list[int], workdir: Path, fastest: bool = True, architecture: str = "ssd300_vgg16"
) -> dict[int, dict[str, Variant]]:
    """For each batch size, end-to-end detection (480x360 images in, detections out) per implementation.

    The models are built (and exported, and quantised) once and shared by all batch sizes.
    """

    tv = torchvision_detector(architecture, num_classes)
    models: dict[str, Callable[[list[Tensor]], object]] = {"torchvision fp32": tv}
    models["ours fp32"] = from_torchvision(tv.state_dict()).to(memory_format=torch.contiguous_format)
    models["ours fp32 channels-last"] = from_torchvision(tv.state_dict()).to(memory_format=torch.channels_last)
    if native_bf16():  # without AVX-512 BF16 / AMX, oneDNN emulates bf16 and it only costs time
        models["ours bf16 channels-last"] = with_precision(
            models["ours fp32 channels-last"], "bf16", torch.device("cpu")
        )
    onnx_path = export_onnx(models["ours fp32"], workdir / "model.onnx", verify=False)
    models["ours onnxruntime fp32"] = OnnxRuntimeDetector(onnx_path, providers=["CPUExecutionProvider"])
    calibration = [torch.rand(3, 360, 480, generator=torch.Generator().manual_seed(100 + i)) for i in range(8)]
    if fastest:
        int8_path = quantize_onnx_int8(onnx_path, workdir / "model.int8.onnx", calibration)
        models["ours onnxruntime int8"] = OnnxRuntimeDetector(int8_path, providers=["CPUExecutionProvider"])

    def run(model: Callable[[list[Tensor]], object], images: list[Tensor]) -> Variant:
        def call() -> object:
            with torch.inference_mode():
                return model(images)

        return call

    result = {}
    for batch in batches:
        images = [torch.rand(3, 360, 480, generator=torch.Generator().manual_seed(i)) for i in range(batch)]
        result[batch] = {name: run(model, images) for name, model in models.items()}
    return result


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX), so that a bf16 mode can be faster."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


TRAINING_VARIANTS = ("torchvision fp32", "ours fp32", "ours fp32 channels-last")


def training_variants(
    num_classes: int, batch: int, names: tuple[str, ...] = TRAINING_VARIANTS, architecture: str = "ssd300_vgg16"
) -> dict[str, Variant]:
    """One SGD step (forward, loss, backward, update) on ``batch`` 300x300 images with two boxes each, for each of
    ``names`` (all with torchvision's random weights); only the models named are built."""
    tv = torchvision_detector(architecture, num_classes).train()
    models: dict[str, torch.nn.Module] = {}
    if "torchvision fp32" in names:
        models["torchvision fp32"] = tv
    if "ours fp32" in names:
        models["ours fp32"] = from_torchvision(tv.state_dict()).train().to(memory_format=torch.contiguous_format)
    if "ours fp32 channels-last" in names:
        models["ours fp32 channels-last"] = (
            from_torchvision(tv.state_dict()).train().to(memory_format=torch.channels_last)
        )
    del tv
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

    return {name: step(models[name]) for name in names}


def _peak_rss_worker(
    kind: str, impl: str, num_classes: int, batch: int, architecture: str, queue: multiprocessing.Queue
) -> None:
    torch.set_num_threads(torch.get_num_threads())
    if kind == "inference":
        tv = torchvision_detector(architecture, num_classes)
        model = tv if impl == "torchvision" else from_torchvision(tv.state_dict())
        del tv
        images = [torch.rand(3, 360, 480) for _ in range(batch)]
        with torch.inference_mode():
            model(images)
    else:
        # both models exist in both measurements (ours is built from torchvision's weights), so they cancel out
        variants = training_variants(num_classes, batch, ("torchvision fp32", "ours fp32"), architecture)
        variants["torchvision fp32" if impl == "torchvision" else "ours fp32"]()
    queue.put(_peak_rss_mib())


def _peak_rss_mib() -> float:
    """This process's peak resident memory: VmHWM (reset by exec, unlike ru_maxrss, which a spawned child
    inherits from the parent it was forked from), or ru_maxrss where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB -> MiB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory_mib(kind: str, impl: str, num_classes: int, batch: int, architecture: str = "ssd300_vgg16") -> float:
    """Peak resident memory (MiB) of a fresh process doing one inference or one training step."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_rss_worker, args=(kind, impl, num_classes, batch, architecture, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0 or queue.empty():
        raise SSDError(f"the memory measurement process for {impl} {kind} failed (exit code {proc.exitcode})")
    return float(queue.get())


def run_bench(
    num_classes: int = 21,
    rounds: int = 5,
    batch: int = 8,
    out: str | Path | None = None,
    memory: bool = True,
    training: bool = True,
    fastest: bool = True,
    weights: str | Path | None = None,
    data: str | Path | None = None,
    architecture: str = "ssd300_vgg16",
) -> str:
    """Measure and return the markdown table (also written to ``out`` if given); with ``weights`` and ``data`` also
    the accuracy of each inference mode on the data's test split."""
    lines = [
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {architecture} with {num_classes} classes, "
        f"medians of {rounds} interleaved rounds; ratio = time / torchvision's time (lower is better).",
        "",
        "| what | variant | ms per image | images/s | ratio |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        variants = inference_variants(num_classes, [1, batch], Path(tmp), fastest, architecture)
        for n, label in ((1, "latency, batch 1"), (batch, f"throughput, batch {batch}")):
            for name, ms, ips, ratio in rows(interleaved(variants[n], rounds), n, "torchvision fp32"):
                lines.append(f"| {label} | {name} | {ms:.1f} | {ips:.2f} | {ratio:.2f} |")
    if training:
        steps = interleaved(training_variants(num_classes, batch, architecture=architecture), max(2, rounds // 2))
        for name, ms, ips, ratio in rows(steps, batch, "torchvision fp32"):
            lines.append(f"| training step, batch {batch} | {name} | {ms:.1f} | {ips:.2f} | {ratio:.2f} |")
    if memory:
        lines += ["", "| peak resident memory (MiB) | torchvision | ours | ratio |", "|---|---|---|---|"]
        for kind, label in (("inference", "inference, batch 1"), ("training", f"training step, batch {batch}")):
            n = 1 if kind == "inference" else batch
            tv_mib = peak_memory_mib(kind, "torchvision", num_classes, n, architecture)
            our_mib = peak_memory_mib(kind, "ours", num_classes, n, architecture)
            lines.append(f"| {label} | {tv_mib:.0f} | {our_mib:.0f} | {our_mib / tv_mib:.2f} |")
    if not native_bf16():
        lines += [
            "",
            "No bf16 row: this CPU has no native bf16 (AVX-512 BF16 or AMX); emulated bf16 would only be slower.",
        ]
    table = "\n".join(lines) + "\n"
    if weights and data:
        table += "\n" + accuracy_of_modes(weights, data)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(table)
    return table


def accuracy_of_modes(weights: str | Path, data: str | Path, split: str = "test", workdir: Path | None = None) -> str:
    """VOC07 mAP of each inference mode of a trained checkpoint on a dataset split, next to PyTorch fp32."""

    model = load(weights)
    data_cfg = load_data_config(data)
    size = model.config.input_size
    dataset = build_dataset(data_cfg, split, transform=EvalTransform(size))
    loader = build_loader(dataset, 16, shuffle=False)
    calibration_set = build_dataset(
        data_cfg, "train" if "train" in data_cfg.splits else split, transform=EvalTransform(size)
    )
    calibration = [calibration_set[i][0] for i in range(min(32, len(calibration_set)))]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(workdir or tmp)
        fp32 = export_onnx(model, folder / "model.onnx", verify=False)
        int8 = quantize_onnx_int8(fp32, folder / "model.int8.onnx", calibration)
        channels_last = load(weights).to(memory_format=torch.channels_last)
        model.to(memory_format=torch.contiguous_format)
        modes: dict[str, Callable[[list[Tensor]], list[dict[str, Tensor]]]] = {
            "pytorch fp32": model,
            "pytorch fp32 channels-last": channels_last,
            "pytorch bf16 (autocast)": with_precision(model, "bf16", torch.device("cpu")),
            "onnxruntime fp32": OnnxRuntimeDetector(fp32, providers=["CPUExecutionProvider"]),
            "onnxruntime int8": OnnxRuntimeDetector(int8, providers=["CPUExecutionProvider"]),
        }
        scores = {}
        for name, detector in modes.items():
            dets, targets = predict_dataset(detector, loader, torch.device("cpu"), progress=False)
            scores[name] = float(evaluate_detections(dets, targets, ["voc07"], dataset.class_names)["voc07"]["map"])
    lines = [
        f"| mode ({split} split, {len(dataset)} images) | VOC07 mAP | difference to fp32 (points) |",
        "|---|---|---|",
    ]
    for name, value in scores.items():
        lines.append(f"| {name} | {value:.4f} | {100 * (value - scores['pytorch fp32']):+.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ssd300_vgg16", choices=ARCHITECTURES, help="the torchvision detector")
    parser.add_argument("--classes", type=int, default=21, help="number of classes including background (default 21)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per measurement")
    parser.add_argument("--batch", type=int, default=8, help="batch for throughput and the training step")
    parser.add_argument("--out", help="also write the table to this file")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    parser.add_argument("--no-training", action="store_true", help="skip the training-step measurement")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 ONNX Runtime variant")
    parser.add_argument("--weights", help="a trained checkpoint: also each mode's VOC07 mAP on --data's test split")
    parser.add_argument("--data", help="data YAML for --weights")
    args = parser.parse_args()
    table = run_bench(
        args.classes, args.rounds, args.batch, args.out, memory=not args.no_memory, training=not args.no_training,
        fastest=not args.no_int8, weights=args.weights, data=args.data, architecture=args.model,
    )  # fmt: skip
    print(table, end="")


if __name__ == "__main__":
    main()
