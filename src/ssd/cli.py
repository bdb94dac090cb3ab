"""The ``ssd`` command: parses arguments and calls the engine; no logic of its own."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .checkpoint import load
from .config import load_run_config
from .data.check import run_check_data
from .engine.demo import run_demo
from .engine.evaluate import run_evaluation
from .engine.memory import keep_freed_memory
from .engine.predict import predict_sources, summary_line
from .engine.predictor import Predictor
from .engine.runs import new_run_dir
from .engine.sources import expand_sources
from .engine.train import train
from .errors import SSDError
from .images import read_image
from .serve import API_KEY_VARIABLE, ServeSettings, serve

EXAMPLES = """examples:
  ssd demo                                          # shapes dataset, train on the CPU, evaluate
  ssd train --config ssd300_vgg16_voc0712 --data voc.yaml
  ssd train --config configs/shapes.yaml train.batch_size=16 model.width=0.5
  ssd train --resume runs/train3                    # continue exactly where it stopped
  torchrun --nproc_per_node=4 -m ssd train --config ssd300_vgg16_voc0712 --data voc.yaml
  ssd eval --weights runs/train/best.pt --data voc.yaml --metric voc07,coco
  ssd predict --weights runs/train/best.pt images/ video.mp4 --conf 0.3
  ssd predict --weights runs/train/best.pt 0         # the webcam; rtsp://... for a network camera
  ssd serve --weights runs/train/best.pt            # HTTP API and a browser page on http://127.0.0.1:8000
  ssd export --weights runs/train/best.pt --format onnx
  ssd check-data voc.yaml --model ssd300_vgg16
