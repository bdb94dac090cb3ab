"""What a training run writes for people: the progress bar, TensorBoard scalars, ``metrics.csv`` and the plots."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ..files import atomic_write_text
from ..plots import plot_loss_curves, plot_metric_curve
from .state import History

LOG_INTERVAL = 10  # iterations per logged loss mean
REPLACED_SAMPLES_FILE = "replaced_samples.json"


class LossWindow:
    """Loss sums and images seen since the last log line, for means and images per second."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps = 0
        self.images = 0
        self.start = time.perf_counter()

    def add(self, losses: dict[str, float], images: int) -> None:
        for name, value in losses.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.steps += 1
        self.images += images

    def means(self) -> dict[str, float]:
        return {name: value / self.steps for name, value in self.sums.items()}

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
