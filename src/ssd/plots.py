"""PNG plots: precision-recall curves, the confusion matrix, and the loss and mAP curves of a run.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no screen, no global state),
so they work on headless machines and in worker processes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor


def _save(fig: Figure, path: str | os.PathLike[str], dpi: int) -> None:
    """Write ``fig`` as a PNG of exactly figsize * dpi pixels; creates the folder."""
    FigureCanvasAgg(fig)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(os.fspath(path), dpi=dpi, format="png")


def plot_pr_curves(
    result: dict[str, Any],
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    figsize: tuple[float, float] = (10.0, 6.0),
    dpi: int = 100,
) -> None:
    """One precision-recall curve per class of a VOC ``result`` (needs its ``curves``), AP in the legend."""
    if "curves" not in result:
        raise ValueError("result has no PR curves: plot_pr_curves needs a 'voc07' or 'voc' result")
    fig = Figure(figsize=figsize)
    ax = fig.add_axes((0.08, 0.1, 0.62, 0.82))
    for label, (precision, recall) in sorted(result["curves"].items()):
        if len(precision):  # start at recall 0 with the first precision: each curve begins at the left edge
            recall, precision = np.r_[0.0, recall], np.r_[precision[0], precision]
        ax.plot(recall, precision, linewidth=1.2, label=f"{class_names[label]} (AP {result['per_class'][label]:.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
    ax.set_title(f"{result.get('metric', '')} mAP {result['map']:.4f}".strip())
    ax.grid(alpha=0.3)
    columns = 1 + len(result["curves"]) // 30
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="x-small", ncol=columns)
    _save(fig, path, dpi)


def plot_confusion_matrix(
    matrix: Tensor,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
) -> None:
    """The detection confusion matrix ``[true, predicted]`` (see ``ssd.metrics.confusion``) as a heat map.

    Colours are row-normalised (the fraction of each true class going to each prediction); cells show
    counts when there are at most 30 classes. ``figsize`` defaults to 0.4 inch per class, at least 6.
    """
    counts = matrix.detach().cpu().numpy()
    n = len(counts)
    names = ["background", *class_names[1:n]]
    side = max(6.0, 0.4 * n + 2.0)
    fig = Figure(figsize=figsize or (side, side))
    ax = fig.add_axes((0.18, 0.18, 0.78, 0.74))
    totals = counts.sum(axis=1, keepdims=True)
    fractions = counts / np.maximum(totals, 1)
    ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), names, rotation=90, fontsize="small")
    ax.set_yticks(range(n), names, fontsize="small")
    ax.set(xlabel="predicted", ylabel="true")
    ax.set_title("confusion matrix (rows normalised)")
    if n <= 30:
        for (row, col), value in np.ndenumerate(counts):
            if value:
                colour = "white" if fractions[row, col] > 0.5 else "black"
                ax.text(col, row, str(value), ha="center", va="center", fontsize="x-small", color=colour)
    _save(fig, path, dpi)


def _new_axes(xlabel: str, ylabel: str) -> tuple[Figure, Any]:
    figure = Figure(figsize=(8, 5), dpi=100, layout="constrained")  # 800 x 500 pixels
    axes = figure.add_subplot()
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    return figure, axes


def plot_loss_curves(history: dict[str, list[tuple[int, float]]], path: str | Path) -> None:
    """Plot each loss term (``name -> [(iteration, value)]``) against the iteration into an 800x500 PNG."""
    figure, axes = _new_axes("iteration", "loss")
    for name, points in history.items():
        if points:
            iterations, values = zip(*points)
            axes.plot(iterations, values, label=name, linewidth=1.2)
    if any(history.values()):
        axes.legend()
    _save(figure, path, dpi=100)


def plot_metric_curve(points: list[tuple[int, float]], path: str | Path, ylabel: str = "mAP") -> None:
    """Plot a metric ``[(iteration, value)]`` (e.g. mAP after each evaluation) into an 800x500 PNG."""
    figure, axes = _new_axes("iteration", ylabel)
    if points:
        iterations, values = zip(*points)
        axes.plot(iterations, values, marker="o", linewidth=1.5)
    _save(figure, path, dpi=100)
