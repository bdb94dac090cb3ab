"""The training loop: one process, one GPU or many processes under torchrun, read top to bottom in ``train``.

Setup (run folder, data, model, optimizer), then ``train_step`` over the batches, with logging, evaluation and
checkpoints as small functions beside it. A step leaves its losses on the device; they are read (checked for a
non-finite value) every ``LOG_INTERVAL`` steps and before anything is evaluated or saved. Every process takes the
same decisions (stop, learning rate) from values agreed over the processes every ``SYNC_INTERVAL`` steps, so none
waits in a collective that the others left.
"""

from __future__ import annotations

import logging
import random
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..build import build_model
from ..checkpoint import load_matching_weights, read_checkpoint
from ..config import RunConfig, TrainConfig, prior_fit_mode, run_config_from_dict
from ..data import build_dataset, load_data_config
from ..data.cache import cache_enabled
from ..data.check import normalized_boxes
from ..data.loader import build_loader, set_epoch
from ..data.transforms import AugmentedDataset, EvalTransform, TrainTransform
from ..errors import SSDError
from ..layout import apply_layout
from ..model.ssd import SSD
from ..prior_fit import fit_priors
from .distributed import (
    DistInfo,
    barrier,
    broadcast_object,
    cleanup,
    gather_to_main,
    init_distributed,
    local_main_first,
    max_over_processes,
)
from .evaluate import evaluate_detections, predict_dataset
from .run_log import LOG_INTERVAL, REPLACED_SAMPLES_FILE, LossWindow, RunLog, record_replaced_samples
from .runs import new_run_dir
from .schedule import expected_iterations, out_of_time
from .signals import StopSignal
from .state import TrainState

log = logging.getLogger(__name__)

SYNC_INTERVAL = 10  # steps between the processes' agreements on the stop signal and the clock (under torchrun)


@dataclass
class TrainResult:
    run_dir: Path
    iterations: int  # iterations done when the run stopped
    best_map: float | None
    interrupted: bool = False


@dataclass
class TrainingData:
    """The augmented training loader, the validation loader (None without a validation split), the classes."""

    train: DataLoader
    augmented: AugmentedDataset
    val: DataLoader | None
    class_names: list[str]


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
        saved, run, run_dir = resolve_run(run, dist_info, Path(project), name, exist_ok, resume)
        check_run(run, dist_info)
        torch.manual_seed(run.train.seed)
        random.seed(run.train.seed)
        data_cfg = load_data_config(run.data)
        with building_datasets(dist_info):
            train_set = build_dataset(
                data_cfg, run.train.train_split, keep_difficult=run.train.keep_difficult, skip_bad=run.train.skip_bad
            )
        if saved is None:
            fit_default_boxes(run, train_set, dist_info)
        model = build_training_model(run, train_set.class_names, dist_info)
        check_batch_norm_batch(model, run.train, dist_info)
        data = build_training_data(run, data_cfg, train_set, model, dist_info)
        state = TrainState.create(run, model, dist_info.device)
        if saved is not None:
            state.restore(saved, checkpoint_path(resume))
        if dist_info.is_main:
            write_run_config(run_dir, run, model)
            log.info("run folder %s; %d training images, lr %.3g", run_dir, len(train_set), run.train.scaled_lr)
        interrupted = train_loop(
            state, wrap_for_processes(model, run.train, dist_info), data, run_dir, dist_info, progress
        )
        report_replaced_samples(data.augmented, run_dir, dist_info)
        barrier()
        return TrainResult(run_dir, state.iteration, state.best_map, interrupted)
    finally:
        cleanup()


# --------------------------------------------------------------------------------------------------------- setup


def checkpoint_path(resume: str | Path) -> Path:
    """``last.pt`` of a run folder, or the checkpoint file itself."""
    return Path(resume) / "last.pt" if Path(resume).is_dir() else Path(resume)


