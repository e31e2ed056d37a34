"""Compiled evaluators of the built-in kernel functions on point sets.

Every built-in kernel is a function of the distance only, phi(r), selected by
an integer ``kind`` and two parameters ``p0, p1`` (see :func:`phi`). Three
entry points:

- :func:`algebraic_block` returns the (p, q) block ``phi(|x_i - y_j|)`` of a
  kind without exp or log (IMQ, LAPLACE1, LAPLACE3) in one compiled pass: the
  loops over j are vectorised by the compiler (sqrt and division have vector
  instructions), and the block is written once;
- :func:`sqdist` returns the (p, q) squared distances of two point sets for the
  other kinds; :mod:`hssalg.kernels` applies phi to them with numpy's SIMD
  ufuncs (numba has no vectorised exp or log here);
- :func:`block` returns the (p, q) block ``phi(|x_i - y_j|)`` in one scalar
  loop: the reference the two routes above are tested against.

Three helpers of the interpolative decompositions of
:mod:`hssalg._from_kernel` live here too: :func:`sparse_sign_apply` (a sparse
sketch), :func:`algebraic_sketch` (the sketch of a block of the kinds above,
evaluated on the fly) and :func:`trailing_norms` (the residuals that decide a
rank).

The squared distance is summed over the coordinates in order in all three, so
the routes agree bit for bit wherever phi is made of correctly rounded
operations (sqrt, division), and a block is exactly symmetric in X, Y. Large
outputs come from :func:`hssalg._kernels.alloc.empty` (huge pages): a block of
a build is often tens of MB, and on 4 KiB pages its first-touch page faults
cost more than the arithmetic (measured: 1000 x 10000 squared distances in
1.2 ns per entry instead of 5.3 ns).

All are pure: they allocate their result and never write into an input. The
shift on the diagonal of a kernel *matrix* depends on indices, not on points,
and is added by the caller (:mod:`hssalg.kernels`).

Under ``NUMBA_DISABLE_JIT=1`` the same loops run as plain Python (slow; meant
for small test sizes only).
"""

import math

import numpy as np
from numba import njit

# huge-page backed outputs; numba's cache does not see changes in alloc.py (edit this file to
# recompile after one)
from .alloc import empty

GAUSSIAN = 0        # exp(-r^2 p0),                p0 = 1 / (2 h^2)
EXPONENTIAL = 1     # exp(-r p0),                  p0 = 1 / l
MATERN32 = 2        # (1 + a) exp(-a),             a = sqrt(3) r / l,  p0 = sqrt(3) / l
MATERN52 = 3        # (1 + a + a^2 / 3) exp(-a),   a = sqrt(5) r / l,  p0 = sqrt(5) / l
IMQ = 4             # 1 / sqrt(r^2 + p0),          p0 = c^2
LAPLACE1 = 5        # -r
LAPLACE2 = 6        # -log r,  p1 where r = 0
LAPLACE3 = 7        # 1 / r,   p1 where r = 0


@njit(cache=True, inline="always")
def phi(kind, r2, p0, p1):
    """Kernel value at squared distance ``r2``."""
    if kind == GAUSSIAN:
        return math.exp(-r2 * p0)
    elif kind == EXPONENTIAL:
        return math.exp(-math.sqrt(r2) * p0)
    elif kind == MATERN32:
        a = math.sqrt(r2) * p0
        return (1.0 + a) * math.exp(-a)
    elif kind == MATERN52:
        a = math.sqrt(r2) * p0
        return (1.0 + a + a * a / 3.0) * math.exp(-a)
    elif kind == IMQ:
        return 1.0 / math.sqrt(r2 + p0)
    elif kind == LAPLACE1:
        return -math.sqrt(r2)
    elif kind == LAPLACE2:
        if r2 == 0.0:
            return p1
        return -0.5 * math.log(r2)
    else:
        if r2 == 0.0:
            return p1
        return 1.0 / math.sqrt(r2)


@njit(cache=True, inline="always")
def _sqdist(X, i, Y, j):
    s = 0.0
    for k in range(X.shape[1]):
        t = X[i, k] - Y[j, k]
        s += t * t
    return s


@njit(cache=True)
def block(kind, p0, p1, X, Y):
    """The (p, q) block ``phi(|X_i - Y_j|)``.

    Parameters
    ----------
    kind : int
        One of the constants of this module.
    p0, p1 : float
        Parameters of the kernel (see the constants).
    X : (p, d) float64 array
    Y : (q, d) float64 array

    Returns
    -------
    K : (p, q) float64 array
    """
    p = X.shape[0]
    q = Y.shape[0]
    K = np.empty((p, q))
    for i in range(p):
        for j in range(q):
            K[i, j] = phi(kind, _sqdist(X, i, Y, j), p0, p1)
    return K


