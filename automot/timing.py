"""Wall-clock timing for benchmarks: warm-up, then the median of repeats (robust on a shared machine)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(
    fn: Callable[[], object], *, repeats: int = 20, warmup: int = 3, min_time_s: float = 0.0
) -> float:
    """Median milliseconds of `fn()`; repeats more than `repeats` times until `min_time_s` has passed."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < repeats or time.perf_counter() - start < min_time_s:
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)
