"""BLAS on one thread while a numba kernel runs.

The kernels call BLAS (scipy's, through ``scipy.linalg.cython_blas``) for every
node's product, often from several numba threads at once. A multithreaded BLAS
splits any product above a size threshold over its own threads (scipy's
OpenBLAS 0.3.30 here: about 10^6 multiply-adds, a 64 x 64 leaf block times 255
vectors but not 224), so a sweep over a batch of a few hundred vectors (batch
times channels, in a NeuralHSS) made thousands of such calls, each waking and
synchronising a second pool of threads on cores the numba threads were using. Measured (2 cores, n = 4096, a NeuralHSS training step on a batch of
16 x 16 channels): 548 ms with scipy's OpenBLAS on two threads, 218 ms on one.
While a kernel runs, every BLAS library of the process is therefore held at one
thread, and given back its own setting when the last kernel call returns.

The setting is process-wide: BLAS calls that other Python threads make during
a kernel call run on one thread too. A lock and a count keep the save and the
restore right when several threads call kernels at once. OpenBLAS (0.3.30 here)
ignores a thread count set from a thread other than the main one, so a kernel
called from another Python thread, with no kernel call running on the main one,
finds BLAS as the process set it.
"""

import threading

from threadpoolctl import ThreadpoolController

__all__ = ["one_blas_thread"]

_lock = threading.Lock()
_depth = 0
_saved = []       # (library controller, its thread count) while _depth > 0
_libs = None      # threadpoolctl's controllers of the BLAS libraries, found once


def _blas_libraries():
    global _libs
    if _libs is None:
        # libraries are found once, when the first kernel runs: numpy's and scipy's
        # BLAS are loaded by then (hssalg imports both), so a scan per call is not needed
        _libs = [lc for lc in ThreadpoolController().lib_controllers if lc.user_api == "blas"]
    return _libs


class one_blas_thread:
    """Context manager: every BLAS library on one thread inside, as before outside.

    Re-entrant and safe to enter from several threads at once; costs a few
    microseconds (one ``get/set_num_threads`` call per library and way).
    """

    def __enter__(self):
        global _depth
        with _lock:
            if _depth == 0:
                for lc in _blas_libraries():
                    n = lc.get_num_threads()
                    if n is not None and n != 1:
                        lc.set_num_threads(1)
                        _saved.append((lc, n))
            _depth += 1
        return self

    def __exit__(self, *exc):
        global _depth
        with _lock:
            _depth -= 1
            if _depth == 0:
                for lc, n in _saved:
                    lc.set_num_threads(n)
                _saved.clear()
        return False
