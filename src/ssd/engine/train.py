"""The training loop: one process, one GPU or many processes under torchrun, read top to bottom in ``train``."""

from __future__ import annotations

import csv
import logging
import math
import random
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..build import build_model
from ..checkpoint import load_matching_weights, read_checkpoint, save
from ..config import RunConfig, TrainConfig, run_config_from_dict
from ..data import build_dataset, load_data_config
from ..data.loader import build_loader, set_epoch
from ..data.transforms import AugmentedDataset, EvalTransform, TrainTransform
from ..errors import SSDError
from ..model.ssd import SSD
from .distributed import DistInfo, any_process, barrier, broadcast_object, cleanup, init_distributed, max_over_processes
from .evaluate import evaluate_detections, predict_dataset
from .runs import new_run_dir
from .schedule import build_optimizer, build_scheduler, expected_iterations, load_optimizer_state, out_of_time

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    iterations: int  # iterations done when the run stopped
    best_map: float | None
    interrupted: bool = False


def autocast_context(device: torch.device, cfg: TrainConfig) -> Any:
    """bf16 autocast on CPU, fp16 (or bf16) on CUDA, when ``amp`` is on."""
    if not cfg.amp:
        return nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp_dtype)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class StopSignal:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step, so ``last.pt`` gets written."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C leaves at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _move_targets(targets: list[dict[str, Any]], device: torch.device) -> list[dict[str, Any]]:
    return [
        {"boxes": t["boxes"].to(device, non_blocking=True), "labels": t["labels"].to(device, non_blocking=True)}
        for t in targets
    ]


def _nan_message(iteration: int, losses: dict[str, float], lr: float, cfg: TrainConfig) -> str:
    values = ", ".join(f"{k}={v}" for k, v in losses.items())
    return (
        f"the loss is not finite at iteration {iteration} ({values}, lr={lr:.3g}). Likely causes: a learning rate "
        f"too high for batch size {cfg.batch_size} (try a lower train.lr or a longer train.warmup_iters, now "
        f"{cfg.warmup_iters}), fp16 overflow with train.amp (try train.amp_dtype=bf16), or broken boxes in the data "
        "(run `ssd check-data`). Training stopped; last.pt holds the last saved weights."
    )


