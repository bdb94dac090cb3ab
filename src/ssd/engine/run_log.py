"""What a training run writes for people: the progress bar, TensorBoard scalars, ``metrics.csv`` and the plots."""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ..files import atomic_write_text
from ..plots import plot_loss_curves, plot_metric_curve
from .state import History

LOG_INTERVAL = 10  # iterations per logged loss mean
REPLACED_SAMPLES_FILE = "replaced_samples.json"


class LossWindow:
    """The losses of the steps since the last log line, kept on their device until read, so that a training step
    never waits for the device; the images seen, for images per second."""

    def __init__(self) -> None:
        self.iterations: list[int] = []
        self.lrs: list[float] = []
        self.images = 0
        self.start = time.perf_counter()
        self._losses: list[torch.Tensor] = []  # per step: Tensor[2] (loc, conf), detached, on the device
        self._read: list[dict[str, float]] | None = None

    @property
    def steps(self) -> int:
        return len(self._losses)

    def add(self, iteration: int, losses: dict[str, torch.Tensor], lr: float, images: int) -> None:
        """Keep the ``loc`` and ``conf`` losses of step ``iteration`` (trained at ``lr``) without reading them."""
        self._losses.append(torch.stack([losses["loc"].detach(), losses["conf"].detach()]))
        self.iterations.append(iteration)
        self.lrs.append(lr)
        self.images += images
        self._read = None

    def values(self) -> list[dict[str, float]]:
        """Each step's ``loc``, ``conf`` and ``total`` as floats; reads the device once (a host-device sync)."""
        if self._read is None:
            rows = torch.stack(self._losses).tolist() if self._losses else []
            self._read = [{"loc": loc, "conf": conf, "total": loc + conf} for loc, conf in rows]
        return self._read

    def means(self) -> dict[str, float]:
        steps = self.values()
        return {name: sum(step[name] for step in steps) / len(steps) for name in ("loc", "conf", "total")}

    def first_non_finite(self) -> tuple[int, dict[str, float], float] | None:
        """The iteration, losses and learning rate of the window's first step whose loss is not finite, if any."""
        for iteration, lr, step in zip(self.iterations, self.lrs, self.values()):
            if not math.isfinite(step["total"]):
                return iteration, step, lr
        return None

    def images_per_second(self) -> float:
        return self.images / max(time.perf_counter() - self.start, 1e-9)


class RunLog:
    """The run folder's logs, written by the main process only (``enabled`` False on the others)."""

    def __init__(self, run_dir: Path, enabled: bool, bar: tqdm) -> None:
        self.run_dir = run_dir
        self.enabled = enabled
        self.bar = bar
        self.writer = SummaryWriter(str(run_dir / "tensorboard")) if enabled else None

    def losses(self, iteration: int, window: LossWindow, lr: float, history: History) -> None:
        """Record the window's mean losses at ``iteration`` in the history, TensorBoard and the progress bar."""
        means = window.means()
        for name, value in means.items():
            history[name].append([iteration, value])
            self._scalar(f"train/{name}", value, iteration)
        self._scalar("train/lr", lr, iteration)
        self.bar.set_postfix(
            loss=f"{means['total']:.3f}",
            loc=f"{means['loc']:.3f}",
            conf=f"{means['conf']:.3f}",
            lr=f"{lr:.2g}",
            img_s=f"{window.images_per_second():.1f}",
        )

    def evaluation(
        self, iteration: int, epoch: float, metric: str, mean_ap: float, lr: float, history: History
    ) -> None:
        """Record a validation mAP in the history, TensorBoard and ``metrics.csv`` (with the last loss means)."""
        history["map"].append([iteration, mean_ap])
        self._scalar(f"val/{metric}_map", mean_ap, iteration)
        if self.enabled:
            append_metrics_csv(self.run_dir / "metrics.csv", iteration, epoch, mean_ap, history, lr)

    def close(self, history: History) -> None:
        """Draw the loss and mAP curves and close TensorBoard."""
        if not self.enabled:
            return
        write_plots(self.run_dir, history)
        self.writer.close()

    def _scalar(self, tag: str, value: float, iteration: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, iteration)


def append_metrics_csv(path: Path, iteration: int, epoch: float, mean_ap: float, history: History, lr: float) -> None:
    """One row per evaluation: iteration, epoch, the last logged losses, the learning rate and the mAP."""
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


def record_replaced_samples(path: Path, unreadable: list[str], replacements: int) -> None:
    """Add this session's unreadable training images and replacement count to ``path`` (kept over resumes)."""
    before = json.loads(path.read_text()) if path.exists() else {"unreadable_images": [], "replacements": 0}
    record = {
        "unreadable_images": sorted({*before["unreadable_images"], *unreadable}),
        "replacements": before["replacements"] + replacements,
    }
    atomic_write_text(path, json.dumps(record, indent=2))


def write_plots(run_dir: Path, history: History) -> None:
    """``loss.png`` and, once evaluated, ``map.png``."""
    losses = {k: [tuple(p) for p in history[k]] for k in ("loc", "conf", "total") if history[k]}
    plot_loss_curves(losses, run_dir / "loss.png")
    if history["map"]:
        plot_metric_curve([tuple(p) for p in history["map"]], run_dir / "map.png", ylabel="mAP")