def resolve_run(
    run: RunConfig, dist_info: DistInfo, project: Path, name: str | None, exist_ok: bool, resume: str | Path | None
) -> tuple[dict[str, Any] | None, RunConfig, Path]:
    """The saved training state (None for a new run), the run config and the run folder.

    A resumed run takes its config and folder from the checkpoint; a new one gets a fresh folder, chosen by the
    main process and shared with the others.
    """
    if resume is None:
        run_dir = new_run_dir(project, name, exist_ok) if dist_info.is_main else None
        return None, run, Path(broadcast_object(str(run_dir)))
    path = checkpoint_path(resume)
    saved = read_checkpoint(path)
    if "run_config" not in saved or "optimizer" not in saved:
        raise SSDError(f"{path}: holds weights only, not a training state; use train.weights=... to fine-tune")
    return saved, run_config_from_dict(saved["run_config"], f"{path}: run_config"), path.parent


def check_run(run: RunConfig, dist_info: DistInfo) -> None:
    if run.data is None:
        raise SSDError("no dataset: give --data DATA.yaml or set data: in the config")
    if run.train.batch_size % dist_info.world_size:
        raise SSDError(
            f"train.batch_size {run.train.batch_size} must divide evenly over {dist_info.world_size} processes"
        )


def fit_default_boxes(run: RunConfig, train_set: Any, dist_info: DistInfo) -> None:
    """With ``model.prior_fit`` auto or force, fit the default boxes to the training boxes (on the main process,
    shared with the others) and write them into the run's model section, which the checkpoints and
    ``config.yaml`` keep; ``prior_fit`` becomes off, so that a resume uses the same boxes without fitting again."""
    mode = prior_fit_mode(run.model.get("prior_fit", "off"))
    if mode == "off":
        return
    if mode == "auto" and run.train.weights:
        raise SSDError(
            f"model.prior_fit: auto would change the default boxes that the heads of train.weights "
            f"({run.train.weights}) were trained for, voiding their box regression: leave prior_fit off, or set "
            "model.prior_fit: force to fit them anyway"
        )
    values = None
    if dist_info.is_main:
        with torch.random.fork_rng(devices=[]):  # the model built to fit draws no numbers from the run's stream
            model = build_model(run.preset, **{k: v for k, v in run.model.items() if k != "prior_fit"})
        boxes = normalized_boxes(train_set)
        fit = fit_priors(boxes, model.config, model.feature_sizes, seed=run.train.seed)
        before, after = fit.before, fit.after
        log.info(
            "default boxes fitted to %d training boxes: %.1f%% -> %.1f%% have a prior with IoU >= 0.5 (mean best "
            "IoU %.3f -> %.3f, positives per box %.2f -> %.2f)", len(boxes), 100 * before.share_iou50,
            100 * after.share_iou50, before.mean_best_iou, after.mean_best_iou, before.mean_positives,
            after.mean_positives,
        )  # fmt: skip
        values = fit.spec.config_values(model.config.input_size)
    run.model.update(broadcast_object(values), prior_fit="off")


def building_datasets(dist_info: DistInfo) -> AbstractContextManager[None]:
    """Where datasets are built: with the index cache on, on each node's first process before the others, which
    then map the index it wrote; with it off every process parses at once, since none could use another's work."""
    return local_main_first(dist_info) if cache_enabled() else nullcontext()


def build_training_model(run: RunConfig, class_names: list[str], dist_info: DistInfo) -> SSD:
    """The model of the run config for these classes, optionally initialised from weights, on the device."""
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
    model.to(dist_info.device)
    return apply_layout(model, dist_info.device, training=True, setting=cfg.channels_last)


def check_batch_norm_batch(model: SSD, cfg: TrainConfig, dist_info: DistInfo) -> None:
    """Refuse a per-process batch of one image for a batch-norm model, unless SyncBatchNorm pools the processes:
    its smallest maps (1x1) would hold one value per channel, which batch norm cannot normalise."""
    per_process = cfg.batch_size // dist_info.world_size
    has_batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    synchronised = dist_info.distributed and dist_info.device.type == "cuda" and cfg.sync_bn
    if per_process > 1 or not has_batch_norm or synchronised:
        return
    processes = f"{dist_info.world_size} processes" if dist_info.distributed else "1 process"
    raise SSDError(
        f"train.batch_size {cfg.batch_size} over {processes} leaves 1 image per process, and the batch norm of the "
        f"{model.config.backbone} model needs at least 2 in training (its 1x1 maps hold one value per channel): "
        f"set train.batch_size to {2 * dist_info.world_size} or more"
        + (", or train on CUDA, where train.sync_bn: true pools the processes" if dist_info.distributed else "")
    )


