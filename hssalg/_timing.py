"""Wall-clock timing shared by the ``hssalg demo`` command and the benchmark scripts."""

import time

import numpy as np


def median_time(fn, repeat=7, warmup=1):
    """Median wall time in seconds of ``fn()`` over ``repeat`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))