@njit(cache=True, inline="always")
def _sqdist_row(X, i, Yt, row):
    """Squared distances of X[i] to every point of Yt (d, q) into ``row`` (q,), a buffer of the caller's.

    One unit-stride loop over j per dimension d = 1, 2, 3, which the compiler
    vectorises; the coordinates are summed in order (0 + t0^2 + t1^2 + ...,
    the first addition exact), as in ``_sqdist``.
    """
    d, q = Yt.shape
    if d == 3:
        x0, x1, x2 = X[i, 0], X[i, 1], X[i, 2]
        y0, y1, y2 = Yt[0], Yt[1], Yt[2]
        for j in range(q):
            t0 = x0 - y0[j]
            t1 = x1 - y1[j]
            t2 = x2 - y2[j]
            row[j] = t0 * t0 + t1 * t1 + t2 * t2
    elif d == 2:
        x0, x1 = X[i, 0], X[i, 1]
        y0, y1 = Yt[0], Yt[1]
        for j in range(q):
            t0 = x0 - y0[j]
            t1 = x1 - y1[j]
            row[j] = t0 * t0 + t1 * t1
    elif d == 1:
        x0 = X[i, 0]
        y0 = Yt[0]
        for j in range(q):
            t0 = x0 - y0[j]
            row[j] = t0 * t0
    else:
        row[:] = 0.0
        for k in range(d):
            xk = X[i, k]
            yk = Yt[k]
            for j in range(q):
                t = xk - yk[j]
                row[j] += t * t


@njit(cache=True)
def sqdist(X, Y):
    """The (p, q) squared distances ``|X_i - Y_j|^2``.

    The sum runs over the coordinates in order, as in :func:`block`, so the
    values are bit for bit those of ``_sqdist`` (and symmetric in X, Y); the
    inner loop runs over j with unit stride, which the compiler vectorises.

    Parameters
    ----------
    X : (p, d) float64 array
    Y : (q, d) float64 array

    Returns
    -------
    R2 : (p, q) float64 array
    """
    p = X.shape[0]
    q = Y.shape[0]
    Yt = np.ascontiguousarray(Y.T)
    R2 = empty(p * q, X.dtype).reshape(p, q)
    for i in range(p):
        _sqdist_row(X, i, Yt, R2[i])
    return R2


# error_model="numpy": no check for a float division by zero, whose exception branch kept the
# loops from vectorising (4.9 -> 2.1 ns per entry measured); the r = 0 entries are selects
@njit(cache=True, error_model="numpy")
def algebraic_block(kind, p0, p1, X, Y):
    """The (p, q) block ``phi(|X_i - Y_j|)`` of a kind without exp or log, in one pass.

    For ``kind`` IMQ, LAPLACE1 or LAPLACE3 (any other kind raises); the values
    are bit for bit those of :func:`block` (sqrt and division are correctly
    rounded), computed a row at a time while the row is in cache.

    Parameters
    ----------
    kind : int
        IMQ, LAPLACE1 or LAPLACE3.
    p0, p1 : float
        Parameters of the kernel (see the constants).
    X : (p, d) float64 array
    Y : (q, d) float64 array

    Returns
    -------
    K : (p, q) float64 array
    """
    if kind != IMQ and kind != LAPLACE1 and kind != LAPLACE3:
        raise ValueError("algebraic_block: kind must be IMQ, LAPLACE1 or LAPLACE3")
    p = X.shape[0]
    q = Y.shape[0]
    Yt = np.ascontiguousarray(Y.T)
    K = empty(p * q, X.dtype).reshape(p, q)
    for i in range(p):
        row = K[i]
        _sqdist_row(X, i, Yt, row)
        _algebraic_phi_row(kind, p0, p1, row)
    return K


@njit(cache=True, inline="always")
def _algebraic_phi_row(kind, p0, p1, row):
    """phi of the squared distances in ``row`` (q,), in place (a buffer of the caller's)."""
    q = row.shape[0]
    if kind == IMQ:
        for j in range(q):
            row[j] = 1.0 / math.sqrt(row[j] + p0)
    elif kind == LAPLACE1:
        for j in range(q):
            row[j] = -math.sqrt(row[j])
    else:
        for j in range(q):
            r2 = row[j]
            # r = 0 divides 1 instead: no inf, and plain Python (NUMBA_DISABLE_JIT) does not raise
            v = 1.0 / math.sqrt(r2 if r2 != 0.0 else 1.0)
            row[j] = v if r2 != 0.0 else p1


