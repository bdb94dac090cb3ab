"""Optimizer with the original's parameter groups, and the learning-rate schedules (``LambdaLR``) with warm-up."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from ..config import TrainConfig

FUSED_DEVICES = {"cpu", "cuda"}  # where we use PyTorch's fused SGD and AdamW kernels (others have some too, untried)
IMPLEMENTATION_KEYS = ("fused", "foreach")


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (the paper) or AdamW; biases get ``bias_lr_factor`` x the learning rate and no weight decay.

    Norm parameters (batch norm, the L2Norm scale) get no weight decay either, unless ``decay_biases_and_norms``.
    On CPU and CUDA the update runs as PyTorch's fused kernel.
    """
    decay, no_decay, biases = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.endswith(".bias"):
            biases.append(param)
        elif param.ndim <= 1:  # batch-norm weights, the L2Norm scale
            no_decay.append(param)
        else:
            decay.append(param)
    lr = cfg.scaled_lr
    other_decay = cfg.weight_decay if cfg.decay_biases_and_norms else 0.0
    groups = [
        {"params": decay, "lr": lr, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "lr": lr, "weight_decay": other_decay},
        {"params": biases, "lr": lr * cfg.bias_lr_factor, "weight_decay": other_decay},
    ]
    devices = {param.device.type for group in groups for param in group["params"]}
    fused = devices <= FUSED_DEVICES or None  # None: PyTorch's default implementation
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, fused=fused)
    return torch.optim.AdamW(groups, lr=lr, fused=fused)


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Load a saved optimizer state but keep this optimizer's implementation (fused or not).

    ``load_state_dict`` would take ``fused`` from a checkpoint written before the fused kernels (or on another
    device), while GradScaler goes by the flag set at construction and would pass fused-only arguments to the
    for-loop update, which fails.
    """
    groups = [dict(group) for group in saved["param_groups"]]
    for group, current in zip(groups, optimizer.param_groups):  # a count mismatch is load_state_dict's to report
        group.update({key: current.get(key) for key in IMPLEMENTATION_KEYS})
    optimizer.load_state_dict({**saved, "param_groups": groups})
    match_parameter_layouts(optimizer)


def match_parameter_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give every state tensor (momentum, moments) its parameter's memory layout.

    A run resumed in another layout (``train.channels_last: auto`` on another machine) loads buffers with the
    strides they were saved with; the fused kernels assume the parameter's strides and would update wrongly.
    """
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.shape == param.shape and value.stride() != param.stride():
                state[key] = torch.empty_like(param).copy_(value)


def training_progress(iteration: int, cfg: TrainConfig, seconds: float = 0.0) -> float:
    """How far through the run, 0..1: the share of ``iterations`` done or, with ``schedule_by_time``, the share
    of ``max_minutes`` trained if that is further along."""
    progress = iteration / cfg.iterations
    if cfg.schedule_by_time and cfg.max_minutes:
        progress = max(progress, seconds / (60.0 * cfg.max_minutes))
    return min(progress, 1.0)


def out_of_time(seconds: float, cfg: TrainConfig) -> bool:
    """Whether a run with ``seconds`` of training in all has used up its ``max_minutes`` (never without one)."""
    return cfg.max_minutes is not None and seconds >= 60.0 * cfg.max_minutes


def expected_iterations(iteration: int, seconds: float, cfg: TrainConfig) -> int:
    """The iteration the run will end at: ``iterations``, or fewer if ``max_minutes`` runs out first at the pace
    of the first ``iteration`` steps in ``seconds`` (for the progress bar's total and ETA)."""
    if not cfg.max_minutes or seconds <= 0:
        return cfg.iterations
    in_time = round(iteration * 60.0 * cfg.max_minutes / seconds)
    return max(iteration, min(cfg.iterations, in_time))


def lr_factor(iteration: int, cfg: TrainConfig, seconds: float = 0.0) -> float:
    """Multiplier of the base learning rate after ``iteration`` steps and ``seconds`` of training.

    Linear warm-up over ``warmup_iters``, then: ``step`` (x ``gamma`` at each milestone iteration), ``cosine``
    (half a cosine from 1 to 0), or ``wsd`` (warm-up, stable, decay: constant, then linear to 0 over the last
    ``decay_fraction`` of the run). Cosine and wsd follow ``training_progress``.
    """
    progress = training_progress(iteration, cfg, seconds)
    if cfg.schedule == "step":
        factor = cfg.gamma ** sum(iteration >= m for m in cfg.milestones)
    elif cfg.schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        factor = min(1.0, (1.0 - progress) / cfg.decay_fraction)
    if iteration < cfg.warmup_iters:
        alpha = iteration / cfg.warmup_iters
        factor *= cfg.warmup_factor * (1 - alpha) + alpha
    return factor


class TrainingClock:
    """Seconds of training done, over all sessions of a run (a resumed run starts from the saved count).

    The clock-driven schedules read it; the loop sets it after every step in one process, and under torchrun to
    the processes' maximum every few steps (the same value on every process in between).
    """

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = float(seconds)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, clock: TrainingClock) -> LambdaLR:
    """``LambdaLR`` over :func:`lr_factor`, stepped once per iteration; the training time comes from ``clock``.

    Its state dict holds the iteration (``last_epoch``); the clock's seconds are saved beside it.
    """
    return LambdaLR(optimizer, lambda iteration: lr_factor(iteration, cfg, clock.seconds))
