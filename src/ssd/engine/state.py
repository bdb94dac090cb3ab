"""What a training run carries from step to step and saves in ``last.pt``: optimizer, schedule, loss scaler,
clock, iteration, history and RNG states, so that a resumed run continues exactly."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from ..checkpoint import save
from ..config import RunConfig
from ..errors import SSDError
from ..model.ssd import SSD
from .schedule import TrainingClock, build_optimizer, build_scheduler, load_optimizer_state, out_of_time

History = dict[str, list[list[float]]]  # name -> [[iteration, value], ...]


def new_history() -> History:
    return {"loc": [], "conf": [], "total": [], "map": []}


@dataclass
class TrainState:
    """The mutable state of a run; ``model`` is the bare SSD (not its DDP wrapper)."""

    run: RunConfig
    model: SSD
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR
    scaler: torch.amp.GradScaler
    clock: TrainingClock
    iteration: int = 0
    history: History = field(default_factory=new_history)
    best_map: float | None = None

    @classmethod
    def create(cls, run: RunConfig, model: SSD, device: torch.device) -> TrainState:
        """A fresh state: the optimizer and schedule of ``run.train``; fp16 loss scaling on CUDA with AMP."""
        cfg = run.train
        clock = TrainingClock()
        optimizer = build_optimizer(model, cfg)
        scaler_on = cfg.amp and device.type == "cuda" and cfg.amp_dtype != "bf16"
        scaler = torch.amp.GradScaler(device.type, enabled=scaler_on)
        return cls(run, model, optimizer, build_scheduler(optimizer, cfg, clock), scaler, clock)

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def save(self, path: Path) -> None:
        """Write the model and everything needed to resume to ``path`` (atomically)."""
        save(
            self.model,
            path,
            run_config=self.run.to_dict(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            train_seconds=self.clock.seconds,
            scaler=self.scaler.state_dict(),
            iteration=self.iteration,
            rng=rng_state(),
            history=self.history,
            best_map=self.best_map,
        )

    def restore(self, saved: dict[str, Any], source: Path) -> None:
        """Continue from a checkpoint written by :meth:`save`; refuses a run whose time is already used up."""
        if "train_seconds" not in saved:
            raise SSDError(
                f"{source}: written by an older version of ssd-detector, whose schedule state this one cannot "
                f"continue; start a new run from it with --weights {source}"
            )
        self.model.load_state_dict(saved["model"])
        load_optimizer_state(self.optimizer, saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.clock.seconds = float(saved["train_seconds"])
        if saved["scaler"]:  # empty when the saved run had no fp16 loss scaling
            self.scaler.load_state_dict(saved["scaler"])
        self.iteration = int(saved["iteration"])
        self.history = saved["history"]
        self.best_map = saved["best_map"]
        restore_rng_state(saved["rng"])
        cfg = self.run.train
        if out_of_time(self.clock.seconds, cfg):
            raise SSDError(
                f"{source}: this run has already trained for its train.max_minutes ({cfg.max_minutes:g}); to train "
                f"on, start a new run from it with --weights {source}"
            )


def rng_state() -> dict[str, Any]:
    """The torch, Python (and CUDA) generator states, in types that ``torch.load(weights_only=True)`` reads."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
