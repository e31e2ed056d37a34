"""Row-major GEMM with accumulation, callable from numba without allocation.

``gemm(trans_a, trans_b, alpha, A, B, beta, C, ws)`` overwrites ``C`` with
``alpha * op(A) @ op(B) + beta * C``. It is the one place where the kernels
write into an array, and ``C`` is always a buffer the calling kernel allocated.

Why not ``np.dot``: inside numba it allocates its result, and the HSS sweeps
make one product per tree node; the issue forbids per-node allocation and the
extra copy costs time at small block sizes. The BLAS routines are the ones
scipy exports through ``scipy.linalg.cython_blas``; they are bound as *named*
external symbols (not ctypes pointers) so that numba can cache the compiled
kernels on disk.

Small products (a few thousand multiply-adds) are done by loops compiled in
place, since a BLAS call costs more than the arithmetic there.

Under ``NUMBA_DISABLE_JIT=1`` the same functions run as plain numpy.
"""

import llvmlite.binding as ll
import numpy as np
from numba import types
from numba.core.extending import get_cython_function_address, overload

_I = types.intp
_SIG = types.void(_I, _I, _I, _I, _I, _I, _I, _I, _I, _I, _I, _I, _I)

ll.add_symbol("hssalg_dgemm", get_cython_function_address("scipy.linalg.cython_blas", "dgemm"))
ll.add_symbol("hssalg_sgemm", get_cython_function_address("scipy.linalg.cython_blas", "sgemm"))
_dgemm = types.ExternalFunction("hssalg_dgemm", _SIG)
_sgemm = types.ExternalFunction("hssalg_sgemm", _SIG)

# below this many multiply-adds a compiled loop beats the call overhead of BLAS
SMALL_GEMM = 2048


def workspace(dtype):
    """Scratch arrays a kernel allocates once and hands to every :func:`gemm`.

    BLAS takes its scalars by reference; these hold them.
    """
    return (np.zeros(8, np.int32), np.zeros(2, dtype), np.zeros(2, np.uint8))


def gemm(trans_a, trans_b, alpha, A, B, beta, C, ws):
    """C <- alpha op(A) op(B) + beta C for 2-D arrays with contiguous rows (pure numpy path).

    The row stride may exceed the row length: A, B and C may be column slices
    of larger row-major arrays (a node's part ``X[:, start:stop]`` of a batch);
    the compiled path hands the row strides to BLAS as leading dimensions.

    Parameters
    ----------
    trans_a, trans_b : bool
        Use the transpose of A / B.
    A : (M, K) or (K, M) array
    B : (K, N) or (N, K) array
    C : (M, N) array, written in place
    ws : tuple
        From :func:`workspace`; unused here.
    """
    opA = A.T if trans_a else A
    opB = B.T if trans_b else B
    if beta == 0.0:
        C[...] = alpha * (opA @ opB)
    else:
        C[...] = alpha * (opA @ opB) + beta * C


def _small_loop(trans_a, trans_b, alpha, A, B, beta, C):
    """Compiled-only helper of :func:`gemm` (its jit implementation is below)."""
    gemm(trans_a, trans_b, alpha, A, B, beta, C, None)


@overload(_small_loop, jit_options={"fastmath": True})
def _ol_small_loop(trans_a, trans_b, alpha, A, B, beta, C):
    def impl(trans_a, trans_b, alpha, A, B, beta, C):
        M, N = C.shape
        K = A.shape[0] if trans_a else A.shape[1]
        for i in range(M):
            for j in range(N):
                acc = 0.0
                for p in range(K):
                    a = A[p, i] if trans_a else A[i, p]
                    b = B[j, p] if trans_b else B[p, j]
                    acc += a * b
                if beta == 0.0:
                    C[i, j] = alpha * acc
                else:
                    C[i, j] = alpha * acc + beta * C[i, j]
    return impl


@overload(gemm)
def _ol_gemm(trans_a, trans_b, alpha, A, B, beta, C, ws):
    blas = _dgemm if C.dtype == types.float64 else _sgemm

    def impl(trans_a, trans_b, alpha, A, B, beta, C, ws):
        M, N = C.shape
        K = A.shape[0] if trans_a else A.shape[1]
        if M == 0 or N == 0:
            return
        if K == 0 or M * N * K <= SMALL_GEMM:
            _small_loop(trans_a, trans_b, alpha, A, B, beta, C)
            return
        ints, reals, chars = ws
        # row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T
        chars[0] = 84 if trans_b else 78   # 'T' or 'N'
        chars[1] = 84 if trans_a else 78
        ints[0] = N
        ints[1] = M
        ints[2] = K
        # leading dimensions: the row strides (larger than the row length for column slices)
        ints[3] = max(B.strides[0] // B.itemsize, B.shape[1], 1)
        ints[4] = max(A.strides[0] // A.itemsize, A.shape[1], 1)
        ints[5] = max(C.strides[0] // C.itemsize, N, 1)
        reals[0] = alpha
        reals[1] = beta
        pi = ints.ctypes.data
        pr = reals.ctypes.data
        pc = chars.ctypes.data
        step = reals.itemsize
        blas(pc, pc + 1, pi, pi + 4, pi + 8, pr, B.ctypes.data, pi + 12,
             A.ctypes.data, pi + 16, pr + step, C.ctypes.data, pi + 20)
    return impl