@njit(cache=True, error_model="numpy")
def algebraic_sketch(kind, p0, p1, Xs, w, Xc, cols, signs, ell):
    """``S^T diag(w) phi(|Xs_i - Xc_j|)``: a sparse sign sketch of a weighted kernel block, never formed.

    The block is evaluated a row at a time (as in :func:`algebraic_block`,
    bit for bit) and each row is added into the rows of the sketch its sign
    pattern names, while it is in cache: the (N, c) block of a sample is
    neither written nor read back (3-D Laplace at n = 16384: N up to 12000
    rows of c = 1400 candidates, 130 MB per node).

    Parameters
    ----------
    kind : int
        IMQ, LAPLACE1 or LAPLACE3.
    p0, p1 : float
        Parameters of the kernel.
    Xs : (N, d) float64 array
        Points of the rows of the block (the sampled points).
    w : (N,) float64 array
        Weight of each row.
    Xc : (c, d) float64 array
        Points of the columns (the candidates).
    cols : (N, zeta) int64 array of sketch rows in ``0..ell-1``
    signs : (N, zeta) float64 array
        As in :func:`sparse_sign_apply`: ``S[i, cols[i, t]] = signs[i, t]``.
    ell : int

    Returns
    -------
    Z : (ell, c) float64 array
    """
    if kind != IMQ and kind != LAPLACE1 and kind != LAPLACE3:
        raise ValueError("algebraic_sketch: kind must be IMQ, LAPLACE1 or LAPLACE3")
    N = Xs.shape[0]
    c = Xc.shape[0]
    zeta = cols.shape[1]
    Xct = np.ascontiguousarray(Xc.T)
    Z = np.zeros((ell, c))
    row = np.empty(c)
    for i in range(N):
        _sqdist_row(Xs, i, Xct, row)
        _algebraic_phi_row(kind, p0, p1, row)
        for t in range(zeta):
            z = Z[cols[i, t]]
            s = signs[i, t] * w[i]
            for j in range(c):
                z[j] += s * row[j]
    return Z


@njit(cache=True)
def sparse_sign_apply(At, cols, signs, ell):
    """``S^T @ At`` for the sparse sign matrix S (N, ell) with ``S[j, cols[j, t]] = signs[j, t]``.

    Parameters
    ----------
    At : (N, c) float64 array
    cols : (N, zeta) int64 array of row indices of the result, in ``0..ell-1``
    signs : (N, zeta) float64 array
    ell : int

    Returns
    -------
    Z : (ell, c) float64 array
    """
    N, c = At.shape
    zeta = cols.shape[1]
    Z = np.zeros((ell, c))
    for j in range(N):
        for t in range(zeta):
            r = cols[j, t]
            s = signs[j, t]
            for i in range(c):
                Z[r, i] += s * At[j, i]
    return Z


@njit(cache=True)
def trailing_norms(R):
    """Largest residual column norm of an upper trapezoidal R after each number of leading columns.

    With ``A[:, order] = Q R`` (R upper trapezoidal, columns in some pivot
    order), the residual of column j after projecting A on its first k
    columns has norm ``||R[k:, j]||``; this returns, for every k, the largest
    of them over the columns not yet taken (j >= k). For the R of a
    column-pivoted QR these are the |R[k, k]|; for any other order they are
    the error of keeping the first k columns, which is what a rank decision
    needs. Squares of the entries are summed from the bottom, so nothing
    cancels (a residual of 1e-12 of the column norms is as accurate as the
    entries).

    Parameters
    ----------
    R : (m, c) float64 array, upper trapezoidal (entries below the diagonal ignored)

    Returns
    -------
    res : (min(m, c),) float64 array, non-increasing
    """
    m, c = R.shape
    kmax = min(m, c)
    tail = np.zeros(c)              # tail[j] = sum_{i >= k} R[i, j]^2 for the current k
    res = np.empty(kmax)
    for k in range(kmax - 1, -1, -1):
        best = 0.0
        for j in range(k, c):
            t = tail[j] + R[k, j] * R[k, j]
            tail[j] = t
            best = max(best, t)
        res[k] = math.sqrt(best)
    return res