def build_training_data(run: RunConfig, data_cfg: Any, train_set: Any, model: SSD, dist_info: DistInfo) -> TrainingData:
    """The paper's augmentation over the training split, and the warped validation split if the data has one."""
    cfg = run.train
    mean_rgb = tuple(float(m) for m in model.config.image_mean)
    augment = TrainTransform(
        model.config.input_size,
        mean_rgb,
        zoom_out_max=cfg.zoom_out_max,
        random_crop=cfg.random_crop,
        photometric=cfg.photometric,
    )
    augmented = AugmentedDataset(train_set, augment, seed=cfg.seed)
    per_process = cfg.batch_size // dist_info.world_size
    loader_args = dict(num_workers=cfg.workers, seed=cfg.seed, distributed=dist_info.distributed)
    train_loader = build_loader(augmented, per_process, shuffle=True, drop_last=True, **loader_args)
    if len(train_loader) == 0:
        raise SSDError(f"split {cfg.train_split!r} has fewer images than one batch ({cfg.batch_size})")
    val_loader = None
    if cfg.val_split in data_cfg.splits:
        transform = EvalTransform(model.config.input_size)
        with building_datasets(dist_info):
            val_set = build_dataset(data_cfg, cfg.val_split, transform=transform, skip_bad=True)
        if list(val_set.class_names) != list(train_set.class_names):
            raise SSDError(
                f"{data_cfg.source}: split {cfg.val_split!r} has the classes {val_set.class_names[1:]} but "
                f"{cfg.train_split!r} has {train_set.class_names[1:]}: give names: in the data YAML"
            )
        val_loader = build_loader(val_set, per_process, shuffle=False, **loader_args)
    return TrainingData(train_loader, augmented, val_loader, list(train_set.class_names))


def wrap_for_processes(model: SSD, cfg: TrainConfig, dist_info: DistInfo) -> nn.Module:
    """``model`` itself in one process; under torchrun, DDP (with synchronised batch norm on CUDA if asked)."""
    if not dist_info.distributed:
        return model
    if cfg.sync_bn and dist_info.device.type == "cuda":  # a no-op for models without batch norm
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.loss.normalize_over_processes = True
    device_ids = [dist_info.device.index] if dist_info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def write_run_config(run_dir: Path, run: RunConfig, model: SSD) -> None:
    """``config.yaml``: the run config as given and the model config it resolved to."""
    run_dir.mkdir(parents=True, exist_ok=True)
    values = {**run.to_dict(), "model_config": model.config.to_dict()}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(values, sort_keys=False))


# ---------------------------------------------------------------------------------------------------------- loop


def train_loop(
    state: TrainState, net: nn.Module, data: TrainingData, run_dir: Path, dist_info: DistInfo, progress: bool
) -> bool:
    """Step until ``iterations`` or ``max_minutes``, or a stop signal; returns whether it was interrupted."""
    cfg = state.run.train
    show = progress and dist_info.is_main
    bar = tqdm(total=cfg.iterations, initial=state.iteration, disable=not show, dynamic_ncols=True, desc="train")
    run_log = RunLog(run_dir, dist_info.is_main, bar)
    interrupted = False
    state.model.train()
    if state.iteration < cfg.iterations:
        with StopSignal() as stop:
            interrupted = run_steps(state, net, data, run_dir, run_log, stop, dist_info, progress)
    bar.close()
    if not interrupted:
        evaluate_and_keep_best(state, data, run_dir, run_log, dist_info, progress)
    save_last(state, run_dir, dist_info)
    run_log.close(state.history)
    return interrupted


