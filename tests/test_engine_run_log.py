"""Training logs: loss means over a window, the first non-finite step, metrics.csv rows, the history."""

import csv
import math

import pytest
import torch

from ssd.engine.run_log import LossWindow, append_metrics_csv
from ssd.engine.state import new_history


def losses(loc: float, conf: float) -> dict[str, torch.Tensor]:
    return {"loc": torch.tensor(loc), "conf": torch.tensor(conf)}


def test_loss_window_means_and_image_count():
    window = LossWindow()
    window.add(1, losses(1.0, 3.0), lr=0.1, images=8)
    window.add(2, losses(2.0, 5.0), lr=0.1, images=8)
    assert window.means() == {"loc": 1.5, "conf": 4.0, "total": 5.5}
    assert window.steps == 2 and window.first_non_finite() is None
    assert window.images == 16 and window.images_per_second() > 0


def test_loss_window_names_the_first_step_whose_loss_is_not_finite():
    window = LossWindow()
    window.add(11, losses(1.0, 2.0), lr=0.25, images=4)
    window.add(12, losses(0.5, math.inf), lr=0.5, images=4)
    window.add(13, losses(math.nan, math.nan), lr=0.75, images=4)
    assert window.first_non_finite() == (12, {"loc": 0.5, "conf": math.inf, "total": math.inf}, 0.5)


def test_adding_a_step_reads_nothing_from_the_device(monkeypatch):
    """The window keeps the loss tensors as they are: a read on CUDA would wait for the step to finish."""
    window = LossWindow()
    with monkeypatch.context() as patched:
        for name in ("__float__", "__bool__", "item", "tolist"):
            patched.setattr(torch.Tensor, name, lambda *args: pytest.fail("a loss was read"))
        window.add(1, losses(1.0, 2.0), lr=0.1, images=1)
        window.add(2, losses(3.0, 4.0), lr=0.1, images=1)
    assert window.values() == [{"loc": 1.0, "conf": 2.0, "total": 3.0}, {"loc": 3.0, "conf": 4.0, "total": 7.0}]


def test_metrics_csv_has_a_header_once_and_the_last_losses(tmp_path):
    history = new_history()
    history["loc"] += [[10, 2.0], [20, 1.5]]
    history["conf"] += [[10, 4.0], [20, 3.0]]
    history["total"] += [[10, 6.0], [20, 4.5]]
    path = tmp_path / "metrics.csv"
    append_metrics_csv(path, 20, 0.5, 0.25, history, 0.001)
    append_metrics_csv(path, 40, 1.0, 0.375, history, 0.0005)
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["iteration", "epoch", "loss", "loss_loc", "loss_conf", "lr", "map"]
    assert len(rows) == 3 and rows[1][:5] == ["20", "0.500", "4.50000", "1.50000", "3.00000"]
    assert float(rows[2][5]) == pytest.approx(0.0005) and float(rows[2][6]) == pytest.approx(0.375)
