"""QL of a basis and LQ of rows of a row-major block, callable from numba (LAPACK).

``ql_columns(Ut, A, Qv, tQ, two_sided, ws, qws)`` computes the QL factorisation
Q^T Ut = [0; L] of a tall basis (dgeqlf) and applies Q^T to the rows of A (and
Q to its columns when ``two_sided``) with dormql. ``lq_rows(A, r, Vt, tau, ws)`` factors the first r rows of a square row-major A
as [L 0] P (P orthogonal, r Householder reflectors, LAPACK storage), applies P
from the right to the other rows of A and P from the left to Vt. It is the hot
spot of the ULV factorisation (about 4/3 m^3 flops per leaf of m rows), where
LAPACK's blocked code beats compiled loops.

A row-major (rows x cols) array is the column-major (cols x rows) array of its
transpose, so the LQ of rows of A is LAPACK's QR of the columns of A^T: dgeqrf
leaves L^T in its upper triangle (L in A's lower triangle) and reflector i in
A[i, i+1:] with an implicit 1 at A[i, i] -- the layout :func:`apply_p` of
:mod:`hssalg._kernels.ulv` reads. The routines are bound as named external
symbols from ``scipy.linalg.cython_lapack``, like :mod:`.blas`, so the kernels
that call them can be cached.

Under ``NUMBA_DISABLE_JIT=1`` the same functions run as plain loops.
"""

import llvmlite.binding as ll
import numpy as np
from numba import types
from numba.core.extending import get_cython_function_address, overload

_I = types.intp
ll.add_symbol("hssalg_dgeqrf", get_cython_function_address("scipy.linalg.cython_lapack", "dgeqrf"))
ll.add_symbol("hssalg_dormqr", get_cython_function_address("scipy.linalg.cython_lapack", "dormqr"))
ll.add_symbol("hssalg_dgeqlf", get_cython_function_address("scipy.linalg.cython_lapack", "dgeqlf"))
ll.add_symbol("hssalg_dormql", get_cython_function_address("scipy.linalg.cython_lapack", "dormql"))
_dgeqrf = types.ExternalFunction("hssalg_dgeqrf", types.void(_I, _I, _I, _I, _I, _I, _I, _I))
_dormqr = types.ExternalFunction("hssalg_dormqr", types.void(*([_I] * 13)))
_dgeqlf = types.ExternalFunction("hssalg_dgeqlf", types.void(_I, _I, _I, _I, _I, _I, _I, _I))
_dormql = types.ExternalFunction("hssalg_dormql", types.void(*([_I] * 13)))

# LAPACK work array per row of the largest block (the block size of these routines is 32):
# the kernels pass ws = (int32[8], uint8[2], float64[m_max * WORK_PER_ROW]), allocated once
WORK_PER_ROW = 64


def _house(x0, sig):
    if sig == 0.0:
        return 0.0, x0, 0.0
    nrm = np.sqrt(x0 * x0 + sig)
    beta = -nrm if x0 >= 0.0 else nrm
    return (beta - x0) / beta, beta, 1.0 / (x0 - beta)


def lq_rows(A, r, Vt, tP, ws):
    """LQ of the first r rows of A (m x m, row-major) in place; reflectors on all of A and Vt.

    On return A[:r, :r] holds L (lower), A[i, i+1:] the tail of reflector i
    (implicit 1 at position i, factor tP[i]), A[r:] holds (A P^T)[r:] and Vt
    (m x kv) holds P Vt. Plain loops (the NUMBA_DISABLE_JIT path).
    """
    for i in range(r):
        tail = A[i, i + 1:]
        tau, beta, scale = _house(A[i, i], float(tail @ tail))
        tP[i] = tau
        if tau == 0.0:
            continue
        tail *= scale
        A[i, i] = beta
        v = np.concatenate(([1.0], tail))
        below = A[i + 1:, i:]
        below -= np.outer(tau * (below @ v), v)
        rows = Vt[i:]
        rows -= np.outer(v, tau * (v @ rows))


@overload(lq_rows)
def _ol_lq_rows(A, r, Vt, tP, ws):
    def impl(A, r, Vt, tP, ws):
        m = A.shape[0]
        if r == 0 or m == 0:
            return
        ints, chars, work = ws
        kv = Vt.shape[1]
        c = m - r
        pi = ints.ctypes.data
        pc = chars.ctypes.data
        # QR of the column-major m x r matrix A[:r]^T (leading dimension m)
        ints[0] = m
        ints[1] = r
        ints[2] = m
        ints[3] = work.shape[0]
        _dgeqrf(pi, pi + 4, A.ctypes.data, pi + 8, tP.ctypes.data, work.ctypes.data, pi + 12, pi + 16)
        if c > 0:
            # (A[r:] P^T)^T = Q^T A[r:]^T: the column-major m x c matrix A[r:]^T from the left
            chars[0] = 76   # 'L'
            chars[1] = 84   # 'T'
            ints[0] = m
            ints[1] = c
            ints[2] = r
            ints[4] = m
            ints[5] = m
            _dormqr(pc, pc + 1, pi, pi + 4, pi + 8, A.ctypes.data, pi + 16, tP.ctypes.data,
                    A[r:].ctypes.data, pi + 20, work.ctypes.data, pi + 12, pi + 24)
        if kv > 0:
            # P Vt = (Vt^T Q)^T: the column-major kv x m matrix Vt^T from the right
            chars[0] = 82   # 'R'
            chars[1] = 78   # 'N'
            ints[0] = kv
            ints[1] = m
            ints[2] = r
            ints[4] = m
            ints[5] = kv
            _dormqr(pc, pc + 1, pi, pi + 4, pi + 8, A.ctypes.data, pi + 16, tP.ctypes.data,
                    Vt.ctypes.data, pi + 20, work.ctypes.data, pi + 12, pi + 24)
    return impl


