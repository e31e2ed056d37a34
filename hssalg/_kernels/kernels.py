"""Compiled evaluators of the built-in kernel functions on point sets.

Every built-in kernel is a function of the distance only, phi(r), selected by
an integer ``kind`` and two parameters ``p0, p1`` (see :func:`phi`). Two entry
points:

- :func:`sqdist` returns the (p, q) squared distances of two point sets, in a
  loop the compiler vectorises; :mod:`hssalg.kernels` applies phi to them with
  numpy's SIMD ufuncs (numba has no vectorised exp or log here);
- :func:`block` returns the (p, q) block ``phi(|x_i - y_j|)`` in one scalar
  loop: the reference the vectorised route is tested against.

Both are pure: they allocate their result and never write into an input. The
shift on the diagonal of a kernel *matrix* depends on indices, not on points,
and is added by the caller (:mod:`hssalg.kernels`).

Under ``NUMBA_DISABLE_JIT=1`` the same loops run as plain Python (slow; meant
for small test sizes only).
"""

import math

import numpy as np
from numba import njit

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
    p, d = X.shape
    q = Y.shape[0]
    Yt = np.ascontiguousarray(Y.T)
    R2 = np.zeros((p, q))
    for i in range(p):
        row = R2[i]
        for k in range(d):
            xk = X[i, k]
            yk = Yt[k]
            for j in range(q):
                t = xk - yk[j]
                row[j] += t * t
    return R2


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