def build_training_model(run: RunConfig, class_names: list[str], device: torch.device, dist_info: DistInfo) -> SSD:
    """The model of the run config for these classes, optionally initialised from weights, on ``device``."""
    cfg = run.train
    overrides = {**run.model, "num_classes": len(class_names), "class_names": class_names}
    model = build_model(run.preset, backbone_weights=cfg.backbone_weights, **overrides)
    if cfg.weights:
        loaded, skipped = load_matching_weights(model, cfg.weights)
        if dist_info.is_main:
            log.info(
                "initialised %d tensors from %s; re-initialised %d (%s)",
                loaded,
                cfg.weights,
                len(skipped),
                ", ".join(skipped[:6]),
            )
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def train(
    run: RunConfig,
    *,
    project: str | Path = "runs",
    name: str | None = None,
    exist_ok: bool = False,
    resume: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train the run config's model on its dataset; writes the run folder; returns where and how it ended."""
    dist_info = init_distributed(device)
    try:
        return _train(run, dist_info, Path(project), name, exist_ok, resume, progress)
    finally:
        cleanup()


def _train(
    run: RunConfig,
    dist_info: DistInfo,
    project: Path,
    name: str | None,
    exist_ok: bool,
    resume: str | Path | None,
    progress: bool,
) -> TrainResult:
    # --- where the run lives, and what it resumes from
    state: dict[str, Any] | None = None
    if resume is not None:
        ckpt_path = Path(resume) / "last.pt" if Path(resume).is_dir() else Path(resume)
        state = read_checkpoint(ckpt_path)
        if "run_config" not in state or "optimizer" not in state:
            raise SSDError(f"{ckpt_path}: holds weights only, not a training state; use train.weights=... to fine-tune")
        run = run_config_from_dict(state["run_config"], f"{ckpt_path}: run_config")
        run_dir = ckpt_path.parent
    else:
        run_dir = new_run_dir(project, name, exist_ok) if dist_info.is_main else None
        run_dir = Path(broadcast_object(str(run_dir)))
    cfg = run.train
    if run.data is None:
        raise SSDError("no dataset: give --data DATA.yaml or set data: in the config")
    if cfg.batch_size % dist_info.world_size:
        raise SSDError(f"train.batch_size {cfg.batch_size} must divide evenly over {dist_info.world_size} processes")
    device = dist_info.device
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)

    # --- data: augmented training split, warped validation split
    data_cfg = load_data_config(run.data)
    train_set = build_dataset(data_cfg, cfg.train_split, keep_difficult=cfg.keep_difficult, skip_bad=cfg.skip_bad)
    class_names = train_set.class_names
    model = build_training_model(run, class_names, device, dist_info)
    mean_rgb = tuple(float(m) for m in model.config.image_mean)
    augment = TrainTransform(
        model.config.input_size,
        mean_rgb,
        zoom_out_max=cfg.zoom_out_max,
        random_crop=cfg.random_crop,
        photometric=cfg.photometric,
    )
    train_data = AugmentedDataset(train_set, augment, seed=cfg.seed)
    per_process_batch = cfg.batch_size // dist_info.world_size
    train_loader = build_loader(
        train_data,
        per_process_batch,
        shuffle=True,
        num_workers=cfg.workers,
        seed=cfg.seed,
        drop_last=True,
        distributed=dist_info.distributed,
    )
    if len(train_loader) == 0:
        raise SSDError(f"split {cfg.train_split!r} has fewer images than one batch ({cfg.batch_size})")
    val_loader = None
    if cfg.val_split in data_cfg.splits:
        val_set = build_dataset(
            data_cfg, cfg.val_split, transform=EvalTransform(model.config.input_size), skip_bad=True
        )
        val_loader = build_loader(
            val_set,
            per_process_batch,
            shuffle=False,
            num_workers=cfg.workers,
            seed=cfg.seed,
            distributed=dist_info.distributed,
        )

    # --- model, optimizer, schedule, mixed precision
    if dist_info.distributed:
        if model.config.batch_norm and cfg.sync_bn and device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.loss.normalize_over_processes = True
        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        ddp = model
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp and device.type == "cuda" and cfg.amp_dtype != "bf16")

    iteration = 0
    history: dict[str, list[list[float]]] = {"loc": [], "conf": [], "total": [], "map": []}
    best_map: float | None = None
    if state is not None:
        model.load_state_dict(state["model"])
        load_optimizer_state(optimizer, state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty when the saved run had no fp16 loss scaling
            scaler.load_state_dict(state["scaler"])
        iteration = int(state["iteration"])
        history = state.get("history", history)
        best_map = state.get("best_map")
        restore_rng_state(state["rng"])
        if out_of_time(scheduler.seconds, cfg):
            raise SSDError(
                f"{ckpt_path}: this run has already trained for its train.max_minutes ({cfg.max_minutes:g}); to train "
                f"on, start a new run from it with --weights {ckpt_path}"
            )

    writer = None
    if dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(
            yaml.safe_dump({**run.to_dict(), "model_config": model.config.to_dict()}, sort_keys=False)
        )
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tensorboard"))
        log.info(
            "run folder %s; %d training images, %d per epoch step, lr %.3g",
            run_dir,
            len(train_set),
            cfg.batch_size,
            cfg.scaled_lr,
        )

    def save_checkpoint(path: Path) -> None:
        if dist_info.is_main:
            save(
                model,
                path,
                run_config=run.to_dict(),
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                scaler=scaler.state_dict(),
                iteration=iteration,
                rng=rng_state(),
                history=history,
                best_map=best_map,
            )

    def evaluate_now() -> float | None:
        nonlocal best_map
        if val_loader is None:
            return None
        model.eval()
        dets, targets = predict_dataset(model, val_loader, device, dist_info, progress, desc=f"eval {cfg.val_split}")
        model.train()
        if not dist_info.is_main:
            return None
        result = evaluate_detections(dets, targets, [cfg.eval_metric], class_names)[cfg.eval_metric]
        mean_ap = float(result["map"])
        history["map"].append([iteration, mean_ap])
        _append_metrics_csv(
            run_dir / "metrics.csv",
            iteration,
            iteration / iters_per_epoch,
            mean_ap,
            history,
            scheduler.get_last_lr()[0],
        )
        if writer is not None:
            writer.add_scalar(f"val/{cfg.eval_metric}_map", mean_ap, iteration)
        tqdm.write(
            f"iteration {iteration}: {cfg.eval_metric} mAP {mean_ap:.4f} on {cfg.val_split} ({len(dets)} images)"
        )
        if best_map is None or mean_ap > best_map:
            best_map = mean_ap
            save_checkpoint(run_dir / "best.pt")
        return mean_ap

    # --- the loop
    iters_per_epoch = len(train_loader)
    model.train()
    # training time (evaluations and checkpoints included) counts on across a resume
    start_time = time.perf_counter() - scheduler.seconds
    interrupted = stopping = False
    bar = tqdm(
        total=cfg.iterations,
        initial=iteration,
        disable=not (progress and dist_info.is_main),
        dynamic_ncols=True,
        desc="train",
    )
    running: dict[str, float] = {}  # loss sums over the steps of the current logging window
    window_steps, images_seen, window_start = 0, 0, time.perf_counter()
    with StopSignal() as stop:
        while iteration < cfg.iterations and not stopping:
            epoch, first_batch = divmod(iteration, iters_per_epoch)
            set_epoch(train_loader, epoch, start_batch=first_batch)
            for images, targets in train_loader:
                (empty,) = any_process(dist_info, not images)  # all unreadable (each warned about): all processes skip
                if empty:
                    continue
                images = [img.to(device, non_blocking=True) for img in images]
                with autocast_context(device, cfg):
                    losses = ddp(images, _move_targets(targets, device))
                total = losses["loc"] + losses["conf"]
                values = {k: float(v.detach()) for k, v in losses.items()}
                if not math.isfinite(float(total.detach())):
                    bar.close()
                    raise SSDError(_nan_message(iteration + 1, values, scheduler.get_last_lr()[0], cfg))
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(total).backward()
                if cfg.grad_clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                iteration += 1
                # every process takes the same decisions (stop, learning rate), so none waits in a collective
                # the others left: the stop request and the training time are maxima over the processes
                stop_requested, seconds = max_over_processes(
                    dist_info, float(stop.requested), time.perf_counter() - start_time
                )
                scheduler.step(seconds)

                values["total"] = values["loc"] + values["conf"]
                for k, v in values.items():
                    running[k] = running.get(k, 0.0) + v
                window_steps += 1
                images_seen += len(images) * dist_info.world_size
                if iteration % 10 == 0 or iteration == cfg.iterations:
                    means = {k: v / window_steps for k, v in running.items()}
                    speed = images_seen / max(time.perf_counter() - window_start, 1e-9)
                    running, window_steps, images_seen, window_start = {}, 0, 0, time.perf_counter()
                    for k, v in means.items():
                        history[k].append([iteration, v])
                        if writer is not None:
                            writer.add_scalar(f"train/{k}", v, iteration)
                    if writer is not None:
                        writer.add_scalar("train/lr", scheduler.get_last_lr()[0], iteration)
                    bar.total = expected_iterations(iteration, scheduler.seconds, cfg)  # the ETA follows the clock
                    bar.set_postfix(
                        loss=f"{means['total']:.3f}",
                        loc=f"{means['loc']:.3f}",
                        conf=f"{means['conf']:.3f}",
                        lr=f"{scheduler.get_last_lr()[0]:.2g}",
                        img_s=f"{speed:.1f}",
                    )
                bar.update(1)

                signalled, time_is_up = stop_requested > 0, out_of_time(seconds, cfg)
                if signalled or time_is_up:
                    stopping, interrupted = True, signalled
                    if time_is_up and dist_info.is_main:
                        tqdm.write(
                            f"stopping after {cfg.max_minutes} minutes (train.max_minutes) at iteration {iteration}"
                        )
                    break
                if cfg.eval_interval and iteration % cfg.eval_interval == 0 and iteration < cfg.iterations:
                    evaluate_now()
                if iteration % cfg.checkpoint_interval == 0:
                    save_checkpoint(run_dir / "last.pt")
                if iteration >= cfg.iterations:
                    break
    bar.close()
    if not interrupted:
        evaluate_now()
    save_checkpoint(run_dir / "last.pt")
    if dist_info.is_main:
        if train_data.num_skipped:
            log.warning("skipped %d unreadable training images (each named in a warning above)", train_data.num_skipped)
        _write_plots(run_dir, history)
        if writer is not None:
            writer.close()
    barrier()
    return TrainResult(run_dir, iteration, best_map, interrupted)


def _append_metrics_csv(path: Path, iteration: int, epoch: float, mean_ap: float, history: dict, lr: float) -> None:
    last = {k: (history[k][-1][1] if history[k] else float("nan")) for k in ("loc", "conf", "total")}
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(["iteration", "epoch", "loss", "loss_loc", "loss_conf", "lr", "map"])
        writer.writerow(
            [
                iteration,
                f"{epoch:.3f}",
                f"{last['total']:.5f}",
                f"{last['loc']:.5f}",
                f"{last['conf']:.5f}",
                f"{lr:.6g}",
                f"{mean_ap:.5f}",
            ]
        )


def _write_plots(run_dir: Path, history: dict[str, list[list[float]]]) -> None:
    from ..viz import plot_loss_curves, plot_metric_curve

    plot_loss_curves(
        {k: [tuple(p) for p in history[k]] for k in ("loc", "conf", "total") if history[k]}, run_dir / "loss.png"
    )
    if history["map"]:
        plot_metric_curve([tuple(p) for p in history["map"]], run_dir / "map.png", ylabel="mAP")
