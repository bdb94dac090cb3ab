import pytest

from ssd.engine.bench import _rows, interleaved


def test_interleaved_runs_variants_round_robin_after_warmup():
    calls = []
    variants = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    times = interleaved(variants, rounds=3, warmup=1)
    assert calls == ["a", "b"] * 4  # warm-up round, then 3 measured rounds, alternating
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}


def test_rows_give_per_image_times_and_ratios_to_the_reference():
    times = {"torchvision fp32": [0.4, 0.8, 0.6], "ours": [0.3, 0.2, 0.5]}
    rows = dict((name, rest) for name, *rest in _rows(times, images_per_call=2, reference="torchvision fp32"))
    ms, images_per_s, ratio = rows["ours"]
    assert ms == pytest.approx(150.0)  # median 0.3 s for 2 images
    assert images_per_s == pytest.approx(2 / 0.3)
    assert ratio == pytest.approx(0.3 / 0.6)
    assert rows["torchvision fp32"][2] == pytest.approx(1.0)