def run_steps(
    state: TrainState,
    net: nn.Module,
    data: TrainingData,
    run_dir: Path,
    run_log: RunLog,
    stop: StopSignal,
    dist_info: DistInfo,
    progress: bool,
) -> bool:
    """Train step after step until the run's end; returns whether a stop signal ended it."""
    cfg = state.run.train
    start = time.perf_counter() - state.clock.seconds  # training time counts on across a resume
    window = LossWindow()
    for images, targets in batches(data.train, state.iteration):
        lr = state.lr
        losses = train_step(state, net, images, targets, dist_info.device)
        window.add(state.iteration, losses, lr, len(images) * dist_info.world_size)
        signalled = share_progress(state, stop, start, dist_info)
        state.scheduler.step()
        run_log.bar.update(1)
        if state.iteration % LOG_INTERVAL == 0 or state.iteration == cfg.iterations:
            check_finite(window, cfg, dist_info)
            run_log.losses(state.iteration, window, state.lr, state.history)
            run_log.bar.total = expected_iterations(state.iteration, state.clock.seconds, cfg)  # the ETA follows it
            window = LossWindow()
        if signalled or out_of_time(state.clock.seconds, cfg):
            check_finite(window, cfg, dist_info)  # last.pt is saved next
            if not signalled and dist_info.is_main:
                tqdm.write(
                    f"stopping after {cfg.max_minutes} minutes (train.max_minutes) at iteration {state.iteration}"
                )
            return bool(signalled)
        if state.iteration >= cfg.iterations:
            return False
        after_step(state, data, run_dir, run_log, window, dist_info, progress)
    return False


def batches(loader: DataLoader, first_iteration: int) -> Any:
    """The loader's batches, epoch after epoch, from the batch of ``first_iteration`` on (resume mid-epoch)."""
    epoch, first_batch = divmod(first_iteration, len(loader))
    while True:
        set_epoch(loader, epoch, start_batch=first_batch)
        yield from loader
        epoch, first_batch = epoch + 1, 0


def train_step(
    state: TrainState, net: nn.Module, images: list[torch.Tensor], targets: list[dict], device: torch.device
) -> dict[str, torch.Tensor]:
    """Forward, loss, backward, update; returns the ``loc`` and ``conf`` losses as tensors on the device, unread,
    so that the host queues the next step without waiting for this one (``check_finite`` reads them later)."""
    cfg = state.run.train
    images = [img.to(device, non_blocking=True) for img in images]
    targets = [{k: t[k].to(device, non_blocking=True) for k in ("boxes", "labels")} for t in targets]
    with autocast_context(device, cfg):
        losses = net(images, targets)
    total = losses["loc"] + losses["conf"]
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(total).backward()
    if cfg.grad_clip:
        state.scaler.unscale_(state.optimizer)
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.grad_clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.iteration += 1
    return {"loc": losses["loc"].detach(), "conf": losses["conf"].detach()}


def share_progress(state: TrainState, stop: StopSignal, start: float, dist_info: DistInfo) -> bool:
    """Set the training clock and say whether a stop signal ends the run, as every process takes them now.

    One process reads its clock and signal after every step. Under torchrun the processes agree on them (their
    maximum, one all-reduce) every ``SYNC_INTERVAL`` steps and at the last one; in between each keeps the last
    agreed clock, so that the learning rate stays the same on every process, and none stops.
    """
    cfg = state.run.train
    if dist_info.distributed and state.iteration % SYNC_INTERVAL and state.iteration < cfg.iterations:
        return False
    signalled, state.clock.seconds = max_over_processes(dist_info, float(stop.requested), time.perf_counter() - start)
    return bool(signalled)


def check_finite(window: LossWindow, cfg: TrainConfig, dist_info: DistInfo) -> None:
    """Raise at the first non-finite loss of the window on any process (reads the losses from the device).

    Under torchrun the processes share what they found (one all-gather), so that all of them stop together and
    the main process saves nothing after a non-finite step on another.
    """
    if window.steps == 0:  # the same on every process: all skip the all-gather together
        return
    found = [bad for bad in gather_to_main([window.first_non_finite()]) if bad is not None]
    if found:
        iteration, losses, lr = min(found, key=lambda bad: bad[0])
        raise SSDError(nan_message(iteration, losses, lr, cfg))


