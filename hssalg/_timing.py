"""Timing shared by the ``hssalg demo`` command and the benchmark scripts."""

import time

import numpy as np


def median_time(fn, repeat=7, warmup=1, clock=time.perf_counter):
    """Median time in seconds of ``fn()`` over ``repeat`` calls after ``warmup`` calls.

    ``clock`` is wall time by default; ``time.thread_time`` gives the CPU time
    of the calling thread (what a single-threaded measurement on a shared
    machine should report).
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return float(np.median(times))
