"""Large output buffers for numba kernels, backed by transparent huge pages.

An array that numba allocates comes straight from ``malloc``; a large one is a
fresh ``mmap`` whose every 4 KiB page faults on first touch. For the gradient of
a neural HSS layer (tens of MB per call: the D blocks alone are n * m numbers)
those faults cost as much as the arithmetic: measured at n = 2^16, a 32 MB
buffer took 18 ms to allocate and fill from numba against 5 ms from numpy.
numpy avoids this by advising the kernel to back arrays of 4 MiB and more
with huge pages (``madvise(MADV_HUGEPAGE)``); :func:`empty` does the same for
arrays of 2 MiB and more allocated inside a kernel, aligned so that the whole
array lies on huge pages, and the kernel still allocates its own outputs (it
never writes into an input). A large result is then a view into an allocation
up to 4 MiB longer.

The advice is only a hint: where transparent huge pages are disabled, or off
Linux, the buffer is an ordinary one. Under ``NUMBA_DISABLE_JIT=1``
:func:`empty` is ``numpy.empty``, which advises by itself.
"""

import ctypes
import sys

import llvmlite.binding as ll
import numpy as np
from numba import njit, types
from numba.core.extending import overload

# from one huge page on: a smaller buffer would share its page with other data
HUGE_MIN_BYTES = 1 << 21
_HUGE = 1 << 21          # the x86-64 / arm64 transparent huge page
_MADV_HUGEPAGE = 14      # Linux's value (asm-generic/mman-common.h)

_madvise = None
if sys.platform.startswith("linux"):
    try:
        _addr = ctypes.cast(ctypes.CDLL(None).madvise, ctypes.c_void_p).value
    except (OSError, AttributeError):   # a libc without madvise: plain buffers
        _addr = None
    if _addr:
        # bound by name, like the BLAS routines, so that kernels using it stay cacheable
        ll.add_symbol("hssalg_madvise", _addr)
        _madvise = types.ExternalFunction("hssalg_madvise", types.intc(types.intp, types.intp, types.intc))


def empty(n, dtype):
    """An uninitialised 1-D array of n elements, huge-page backed when large.

    Parameters
    ----------
    n : int
    dtype : numpy dtype (inside a kernel: ``X.dtype`` of some array X)

    Returns
    -------
    (n,) array
    """
    return np.empty(n, dtype)


@overload(empty)
def _ol_empty(n, dtype):
    if _madvise is None:
        def plain(n, dtype):
            return np.empty(n, dtype)
        return plain

    advise = _madvise

    def impl(n, dtype):
        probe = np.empty(0, dtype)
        nbytes = n * probe.itemsize
        if nbytes < HUGE_MIN_BYTES:
            return np.empty(n, dtype)
        # Only whole, aligned 2 MiB stretches become huge pages; malloc aligns to 16 bytes,
        # which left up to 2 x 2 MiB per buffer on 4 KiB pages (measured: ~600 faults for
        # each 8 MB buffer). Over-allocate by two huge pages and hand out an aligned view
        # whose advised range, rounded up to whole huge pages, lies inside the allocation.
        slack = 2 * _HUGE // probe.itemsize
        base = np.empty(n + slack, dtype)
        p = base.ctypes.data
        lo = (p + _HUGE - 1) // _HUGE * _HUGE
        first = (lo - p) // probe.itemsize
        a = base[first:first + n]
        advise(lo, (nbytes + _HUGE - 1) // _HUGE * _HUGE, _MADV_HUGEPAGE)
        return a
    return impl


@njit(cache=True)
def zeros(n, dtype):
    """Like :func:`empty`, filled with zeros."""
    a = empty(n, dtype)
    a[:] = 0
    return a