def after_step(
    state: TrainState,
    data: TrainingData,
    run_dir: Path,
    run_log: RunLog,
    window: LossWindow,
    dist_info: DistInfo,
    progress: bool,
) -> None:
    """The periodic evaluation and checkpoint of a run that goes on, each after the losses are checked."""
    cfg = state.run.train
    evaluate_now = bool(cfg.eval_interval) and state.iteration % cfg.eval_interval == 0
    save_now = state.iteration % cfg.checkpoint_interval == 0
    if evaluate_now or save_now:
        check_finite(window, cfg, dist_info)
    if evaluate_now:
        evaluate_and_keep_best(state, data, run_dir, run_log, dist_info, progress)
    if save_now:
        save_last(state, run_dir, dist_info)


def evaluate_and_keep_best(
    state: TrainState, data: TrainingData, run_dir: Path, run_log: RunLog, dist_info: DistInfo, progress: bool
) -> None:
    """mAP on the validation split (all processes predict, the main one scores); a new best is saved as best.pt."""
    if data.val is None:
        return
    cfg = state.run.train
    state.model.eval()
    dets, targets = predict_dataset(
        state.model, data.val, dist_info.device, dist_info, progress, f"eval {cfg.val_split}"
    )
    state.model.train()
    if not dist_info.is_main:
        return
    mean_ap = float(evaluate_detections(dets, targets, [cfg.eval_metric], data.class_names)[cfg.eval_metric]["map"])
    epoch = state.iteration / len(data.train)
    run_log.evaluation(state.iteration, epoch, cfg.eval_metric, mean_ap, state.lr, state.history)
    tqdm.write(
        f"iteration {state.iteration}: {cfg.eval_metric} mAP {mean_ap:.4f} on {cfg.val_split} ({len(dets)} images)"
    )
    if state.best_map is None or mean_ap > state.best_map:
        state.best_map = mean_ap
        state.save(run_dir / "best.pt")


def report_replaced_samples(augmented: AugmentedDataset, run_dir: Path, dist_info: DistInfo) -> None:
    """Log how many drawn samples were replaced because their image could not be read, and record them in the
    run folder's ``replaced_samples.json``."""
    paths = sorted(set(gather_to_main(augmented.unreadable_paths())))
    replaced = sum(gather_to_main([augmented.num_replaced]))
    if not dist_info.is_main or not paths:
        return
    log.warning(
        "%d drawn samples were replaced by others of the same epoch: %d training images cannot be read (named "
        "above; listed in %s)",
        replaced,
        len(paths),
        run_dir / REPLACED_SAMPLES_FILE,
    )
    record_replaced_samples(run_dir / REPLACED_SAMPLES_FILE, paths, replaced)


def save_last(state: TrainState, run_dir: Path, dist_info: DistInfo) -> None:
    if dist_info.is_main:
        state.save(run_dir / "last.pt")


def autocast_context(device: torch.device, cfg: TrainConfig) -> Any:
    """bf16 autocast on CPU, fp16 (or bf16) on CUDA, when ``amp`` is on."""
    if not cfg.amp:
        return nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp_dtype)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def nan_message(iteration: int, losses: dict[str, float], lr: float, cfg: TrainConfig) -> str:
    values = ", ".join(f"{k}={v}" for k, v in losses.items())
    return (
        f"the loss is not finite at iteration {iteration} ({values}, lr={lr:.3g}). Likely causes: a learning rate "
        f"too high for batch size {cfg.batch_size} (try a lower train.lr or a longer train.warmup_iters, now "
        f"{cfg.warmup_iters}), fp16 overflow with train.amp (try train.amp_dtype=bf16), or broken boxes in the data "
        "(run `ssd check-data`). Training stopped; last.pt holds the last saved weights."
    )
