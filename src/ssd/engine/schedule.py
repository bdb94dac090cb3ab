"""Optimizer with the original's parameter groups, and the learning-rate schedule with linear warm-up."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (the paper) or AdamW; biases get ``bias_lr_factor`` x the learning rate and no weight decay.

    Norm parameters (batch norm, the L2Norm scale) get no weight decay either.
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
    groups = [
        {"params": decay, "lr": lr, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "lr": lr, "weight_decay": 0.0},
        {"params": biases, "lr": lr * cfg.bias_lr_factor, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=lr)


def lr_factor(iteration: int, cfg: TrainConfig) -> float:
    """Multiplier of the base learning rate at ``iteration``: warm-up, then step decay or cosine."""
    if cfg.schedule == "step":
        factor = cfg.gamma ** sum(iteration >= m for m in cfg.milestones)
    else:
        factor = 0.5 * (1.0 + math.cos(math.pi * min(iteration, cfg.iterations) / cfg.iterations))
    if iteration < cfg.warmup_iters:
        alpha = iteration / cfg.warmup_iters
        factor *= cfg.warmup_factor * (1 - alpha) + alpha
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per iteration."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, cfg))
