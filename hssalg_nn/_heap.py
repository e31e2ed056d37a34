"""Keep freed memory in the process, so that a training step reuses the last step's pages.

A step of gradient training allocates the same large arrays every time: at
n = 2^16, batch 32, rank 16, leaf 64 the forward and backward kernels of an
``HSSLinear`` allocate about 110 MB per call between them (the gradient of the
diagonal blocks alone is 32 MiB), and autograd adds temporaries of the batch's
size. glibc's ``malloc`` serves blocks above its mmap threshold (dynamic,
at most 32 MiB) with a fresh ``mmap`` and unmaps them on ``free``, and it hands
free memory at the top of its heap back to the kernel. Each new block then
faults in every page, and the kernel clears each page before handing it over:
about 1,900 page faults per forward+backward at 2^16, and 10% of the forward's
time in the kernel's page clearing (``perf``).

:func:`keep_freed_memory` raises both limits with ``mallopt``: blocks up to
256 MiB come from the heap, and up to 512 MiB of free memory stay mapped. The
price is resident memory: what a step freed stays with the process, up to that
much more than it holds (plus fragmentation), until it exits. It is a setting
of the whole process, so the library makes it only when asked:
:func:`hssalg_nn.fit` makes it at the start of a run unless the environment
variable ``HSSALG_KEEP_FREED_MEMORY`` is ``0``, and a hand-written training
loop can call :func:`keep_freed_memory` itself. Off glibc (macOS, musl,
Windows), where ``mallopt`` is missing or a no-op, nothing changes.

The figures are in docs/benchmarks.md (``bench_nn.py --malloc keep`` against
``--malloc default``).
"""

import ctypes
import os
import sys

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 256 << 20
TRIM_THRESHOLD = 512 << 20
ENV = "HSSALG_KEEP_FREED_MEMORY"


def keep_freed_memory():
    """Ask glibc's malloc to keep large freed blocks for reuse instead of unmapping them.

    Blocks up to 256 MiB are then served from the heap and up to 512 MiB of
    freed memory stay mapped, so the next training step reuses the pages of the
    last one instead of faulting in fresh, zeroed pages. This is a setting of
    the whole process and cannot be undone; resident memory no longer shrinks
    after large arrays are freed. See :mod:`hssalg_nn._heap`.

    Returns
    -------
    bool
        True if glibc accepted both settings, False where they do not apply
        (not Linux with glibc) or were refused.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # glibc returns 1 on success; musl's stub returns 0
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok


def keep_unless_disabled():
    """What :func:`hssalg_nn.fit` does first: :func:`keep_freed_memory` unless
    ``HSSALG_KEEP_FREED_MEMORY=0``. Returns whether the setting was made."""
    value = os.environ.get(ENV, "").strip() or "1"
    if value not in ("0", "1"):
        raise ValueError(f"environment variable {ENV} must be 0 or 1, got {value!r}")
    return keep_freed_memory() if value == "1" else False