def ql_columns(Ut, A, Qv, tQ, two_sided, ws, qws):
    """QL of Ut (m x k, k < m) in place; the same reflectors applied to A.

    Reflector j zeroes rows 0..p-1 of column k-1-j onto pivot row p = m-1-j.
    ``A`` gets Q^T A (and Q^T A Q when ``two_sided``). Stores v (rows 0..p-1 of
    column j of Qv, implicit 1 at p) and tau. Plain loops (the NUMBA_DISABLE_JIT
    path); ``ws`` and ``qws`` are scratch of the compiled version.
    """
    m, k = Ut.shape
    na = A.shape[1]
    wrow = np.empty(na)
    wcol = np.empty(A.shape[0])
    for j in range(k):
        col = k - 1 - j
        p = m - 1 - j
        sig = 0.0
        for i in range(p):
            sig += Ut[i, col] * Ut[i, col]
        tau, beta, scale = _house(Ut[p, col], sig)
        tQ[j] = tau
        if tau == 0.0:
            for i in range(p):
                Qv[i, j] = 0.0
            continue
        for i in range(p):
            Qv[i, j] = Ut[i, col] * scale
        for q in range(col):
            w = Ut[p, q]
            for i in range(p):
                w += Qv[i, j] * Ut[i, q]
            w *= tau
            Ut[p, q] -= w
            for i in range(p):
                Ut[i, q] -= w * Qv[i, j]
        Ut[p, col] = beta
        for i in range(p):
            Ut[i, col] = 0.0
        # rows of A: A[0:p+1] -= tau v (v^T A[0:p+1])
        for q in range(na):
            wrow[q] = A[p, q]
        for i in range(p):
            vi = Qv[i, j]
            for q in range(na):
                wrow[q] += vi * A[i, q]
        for q in range(na):
            wrow[q] *= tau
            A[p, q] -= wrow[q]
        for i in range(p):
            vi = Qv[i, j]
            for q in range(na):
                A[i, q] -= vi * wrow[q]
        if two_sided:
            # columns of A: A[:, 0:p+1] -= (A[:, 0:p+1] v) tau v^T
            for i in range(A.shape[0]):
                w = A[i, p]
                for q in range(p):
                    w += A[i, q] * Qv[q, j]
                wcol[i] = w * tau
            for i in range(A.shape[0]):
                A[i, p] -= wcol[i]
                for q in range(p):
                    A[i, q] -= wcol[i] * Qv[q, j]


@overload(ql_columns)
def _ol_ql_columns(Ut, A, Qv, tQ, two_sided, ws, qws):
    def impl(Ut, A, Qv, tQ, two_sided, ws, qws):
        m, k = Ut.shape
        if k == 0:
            return
        ints, chars, work = ws
        # qws holds Ut^T row-major (= Ut column-major, leading dimension m), then tau
        W = qws[:k * m].reshape(k, m)
        tau = qws[k * m:k * m + k]
        for i in range(m):
            for j in range(k):
                W[j, i] = Ut[i, j]
        pi = ints.ctypes.data
        pc = chars.ctypes.data
        ints[0] = m
        ints[1] = k
        ints[2] = m
        ints[3] = work.shape[0]
        _dgeqlf(pi, pi + 4, W.ctypes.data, pi + 8, tau.ctypes.data, work.ctypes.data, pi + 12, pi + 16)
        # Q^T A = (A^T Q)^T: the column-major m x m matrix A^T from the right
        chars[0] = 82   # 'R'
        chars[1] = 78   # 'N'
        ints[0] = m
        ints[1] = m
        ints[2] = k
        ints[4] = m
        ints[5] = m
        _dormql(pc, pc + 1, pi, pi + 4, pi + 8, W.ctypes.data, pi + 16, tau.ctypes.data,
                A.ctypes.data, pi + 20, work.ctypes.data, pi + 12, pi + 24)
        if two_sided:
            # (Q^T A) Q = (Q^T (Q^T A)^T)^T: A^T column-major from the left, transposed
            chars[0] = 76   # 'L'
            chars[1] = 84   # 'T'
            _dormql(pc, pc + 1, pi, pi + 4, pi + 8, W.ctypes.data, pi + 16, tau.ctypes.data,
                    A.ctypes.data, pi + 20, work.ctypes.data, pi + 12, pi + 24)
        # reflector of column col (pivot row m - k + col) goes to slot j = k - 1 - col
        for col in range(k):
            j = k - 1 - col
            p = m - k + col
            tQ[j] = tau[col]
            for i in range(p):
                Qv[i, j] = W[col, i]
            for i in range(m - k):
                Ut[i, col] = 0.0
            for i in range(m - k, m):
                Ut[i, col] = W[col, i] if i - (m - k) >= col else 0.0
    return impl
