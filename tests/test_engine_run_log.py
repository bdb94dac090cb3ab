"""Training logs: loss means over a window, metrics.csv rows, the history."""

import csv

import pytest

from ssd.engine.run_log import LossWindow, append_metrics_csv
from ssd.engine.state import new_history


def test_loss_window_means_and_image_count():
    window = LossWindow()
    window.add({"loc": 1.0, "conf": 3.0, "total": 4.0}, images=8)
    window.add({"loc": 2.0, "conf": 5.0, "total": 7.0}, images=8)
    assert window.means() == {"loc": 1.5, "conf": 4.0, "total": 5.5}
    assert window.images == 16 and window.images_per_second() > 0


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
