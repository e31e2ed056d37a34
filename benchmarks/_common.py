"""Shared helpers of the benchmark scripts: threads, timing, bandwidth, tables.

Import this module *before* numpy in a benchmark script: it pins the number of
BLAS and numba threads from ``--threads`` so that the project and its
baselines run on the same number of cores.
"""

import argparse
import os
import platform
import sys
import time


def setup(description, argv=None):
    """Parse the common options and pin the thread counts; returns the args namespace.

    Must run before numpy, scipy or numba are imported.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS and numba threads for everything measured (default 1)")
    parser.add_argument("--max-log2n", type=int, default=20, help="largest n is 2**this")
    parser.add_argument("--repeat", type=int, default=7, help="timed repetitions (median)")
    args, _ = parser.parse_known_args(argv)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    if "numpy" in sys.modules:
        raise RuntimeError("benchmarks/_common.setup must run before numpy is imported")
    return args


def median_time(fn, repeat=7, warmup=1):
    """Median wall time of ``fn()`` over ``repeat`` calls after ``warmup`` calls."""
    from hssalg._timing import median_time as _median
    return _median(fn, repeat=repeat, warmup=warmup)


def cpu_median_time(fn, repeat=7, warmup=1):
    """Median CPU time of the calling thread for ``fn()`` (single-threaded runs only)."""
    from hssalg._timing import median_time as _median
    return _median(fn, repeat=repeat, warmup=warmup, clock=time.thread_time)


def first_call_time(fn):
    """Wall time of one call (used for the numba load/compile time of a first call)."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bandwidth(nbytes=2**28, repeat=5):
    """Memory bandwidth in bytes/s from ``np.add(a, b, out=c)`` on arrays far larger than cache.

    Counts two arrays read and one written per call, the traffic a streaming
    kernel sees.
    """
    import numpy as np
    a = np.ones(nbytes // 8)
    b = np.ones(nbytes // 8)
    c = np.empty_like(a)
    t = median_time(lambda: np.add(a, b, out=c), repeat=repeat)
    return 3 * a.nbytes / t


def machine_line(threads):
    """One line describing where and how the numbers were taken."""
    import numpy as np
    import scipy
    import numba
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{time.strftime('%Y-%m-%d')} | {cpu} | {os.cpu_count()} cores, {threads} thread(s) used | "
            f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
            f"numba {numba.__version__}")


def table(header, rows):
    """Print a Markdown table."""
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    sys.stdout.flush()
