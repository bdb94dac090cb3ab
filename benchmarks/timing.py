"""Timing helpers for the benchmark scripts: variants run round-robin on the same inputs, medians and ratios."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

Variant = Callable[[], object]


def seconds_of(fn: Variant) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    variants: dict[str, Variant], rounds: int, warmup: int = 1, pause: float = 0.1
) -> dict[str, list[float]]:
    """Seconds per call of every variant, measured round-robin ``rounds`` times after ``warmup`` rounds.

    Each call starts after ``pause`` seconds (not timed), so that it does not share the cores with the threads
    of the variant before it: ONNX Runtime's workers keep spinning for a while after a run.
    """
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(warmup + rounds):
        for name, fn in variants.items():
            time.sleep(pause)
            t = seconds_of(fn)
            if r >= warmup:
                times[name].append(t)
    return times


def rows(times: dict[str, list[float]], images_per_call: int, reference: str) -> list[tuple[str, float, float, float]]:
    """``(name, ms per image, images per second, median / the reference's median)`` for every variant."""
    ref = statistics.median(times[reference])
    table = []
    for name, values in times.items():
        med = statistics.median(values)
        table.append((name, med * 1000 / images_per_call, images_per_call / med, med / ref))
    return table