"""


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a detector",
        description="Train an SSD. A config file (or the name of a shipped one: ssd300_vgg16_voc0712, "
        "ssd512_vgg16_voc0712, ssd300_vgg16_coco, shapes) gives the model and recipe; key=value arguments "
        "override it (train.lr=0.01, model.input_size=512, or bare keys such as batch_size=16). Changing "
        "train.batch_size scales the learning rate linearly. Under torchrun each process takes its share of "
        "the global batch.",
    )
    p.add_argument("--config", default="ssd300_vgg16_voc0712", help="config YAML or shipped config name")
    p.add_argument("--data", help="data YAML (VOC, COCO or YOLO); overrides the config's data")
    p.add_argument("--resume", metavar="RUN_OR_CHECKPOINT", help="continue a run exactly (its folder or last.pt)")
    p.add_argument("--weights", help="start from this checkpoint (fine-tuning; heads re-initialised if classes differ)")
    p.add_argument(
        "--backbone-weights",
        help="torchvision ImageNet weights file of the backbone (vgg16, mobilenet_v3_large, mobilenet_v2, resnet50)",
    )
    p.add_argument("--project", default="runs", help="parent folder of run folders (default: runs)")
    p.add_argument("--name", help="run folder name (default: the next free runs/trainN)")
    p.add_argument("--exist-ok", action="store_true", help="reuse an existing run folder")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:

    if args.resume and (args.overrides or args.data or args.weights or args.backbone_weights):
        raise SSDError("--resume continues a run exactly as it was saved; it takes no --data, --weights or overrides")
    run = load_run_config(args.config, args.overrides)
    if args.data:
        run.data = args.data
    if args.weights:
        run.train.weights = args.weights
    if args.backbone_weights:
        run.train.backbone_weights = args.backbone_weights
    result = train(
        run,
        project=args.project,
        name=args.name,
        exist_ok=args.exist_ok,
        resume=args.resume,
        device=args.device,
        progress=not args.no_progress,
    )
    best = "n/a" if result.best_map is None else f"{result.best_map:.4f}"
    print(
        f"{'interrupted' if result.interrupted else 'finished'} at iteration {result.iterations}; best mAP {best}; run folder {result.run_dir}"
    )
    return 130 if result.interrupted else 0


def _add_detector(p: argparse.ArgumentParser) -> None:
    """The options that load a detector to run: weights, backend, precision, device."""
    p.add_argument("--weights", required=True, help="checkpoint (.pt) or, with --backend onnxruntime, an .onnx file")
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"])
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "fp16"],
        help="torch backend: bf16 autocast (CPU or CUDA; fast only on CPUs with native bf16) or fp16 (CUDA)",
    )
    p.add_argument("--device", default="auto")


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a detector on a dataset split",
        description="Run a checkpoint (or an ONNX model) over a split and print per-class AP. voc07 = the VOC2007 "
        "devkit's 11-point mAP@0.5 (the paper's VOC2007 test tables); voc = VOC2010+ all-point AP; coco = "
        "AP@[.5:.95] and friends as pycocotools computes them. Writes metrics.json, COCO-format detections, "
        "PR curves and a confusion matrix.",
    )
    _add_detector(p)
    p.add_argument("--data", required=True, help="data YAML")
    p.add_argument("--split", default="test", help="split name in the data YAML (default: test)")
    p.add_argument("--metric", default="voc07", help="comma-separated: voc07, voc, coco (default: voc07)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", help="output folder (default: runs/eval, numbered)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:

    metrics = [m.strip() for m in args.metric.split(",") if m.strip()]
    run_evaluation(
        args.weights,
        args.data,
        split=args.split,
        metrics=metrics,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        backend=args.backend,
        precision=args.precision,
        out_dir=args.out,
        progress=not args.no_progress,
    )
    return 0


def _add_check_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-data",
        help="report problems and statistics of a dataset",
        description="Read every annotation of a dataset (VOC, COCO, YOLO, CVAT or LabelMe; the format is told from "
        "the files when the YAML has none) without training: report unreadable files, bad boxes and unknown "
        "classes, plus images, boxes per class, box sizes and aspect ratios, and how well a model's default boxes "
        "cover the ground truth. --fit-priors also fits the default boxes to the training boxes and prints the "
        "config values. Exit status 1 when problems are found.",
    )
    p.add_argument("data", help="data YAML")
    p.add_argument("--splits", help="comma-separated split names (default: all in the YAML)")
    p.add_argument(
        "--model", default="ssd300_vgg16", help="model preset whose default boxes are checked ('none' to skip)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--fit-priors", action="store_true", help="fit the model's default boxes to the train split's boxes")
    p.set_defaults(func=_run_check_data)


def _run_check_data(args: argparse.Namespace) -> int:

    splits = [s for s in args.splits.split(",") if s] if args.splits else None
    model = None if args.model.lower() == "none" else args.model
    if args.fit_priors and model is None:
        raise SSDError("--fit-priors fits the default boxes of a --model: name a preset or a checkpoint")
    return run_check_data(args.data, splits, model, args.json, fit=args.fit_priors)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="generate the shapes dataset, train on it, evaluate",
        description="The whole pipeline on the built-in synthetic dataset: generate shapes (VOC layout), train the "
        "small 'shapes' preset, evaluate VOC07 mAP on the held-out test split, and write the checkpoint, "
        "metrics.json, prediction images, PR curves and the loss curve into runs/demo.",
    )
    p.add_argument("--data-dir", default="datasets/shapes", help="where the shapes dataset is generated")
    p.add_argument("--out", default="runs/demo", help="run folder (replaced on every demo)")
    p.add_argument("--train-images", type=int, help="training images to generate (default 16,000)")
    p.add_argument("--config", default="shapes", help="config (default: the shipped 'shapes' preset)")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.iterations=500")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:

    run_demo(
        args.data_dir,
        args.out,
        config=args.config,
        overrides=args.overrides,
        device=args.device,
        progress=not args.no_progress,
        shapes=None if args.train_images is None else {"num_train": args.train_images},
    )
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX",
        description="Write an ONNX model (opset >= 17, dynamic batch) whose input is a batch of images warped to the "
        "model's input size (float, 0..1) and whose outputs are the final detections (decode and NMS inside the "
        "graph: boxes [B, K, 4] normalised xyxy, scores, labels, num_detections), or with --raw the head outputs "
        "and the priors. The export checks itself by running ONNX Runtime against PyTorch. --int8 also writes a "
        "statically quantised copy (ONNX Runtime quantisation).",
    )
    p.add_argument("--weights", required=True, help="checkpoint (.pt)")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="export format (default: onnx)")
    p.add_argument("--out", help="output file (default: the checkpoint's name with .onnx)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--raw", action="store_true", help="export the raw head outputs instead of detections")
    p.add_argument("--int8", action="store_true", help="also write <out>.int8.onnx, calibrated on --calibration images")
    p.add_argument("--calibration", help="folder of images for int8 calibration (default: random images)")
    p.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime check")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from .export.onnx import export_onnx  # onnx and onnxruntime are optional: loaded for this command only

    model = load(args.weights)
    out = Path(args.out) if args.out else Path(args.weights).with_suffix(".onnx")
    export_onnx(model, out, opset=args.opset, raw=args.raw, verify=not args.no_verify)
    print(f"wrote {out}" + ("" if args.no_verify else " (checked against PyTorch with ONNX Runtime)"))
    if args.int8:
        from .export.quantize import quantize_onnx_int8  # optional, as above

        images = None
        if args.calibration:
            files = [path for path, kind in expand_sources([args.calibration]) if kind == "image"]
            images = [read_image(f).float() / 255 for f in files[:64]]
        int8 = quantize_onnx_int8(out, out.with_suffix(".int8.onnx"), images)
        print(f"wrote {int8}")
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="detect objects in images, folders, globs, videos, cameras or streams",
        description="Run a checkpoint (or an ONNX model with --backend onnxruntime) on each SOURCE: an image, a "
        "folder of images, a glob ('data/*.jpg'), a video file, a camera (0, 1, ...) or a network stream (rtsp://, "
        "rtmp://, http(s)://); videos need PyAV (pip install av). Writes annotated images (or an annotated video) "
        "and predictions.json into --out; --coco-json adds the COCO results format. An unreadable source is "
        "skipped and named; the exit status is 2 only if nothing could be read.",
    )
    p.add_argument("source", nargs="+", help="image, folder, glob, video, camera index or stream URL")
    _add_detector(p)
    p.add_argument("--conf", type=float, help="minimum score to keep (default: keep the model's threshold)")
    p.add_argument("--max-det", type=int, help="at most this many detections per image")
    p.add_argument("--classes", nargs="+", help="keep only these classes (labels or names)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", help="output folder (default: runs/predict, numbered)")
    p.add_argument("--coco-json", action="store_true", help="also write detections_coco.json")
    p.add_argument("--no-save", action="store_true", help="write the JSON only, no annotated images")
    p.add_argument("--strict", action="store_true", help="exit with status 1 if any source was skipped")
    p.add_argument("--vid-stride", type=int, default=1, help="of videos and streams, every N-th frame")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:

    predictor = Predictor(
        args.weights,
        backend=args.backend,
        device=args.device,
        conf=args.conf,
        max_det=args.max_det,
        classes=args.classes,
        batch_size=args.batch_size,
        precision=args.precision,
    )
    out = args.out or new_run_dir("runs", None, False, prefix="predict")
    summary = predict_sources(
        predictor,
        args.source,
        out,
        save_images=not args.no_save,
        coco_json=args.coco_json,
        progress=False if args.no_progress else None,
        vid_stride=args.vid_stride,
    )
    print(summary_line(summary))
    if summary["interrupted"]:
        return 130
    return 1 if args.strict and summary["skipped"] else 0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a detector over HTTP, with a browser page (webcam included)",
        description="An HTTP API (POST /v1/detect with an image; GET /v1/health, /v1/model, /v1/stats; the "
        "OpenAPI page at /docs) and a browser page at / to drop images or run the webcam. Requests that arrive "
        "together run as one batch. Needs the serve extra: pip install 'ssd-detector[serve]'.",
    )
    _add_detector(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch", type=int, default=8, help="images per batch at most (1: no batching)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits for more images")
    p.add_argument("--max-bytes", type=int, default=20 * 2**20, help="largest upload, in bytes")
    p.add_argument("--max-pixels", type=int, default=40_000_000, help="largest image, in pixels")
    p.add_argument("--max-queue", type=int, default=256, help="images waiting for the model at most; then 503")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a request waits for its result; then 503")
    p.add_argument("--api-key", help=f"require 'Authorization: Bearer KEY' on /v1/ (default: ${API_KEY_VARIABLE})")
    p.add_argument("--cors", nargs="+", default=[], metavar="ORIGIN", help="let pages from these origins call the API")
    p.set_defaults(func=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    settings = ServeSettings(
        model_name=Path(args.weights).name,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_bytes=args.max_bytes,
        max_pixels=args.max_pixels,
        max_queue=args.max_queue,
        timeout_s=args.timeout,
        api_key=args.api_key,
        cors_origins=tuple(args.cors),
    )
    serve(
        args.weights,
        backend=args.backend,
        device=args.device,
        precision=args.precision,
        host=args.host,
        port=args.port,
        settings=settings,
    )
    return 0


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_train,
    _add_eval,
    _add_predict,
    _add_serve,
    _add_export,
    _add_check_data,
    _add_demo,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssd",
        description="SSD: Single Shot MultiBox Detector (Liu et al., ECCV 2016). Train, evaluate and deploy.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s")
    if args.func in (_run_train, _run_eval, _run_predict, _run_demo, _run_serve):
        keep_freed_memory()
    try:
        return int(args.func(args) or 0)
    except SSDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
