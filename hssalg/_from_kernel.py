"""HSS compression of a kernel matrix from points, in near-linear time.

The algorithm is recursive skeletonisation with proxy points (Martinsson and
Rokhlin 2005, Ho and Greengard 2012; for HSS with general kernels, the proxy
annulus of H2Pack, Xing and Chow 2020). Bottom up, every node tau picks a
*skeleton*: a subset of its candidate points (all its points at a leaf, the
union of its children's skeletons above) whose kernel rows interpolate the
rows of the whole off-diagonal block row K(tau, tau^c). The interpolative
decomposition (ID) is computed from a *sample* of the columns of that block
row, not from the block row itself:

- **near field**: every node nu of the current level (and every shallower
  leaf) whose bounding box meets the cube of half-width 2 h_tau around the centre
  of tau's box (h_tau: half the longest side of that box) contributes the
  columns of its own candidate points. Since K(nu, tau) is already interpolated
  by nu's children's skeletons, these columns span the range of K(tau, nu)
  exactly up to the tolerance;
- **far field**: every other point lies outside that cube, where the kernel
  is smooth; its columns are represented by *proxy points*, random points in
  shells of sup-radius 2 h_tau 2^j ... 2 h_tau 2^(j+1) around the box, out to
  the extent of the point set (a fixed number per shell: the far field of a
  box has low rank at every scale). Proxy columns are weighted by
  sqrt(far points / proxies) and near columns by sqrt(points / candidates)
  so that the relative truncation sees the mass they stand for.

The ID of a node is a rank-revealing pivoted QR of the (transposed) sample
(LAPACK's column-pivoted QR for small ones; for large ones pivots from an LU
of the sample, finished greedily: see :func:`_pivoted_qr`); a tall sample is
first reduced by a sparse sign sketch to twice the number of candidates, so a
node costs O(c N) for the sketch and O(c^3) for the QR, with c candidates and
N sampled columns. Above the leaves, where the ranks are known to shrink
relative to the candidates, the sketch is cut to the expected rank plus an
oversampling of 48 rows (a randomised ID; the expected rank is the largest
rank / candidates ratio of the level below, times 1.1): the pivoted QR then
costs O(k^2 c) (3-D Laplace at n = 8192: build about 15% faster, ranks 4%
lower, error 2.5e-7 instead of 1.0e-7 at rtol 1e-6). With 16 rows of
oversampling the 2-D Gaussian error doubled (3.3e-7 -> 6.5e-7); 48 keeps it
at 3.7e-7. From 256 candidates on, that sketch size is used even where it
exceeds the candidates (it is still below the 2c of the full route; 3-D
Laplace at n = 16384: on the levels 3 to 5, where the expected rank is about
c, the IDs took 3.6 instead of 4.7 s, the build 12.3 instead of 14.1 s CPU,
with a true error of 3.6e-7 instead of 3.8e-7 at rtol 1e-6). Smaller nodes
(every node of the 2-D Gaussian) keep the full route there.

For a symmetric kernel the bases are computed once (rows = columns) and the
result stores them once.

Only the entries of these samples, the leaf blocks D and the couplings
B = K(skeleton of a, skeleton of b) are evaluated: O(n k) entries for a fixed
rank k, nothing of size n^2.

Why interpolative decompositions: an ID needs only the entries of a sample
(not the block row, which would cost O(n^2) entries), and its skeletons make
the couplings plain kernel blocks, so nothing else has to be sampled.

The result keeps them (``basis="interpolative"``, the default): every
interpolation matrix P = Pi [I; T] is stored as T and a row order, and for a
symmetric kernel D as packed lower triangles and no B21 (the interpolative
storage of :attr:`HSSMatrix.storage`; STRUMPACK and H2Pack store their bases
so). Against orthonormal bases this halves the memory of a 2-D Gaussian and
takes 0.36 of it for the 3-D Laplace kernel (rtol 1e-6, n = 16384: 12.6
against 26.5 MB and 248 against 694 MB), makes the build 1.7x faster in 3-D
(no orthonormalisation) and the products 1.1-2.9x faster
(benchmarks/bench_storage.py). Products run on this storage; the other
operations read the explicit form materialised from it, whose bases are not
orthonormal; none of them needs orthonormal bases (ULV factors its leaf bases
by QR; recompression orthonormalises first).

``basis="orthonormal"`` (and ``recompress=True``, before it truncates)
orthonormalises the interpolative generators bottom-up instead (QR of each
leaf U and of each stacked [T_a R_a; T_b R_b], couplings multiplied by the
triangular factors), in O(n k^2), without changing the matrix. The stacks contain identity rows
and are well conditioned, so the large ones are factored by Cholesky QR,
checked (see :func:`_qr_tall`).

An a-posteriori error estimate is computed at the end (see :func:`from_kernel`).
"""

import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
from numba.core import config as _numba_config
from scipy.linalg import blas as _blas
from scipy.linalg import lapack as _lapack
from threadpoolctl import threadpool_limits

from . import _interp, _layout
from ._kernels import kernels as _ck
from ._progress import Progress
from ._validation import check_nonnegative, check_optional_rank, check_positive_int, check_tolerance
from .arithmetic import _left_svd
from .kernels import _ALGEBRAIC, _DistanceKernel, as_kernel, as_points
from .matrix import HSSMatrix
from .tree import ClusterTree

__all__ = ["from_kernel", "KernelInfo"]

# Truncation threshold of the ID pivots relative to the requested rtol: the pivots of a
# column-pivoted QR underestimate the residual by a modest factor, and the errors of the
# levels add up, so the pivots are cut below rtol. Measured (n = 1024 ... 131072, every
# built-in kernel, d = 1, 2, 3): true errors between 0.01 and 0.5 times rtol; with 1.0
# instead they reach 2.3 times rtol, with 0.3 about 1 times rtol at n = 65536.
_SAFETY = 0.1
# proxy points per shell (d = 1, 2, 3) and the ratio of consecutive shell radii
_PROXIES_PER_SHELL = {1: 8, 2: 64, 3: 256}
_SHELL_RATIO = 2.0
_MAX_SHELLS = 40
# near field: boxes meeting the cube of half-width _NEAR * h_tau around tau's centre
_NEAR = 2.0
# non-zeros per row of the sparse sign sketch
_ZETA = 8
# Frobenius budget of the recompression after the build, relative to rtol * ||H||_F
_TRUNCATION = 0.5
# short-sketch IDs: rows of the sketch beyond the expected rank, and the margin on the
# rank / candidates ratio of the level below that sizes the sketch (ratios shrink upwards)
_OVERSAMPLE = 48
_RATIO_MARGIN = 1.1
# pivoted QR of an ID (see _pivoted_qr): below this many rows or columns LAPACK's QRCP, above it
# LU pivots with a greedy finish; the share of the LU order kept; the block size of the QR
# (LAPACK's default 32 left it memory-bound: 17 Gflop/s; 128: 22)
_LU_MIN = 256
_LU_KEEP = 0.9
_QR_BLOCK = 128
# largest estimated RMS singular value of Q^T Q - I accepted from one pass of Cholesky QR
# (Householder's is about 1e-15); bases with fewer than _LU_MIN columns take Householder
_ORTH_TOL = 4e-15


@dataclass(frozen=True)
class KernelInfo:
    """What :func:`from_kernel` measured while building.

    Attributes
    ----------
    error_estimate : float
        Estimated relative error ``||H - K||_F / ||K||_F`` from random probes
        (see :func:`from_kernel`, Notes).
    norm_estimate : float
        The matching estimate of ``||K||_F``.
    error_rows : int
        Rows of ``K @ Omega`` computed exactly for the estimate (n when all).
    n_probes : int
        Probe vectors used.
    n_kernel_evaluations : int
        Kernel entries evaluated to build the matrix (samples, D, B).
    n_kernel_evaluations_estimate : int
        Kernel entries evaluated for the error estimate.
    time_build, time_estimate : float
        Wall-clock seconds spent building and estimating.
    cpu_time_build, cpu_time_estimate : float
        The same in CPU seconds of this process (all its threads); on a busy
        machine these, not the wall times, measure the work.
    """

    error_estimate: float
    norm_estimate: float
    error_rows: int
    n_probes: int
    n_kernel_evaluations: int
    n_kernel_evaluations_estimate: int
    time_build: float
    time_estimate: float
    cpu_time_build: float
    cpu_time_estimate: float


# -- geometry ----------------------------------------------------------------------

def _boxes(tree, P):
    """(n_nodes, d) lower and upper corners of every node's points (tree order P)."""
    n_nodes, d = tree.n_nodes, P.shape[1]
    lo = np.empty((n_nodes, d))
    hi = np.empty((n_nodes, d))
    start, stop, left, right = tree.start, tree.stop, tree.left, tree.right
    for lvl in range(tree.depth, -1, -1):
        for i in range(tree.level_ptr[lvl], tree.level_ptr[lvl + 1]):
            if left[i] < 0:
                pts = P[start[i]:stop[i]]
                lo[i] = pts.min(axis=0)
                hi[i] = pts.max(axis=0)
            else:
                lo[i] = np.minimum(lo[left[i]], lo[right[i]])
                hi[i] = np.maximum(hi[left[i]], hi[right[i]])
    return lo, hi


class _Proxies:
    """Proxy points of the far field of a box: random points in dyadic cube shells.

    Shell j holds points at sup-distance ``R0 q^j .. R0 q^(j+1)`` from the box
    centre (R0 = 2 h, q = 2); shells go out to the farthest corner of the point
    set's bounding box, and proxies are clamped into that box (points of the set
    live there), dropping any that land in the near cube.
    """

    def __init__(self, d, glo, ghi, rng):
        self.d = d
        self.glo, self.ghi = glo, ghi
        per = _PROXIES_PER_SHELL[d]
        self.shells = []
        for _ in range(_MAX_SHELLS):
            # direction: a uniform point on the surface of the unit cube; radius uniform in [1, q]
            z = rng.uniform(-1.0, 1.0, size=(per, d))
            face = rng.integers(0, d, size=per)
            z[np.arange(per), face] = np.where(rng.random(per) < 0.5, -1.0, 1.0)
            rad = rng.uniform(1.0, _SHELL_RATIO, size=per)
            self.shells.append(z * rad[:, None])
        extent = float(np.max(ghi - glo))
        self.tiny = max(extent, 1.0) * 1e-12

    def around(self, center, h):
        """Proxy points, (p, d), for a box of centre ``center`` and half-width ``h``."""
        R0 = _NEAR * max(h, self.tiny)
        far = float(np.max(np.maximum(np.abs(self.ghi - center), np.abs(center - self.glo))))
        if far <= R0:
            return np.empty((0, self.d))
        n_shells = int(np.ceil(np.log(far / R0) / np.log(_SHELL_RATIO) + 1e-9))
        n_shells = min(max(n_shells, 1), _MAX_SHELLS)
        pts = np.concatenate([center + R0 * _SHELL_RATIO**j * self.shells[j] for j in range(n_shells)])
        pts = np.clip(pts, self.glo, self.ghi)
        keep = np.max(np.abs(pts - center), axis=1) > R0
        return np.ascontiguousarray(pts[keep])


# -- interpolative decomposition -------------------------------------------------------

def _sign_pattern(N, ell, rng):
    """Non-zeros of an (N, ell) sparse sign embedding: ``S[i, cols[i, t]] = signs[i, t]``.

    Each row has zeta = min(_ZETA, ell) entries +-1/sqrt(zeta) in random
    columns (repeats add up, harmless for an embedding).
    """
    zeta = min(_ZETA, ell)
    cols = rng.integers(0, ell, size=(N, zeta))
    signs = np.where(rng.random((N, zeta)) < 0.5, -1.0, 1.0) / np.sqrt(zeta)
    return cols, signs


def _sparse_sign(blocks, ell, rng):
    """``S^T [A_1; A_2; ...]`` for an (N, ell) sparse sign embedding S (see :func:`_sign_pattern`).

    The blocks are sketched one by one, so the tall sample is never
    concatenated.
    """
    c = blocks[0].shape[1]
    Z = np.zeros((ell, c))
    for A in blocks:
        N = A.shape[0]
        if N == 0:
            continue
        cols, signs = _sign_pattern(N, ell, rng)
        if _numba_config.DISABLE_JIT:
            # the same sum with numpy: interpreted loops would take minutes here
            np.add.at(Z, cols.ravel(), (signs[:, :, None] * A[:, None, :]).reshape(-1, c))
        else:
            Z += _ck.sparse_sign_apply(np.ascontiguousarray(A), cols, signs, ell)
    return Z


class _AlgebraicSample:
    """The transposed sample ``[w_1 K(X_1, Xc); w_2 K(X_2, Xc); ...]`` of a kernel without exp or log, unevaluated.

    A sketch of it is evaluated on the fly (:func:`hssalg._kernels.kernels.algebraic_sketch`),
    with the same random signs as :func:`_sparse_sign` would draw for the
    evaluated blocks; :meth:`blocks` evaluates it where the ID wants the
    sample itself.

    Parameters
    ----------
    kind, p0, p1 : the kernel (IMQ, LAPLACE1 or LAPLACE3)
    parts : list of ((N_i, d) points, (N_i,) weights)
    Xc : (c, d) points of the candidates
    """

    def __init__(self, kind, p0, p1, parts, Xc):
        self.kind, self.p0, self.p1 = kind, p0, p1
        self.parts = [(np.ascontiguousarray(X), np.asarray(w, dtype=np.float64)) for X, w in parts]
        self.Xc = np.ascontiguousarray(Xc)
        self.shape = (sum(X.shape[0] for X, _ in self.parts), self.Xc.shape[0])

    def blocks(self):
        """The weighted blocks, evaluated: list of (N_i, c) arrays."""
        return [_ck.algebraic_block(self.kind, self.p0, self.p1, X, self.Xc) * w[:, None] for X, w in self.parts]

    def sketch(self, ell, rng):
        """``S^T A`` (ell, c), the sample never formed."""
        parts = [(X, w) for X, w in self.parts if X.shape[0]]
        if not parts:
            return np.zeros((ell, self.shape[1]))
        pattern = [_sign_pattern(X.shape[0], ell, rng) for X, _ in parts]
        X = np.concatenate([X for X, _ in parts])
        w = np.concatenate([w for _, w in parts])
        cols = np.concatenate([p[0] for p in pattern])
        signs = np.concatenate([p[1] for p in pattern])
        return _ck.algebraic_sketch(self.kind, self.p0, self.p1, X, w, self.Xc, cols, signs, ell)


def _pivoted_qr(Y, tol, atol, max_rank, expected_rank=None):
    """Rank-revealing QR ``Y[:, order] ≈ Q R`` of an m x c matrix, cut where the residual is small.

    The rank k is the fewest leading columns (in ``order``) whose span leaves
    every other column of Y with a residual norm at most
    ``max(tol * (largest column norm of Y), atol)`` (at most ``max_rank``).
    For a column-pivoted QR (QRCP) these residuals are its pivots |R[k, k]|,
    so that is the classical rule "keep the pivots above tol |R[0, 0]|".

    Small matrices (min(m, c) < _LU_MIN) take LAPACK's QRCP (geqp3): it is
    mostly matrix-vector products (measured 6.6 Gflop/s on 1867 x 2435,
    against 17 for an unpivoted QR and 43 for an LU). Larger ones take the
    pivots mostly from an LU with partial pivoting of Y^T (Dong and Martinsson
    2023: on a random sketch its pivots are about as good as QRCP's), then one
    unpivoted QR of Y in that order (BLAS-3), whose residual column norms
    (:func:`trailing_norms`) give the rank ``k_LU`` of that order exactly. LU
    picks its pivots from one coordinate at a time, so its order ends a few
    columns worse than QRCP's (3-D Laplace, c = 2435: k_LU = 1327 where QRCP
    keeps 1278); the last columns are therefore chosen again greedily: the
    first ``_LU_KEEP * k_LU`` of the LU order are kept and a QRCP of the
    trailing block of R picks the rest (there, 1278 again, at 0.56 s instead
    of 1.28 s).

    Parameters
    ----------
    Y : (m, c) ndarray
    tol, atol, max_rank : the rank rule above
    expected_rank : int, optional
        The LU order is computed for this many leading columns only (LU pivot
        i depends on the first i + 1 rows of Y alone); if the rank turns out
        larger, the greedy finish starts no later than there.

    Returns
    -------
    order : (c,) int64 array, a permutation of the columns
    R : (k, c) upper trapezoidal factor of ``Y[:, order]``, rows cut at the rank
    """
    m, c = Y.shape
    if min(m, c) < _LU_MIN:
        if m > c:
            # the triangle of an unpivoted QR has the same column norms and pivots (BLAS-3)
            Y = sla.qr(Y, mode="r", check_finite=False)[0][:c]
        R, order = sla.qr(Y, mode="r", pivoting=True, check_finite=False)
        res = np.abs(np.diag(R))
    else:
        # LU pivot i depends on the first i + 1 rows of Y only: no more are factored than the
        # columns the LU order will keep (3-D Laplace n = 16384: getrf 1.4 -> 0.6 s in all)
        n_piv = min(m, c) if expected_rank is None else min(m, c, max(int(expected_rank), 1))
        order = _lu_order(Y[:n_piv])
        Z = Y.T[order].T                  # Y[:, order], Fortran-ordered in one gather
        # R keeps LAPACK's reflectors below its diagonal: every use below reads the upper part only
        R = _lapack.dgeqrt(min(_QR_BLOCK, m, c), Z, overwrite_a=True)[0][:min(m, c)]
        res = _ck.trailing_norms(R)
        if res.size and res[0] > 0.0:
            k_lu = _rank(res, tol, atol, max_rank)
            k0 = min(int(_LU_KEEP * k_lu), n_piv)
            R22, piv = sla.qr(np.triu(R[k0:, k0:]), mode="r", pivoting=True, check_finite=False)
            order[k0:] = order[k0:][piv]
            R[:k0, k0:] = R[:k0, k0:][:, piv]
            R[k0:, k0:] = R22
            res[k0:] = np.abs(np.diag(R22))
    if res.size == 0 or res[0] == 0.0:
        return order, R[:0]
    k = _rank(res, tol, atol, max_rank)
    return np.asarray(order, dtype=np.int64), R[:k]


def _rank(res, tol, atol, max_rank):
    """Fewest leading columns whose residuals ``res`` (non-increasing) fall to max(tol res[0], atol)."""
    small = res <= max(tol * res[0], atol)
    k = int(np.argmax(small)) if small.any() else res.size
    return k if max_rank is None else min(k, max_rank)


def _lu_order(Y):
    """Column order of Y (m, c) from the row pivots of an LU with partial pivoting of Y^T.

    Only the first min(m, c) positions are pivots; the rest is in the order
    the row swaps left it.
    """
    piv = _lapack.dgetrf(Y.T)[1]          # 0-based row swaps: row i was swapped with row piv[i]
    order = np.arange(Y.shape[1])
    for i, p in enumerate(piv):
        if p != i:
            order[i], order[p] = order[p], order[i]
    return order


def _column_id(blocks, tol, atol, max_rank, rng, guess=None):
    """Column interpolative decomposition of a tall sample ``A = [A_1; A_2; ...]`` (N x c).

    Finds columns ``skel`` and P (c x k) with ``A ≈ A[:, skel] @ P^T``: the
    skeleton rows of the kernel block whose transposed samples are A. The
    rank is that of :func:`_pivoted_qr` on the (sketched) sample: the fewest
    columns that leave every column of it with a residual at most
    ``max(tol * (largest column norm), atol)`` (the pivots of a
    column-pivoted QR above that bound), at most ``max_rank``.

    Two routes:

    - *short sketch* (``guess`` < c): A is sketched by a sparse sign embedding
      to ``ell = guess`` rows and the pivoted QR is taken of that ell x c
      matrix (a randomised ID, Martinsson and Tropp 2020, sec. 13; the sketch's
      rows span A's dominant row space, so its column pivots and
      interpolation coefficients are those of A up to the neglected tail).
      Costs O(N c) for the sketch and O(ell^2 c) for the QR. A rank found
      within ``_OVERSAMPLE`` of ell is not trusted (the sketch may have cut
      it); ell is then doubled, up to 2c rows. A sketch that would not be
      shorter than A is not taken: A itself is.
      (With at least ``_LU_MIN`` candidates the same holds for c <= guess <
      2c: the sketch is cut to ``guess`` rows and doubled up to 2c.)
    - *full* (no guess, or guess >= c for fewer than ``_LU_MIN``
      candidates): pivoted QR of A itself. When A is much taller than wide
      (N > 3c), it is first sketched to 2c rows (cost O(N c), Tropp et al.
      2017), which preserves its column geometry up to a small distortion, so
      the QRs cost O(c^3) instead of O(N c^2).

    Parameters
    ----------
    blocks : list of (N_i, c) ndarrays, or an :class:`_AlgebraicSample`
        (sketched without being formed)
    guess : int, optional
        Sketch size to try first: the expected rank plus oversampling.

    Returns
    -------
    skel : (k,) int64 array of column indices
    P : (c, k) ndarray, the identity on the rows ``skel``
    """
    lazy = isinstance(blocks, _AlgebraicSample)
    N, c = blocks.shape if lazy else (sum(A.shape[0] for A in blocks), blocks[0].shape[1])
    if c == 0 or N == 0:
        return np.zeros(0, np.int64), np.zeros((c, 0))
    if guess is None or (guess >= c and c < _LU_MIN):
        guess = expected = None
        ell = 2 * c
    else:
        ell = min(int(guess), 2 * c)
        expected = int(guess) - _OVERSAMPLE
    while True:
        if ell >= N or (guess is None and N <= 3 * c):
            dense = blocks.blocks() if lazy else blocks
            Y, exact = (np.vstack(dense) if len(dense) > 1 else dense[0]), True
        elif lazy:
            Y, exact = blocks.sketch(ell, rng), False
        else:
            Y, exact = _sparse_sign(blocks, ell, rng), False
        order, R = _pivoted_qr(Y, tol, atol, max_rank, expected)
        k = R.shape[0]
        if exact or ell == 2 * c or k + _OVERSAMPLE <= ell:
            break
        ell = min(2 * ell, 2 * c)
        expected = None                  # the guess was too small: any rank the sketch can show
    P = np.zeros((c, k))
    P[order[:k], np.arange(k)] = 1.0
    if 0 < k < c:
        T = sla.solve_triangular(R[:, :k], R[:, k:], check_finite=False)
        P[order[k:]] = T.T
    return order[:k], P


# -- the builder -------------------------------------------------------------------------

def from_kernel(kernel, points, leaf_size=64, rtol=1e-8, atol=0.0, max_rank=None, seed=0,
                progress=False, n_probes=8, max_error_rows=1024, recompress=False,
                basis="interpolative"):
    """HSS approximation of a kernel matrix ``K[i, j] = k(x_i, x_j) (+ shift [i == j])``.

    Parameters
    ----------
    kernel : hssalg.kernels.Kernel or callable
        A built-in kernel (:mod:`hssalg.kernels`) or ``fn(X, Y) -> (p, q)
        block``, wrapped as ``CallableKernel(fn)`` (not assumed symmetric).
    points : (n,) or (n, d) array_like
        Points in 1, 2 or 3 dimensions, in the caller's order: products with
        the result take and return vectors in this order.
    leaf_size : int
        Largest number of points in a leaf of the geometric tree
        (``ClusterTree.from_points``).
    rtol : float in [0, 1]
        Relative tolerance. Each node's skeleton is the fewest of its
        candidates (in a pivot order) whose sampled rows leave every other
        one a residual of at most ``0.1 * rtol`` times the largest row norm
        (for a column-pivoted QR: the pivots above ``0.1 * rtol`` times the
        largest); the resulting error ``||H - K||_F / ||K||_F`` is typically
        0.01 to 1 times ``rtol`` (see Notes for the check).
    atol : float >= 0
        Residuals below ``atol`` (in the units of the weighted samples) count as zero too.
    max_rank : int, optional
        Upper bound on every node's rank (the error estimate then tells what it cost).
    seed : int
        Seeds the proxy points and the probe vectors; the result is a
        deterministic function of the arguments.
    progress : bool
        Print a progress line on stderr.
    n_probes : int >= 1
        Probe vectors of the error estimate (default 8).
    max_error_rows : int >= 1
        The estimate uses all rows when ``n <= max_error_rows`` and otherwise
        this many random rows (default 1024; the estimate then costs 1024 n
        kernel evaluations, about as much as the build for n ~ 10^5).
    recompress : bool
        After the build, truncate every node's basis by an SVD of its block
        row (Xia et al. 2010) within a Frobenius budget of ``0.5 * rtol *
        ||H||_F`` split evenly over the nodes, then re-orthonormalise (see
        Notes). With ``basis="interpolative"`` the truncated bases are then
        rewritten as interpolative ones (:meth:`HSSMatrix.to_interpolative`).
        Default False: measured at rtol 1e-6 in interpolative storage it
        saves 10-13% of the memory of the 2-D Gaussian (12.0 -> 10.4 MiB at
        n = 16384, 34.3 -> 30.8 MiB at 65536) for 1.5-1.7x the build time,
        and 7-8% in 3-D (Laplace: 83.2 -> 76.3 MiB at n = 8192, 236.6 ->
        219.2 MiB at 16384) for 6x the build time; the error grows by about
        1.5x (below rtol in every measured case).
    basis : {"interpolative", "orthonormal"}
        How the result stores its bases (see Notes). Default: interpolative.

    Returns
    -------
    H : HSSMatrix
        float64, on the geometric tree of the points. With
        ``basis="interpolative"`` it is in interpolative storage
        (``H.storage`` is ``"interpolative-symmetric"`` for a symmetric
        kernel, every built-in one, else ``"interpolative"``); with
        ``basis="orthonormal"`` in explicit storage with orthonormal bases,
        where a symmetric kernel's ``U = V`` and ``R = W`` share one buffer
        each. For a symmetric kernel ``B21 = B12^T`` exactly in both: the
        result is exactly symmetric and ``H.nbytes`` counts shared buffers once.
    info : KernelInfo
        Error estimate, kernel evaluations and timings.

    Notes
    -----
    *Cost.* For a rank k that does not grow with n (smooth kernels in 1-D and
    2-D at a fixed bandwidth, and the 1-D Laplace kernel) time is
    O(n k^2 + n k (neighbours + proxies)) and memory O(n (m + k)). With weak
    admissibility (HSS) the top-level ranks of a scale-invariant kernel that
    is singular at r = 0 follow the size of the interface between the two
    halves of the point set: for the 2-D and 3-D Laplace kernels they grow
    with n (measured in 3-D: about n^(0.6)), and the top levels, whose cost
    is O(k^3), then dominate (about n^2 in 3-D).

    *Storage.* The interpolative form keeps each interpolation matrix
    ``P_i = Pi_i [I; T_i]`` of the build as ``T_i`` ((c_i - k_i) x k_i) and
    a row order, so a leaf basis costs (m - k) k numbers instead of m k and a
    transfer stack (k_a + k_b - k) k instead of (k_a + k_b) k, and a
    symmetric kernel keeps one triangle of each D and no B21. Measured at
    rtol 1e-6: 12.6 MB (2-D Gaussian, n = 16384), 35.9 MB (65536) and
    248 MB (3-D Laplace, 16384), against 26.5, 70.0 and 694 MB with
    orthonormal bases. Orthonormal bases are the better choice only to read
    orthonormal generators.

    *Recompression* (``recompress=True``). With orthonormal bases the block
    row of a child a of node i is ``U_a [B12 V_b^T, R_a S_i Phi_i]``, whose
    singular values are those of the small ``[B12, R_a S_i]`` (S_i: the
    parent's kept singular values). Top down, each node keeps the fewest
    left singular vectors whose discarded tail has Frobenius norm at most
    ``tau = 0.5 rtol ||H||_F / sqrt(2 (n_nodes - 1))`` (``||H||_F`` is exact
    from the generators: the norms of D and of the couplings); each such
    projection changes H by at most tau, so the truncation adds at most
    about ``0.5 rtol ||H||_F`` to the build's error. One pass, then a
    bottom-up QR restores orthonormal transfers. A global threshold over
    all nodes' spectra instead of the even split was tried: 2% less memory
    for a second SVD pass, not kept.

    *Error estimate.* With a Gaussian block Omega of ``s = n_probes``
    columns, ``E[||X Omega||_F^2] = s ||X||_F^2`` for any matrix X, so
    ``||(H - K) Omega||_F / ||K Omega||_F`` estimates the relative Frobenius
    error. ``K Omega`` is computed exactly, row by row, without forming K
    (in blocks of rows of about a million entries), in O(r n) time for
    r rows. Reliability: with all rows (``n <= max_error_rows``) and
    s = 8, the squared estimate is a chi-square-like variable with at least
    8 degrees of freedom, so even in the worst case (an error of rank one)
    the estimate is within a factor 3 of the true relative error with
    probability 99.9% and within a factor 10 except in about 1 case in 10^7;
    errors spread over many directions (the usual case) are estimated much
    more tightly (measured over all built-in kernels and d = 1, 2, 3:
    estimate / true error between 0.5 and 2.7). With a row subset (large n) the
    estimate is a ratio of two row-sampled sums: unbiased in expectation but
    it can miss an error concentrated in a few rows (a handful of badly
    compressed leaves), so treat it as a typical rather than a worst-case
    error there; raise ``max_error_rows`` (cost O(max_error_rows * n)) to
    tighten it.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    kernel = as_kernel(kernel)
    pts = as_points(points)
    rtol = check_tolerance(rtol, "rtol")
    atol = check_nonnegative(atol, "atol")
    max_rank = check_optional_rank(max_rank)
    leaf_size = check_positive_int(leaf_size, "leaf_size")
    seed = check_positive_int(seed, "seed", minimum=0)
    n_probes = check_positive_int(n_probes, "n_probes")
    max_error_rows = check_positive_int(max_error_rows, "max_error_rows")
    if not isinstance(recompress, (bool, np.bool_)):
        raise TypeError(f"recompress must be True or False, got {recompress!r}")
    if basis not in ("interpolative", "orthonormal"):
        raise ValueError(f"basis must be 'interpolative' or 'orthonormal', got {basis!r}")
    n, d = pts.shape

    tree = ClusterTree.from_points(pts, leaf_size)
    P = np.ascontiguousarray(pts[tree.perm])
    rng = np.random.default_rng(seed)
    symmetric = bool(kernel.symmetric)
    with threadpool_limits(1, user_api="blas"):
        # recompression truncates orthonormal bases: the build gives those first
        gens, n_evals = _skeletonise(kernel, tree, P, rtol, atol, max_rank, rng, progress,
                                     basis == "interpolative" and not recompress)
        if recompress and tree.n_nodes > 1:
            # the Frobenius budget of the truncation, split evenly over the 2 (n_nodes - 1)
            # projections (a block row and a block column per node and side)
            norm_H = _frobenius_norm(tree, gens)
            tau = _TRUNCATION * rtol * norm_H / np.sqrt(2.0 * (tree.n_nodes - 1))
            _truncate(tree, gens, max(tau, atol), max_rank, symmetric)
            _reorthonormalise(tree, gens, symmetric)
    if basis == "interpolative" and not recompress:
        H = _assemble_interp(tree, gens, symmetric)
    else:
        H = _assemble(tree, gens, symmetric)
        if basis == "interpolative":
            with threadpool_limits(1, user_api="blas"):
                H = H.to_interpolative()
    t1, c1 = time.perf_counter(), time.process_time()

    Omega = rng.standard_normal((n, n_probes))
    if n <= max_error_rows:
        rows = np.arange(n)
    else:
        rows = np.sort(rng.choice(n, size=max_error_rows, replace=False))
    ZK = kernel._matmat_rows(pts, rows, Omega)
    ZH = H.matmat(Omega)[rows]
    norm_K = float(np.linalg.norm(ZK))
    err = float(np.linalg.norm(ZH - ZK))
    rel = err / norm_K if norm_K > 0 else err
    scale = np.sqrt(n / rows.size / n_probes)
    t2, c2 = time.perf_counter(), time.process_time()
    info = KernelInfo(error_estimate=rel, norm_estimate=float(norm_K * scale), error_rows=int(rows.size),
                      n_probes=n_probes, n_kernel_evaluations=int(n_evals),
                      n_kernel_evaluations_estimate=int(rows.size) * n,
                      time_build=t1 - t0, time_estimate=t2 - t1,
                      cpu_time_build=c1 - c0, cpu_time_estimate=c2 - c1)
    return H, info


def _skeletonise(kernel, tree, P, rtol, atol, max_rank, rng, progress, interpolative):
    """Interpolative skeletons bottom-up, then the generators.

    Returns the per-node generator lists and the number of kernel entries
    evaluated: with ``interpolative``, the kinds of the interpolative form
    (``_layout.INTERP_KINDS``: T and row order of every interpolation matrix,
    D packed for a symmetric kernel, no B21 then); else orthonormal explicit
    generators for ``from_generators``.
    """
    n, d = P.shape
    n_nodes = tree.n_nodes
    start, stop, left, right = tree.start, tree.stop, tree.left, tree.right
    sizes = stop - start
    is_leaf = left < 0
    level = tree.level
    symmetric = kernel.symmetric
    lo, hi = _boxes(tree, P)
    center = 0.5 * (lo + hi)
    half = 0.5 * np.max(hi - lo, axis=1)
    proxies = _Proxies(d, lo[0], hi[0], rng)
    tol = _SAFETY * rtol
    evals = 0

    def K(I, J):
        nonlocal evals
        evals += I.size * J.size
        return kernel._block(P, I, J)

    def Kx(I, X):                    # rows of points against free points (proxies)
        nonlocal evals
        evals += I.size * X.shape[0]
        return kernel._eval(P[I], X)

    def Kxt(X, J):
        nonlocal evals
        evals += X.shape[0] * J.size
        return kernel._eval(X, P[J])

    # a symmetric kernel without exp or log: its samples are sketched as they are evaluated
    # (never formed; 3-D Laplace n = 16384: kernel evaluation and sketches about 3 -> 2 s CPU)
    algebraic = (symmetric and isinstance(kernel, _DistanceKernel) and not _numba_config.DISABLE_JIT
                 and kernel._params(d)[0] in _ALGEBRAIC)
    params = kernel._params(d) if algebraic else None

    cand_r = [None] * n_nodes          # candidate points (tree-order indices) of each node
    cand_c = [None] * n_nodes
    skel_r = [None] * n_nodes
    skel_c = [None] * n_nodes
    interp_r = [None] * n_nodes        # P_tau: candidates ≈ P_tau @ skeleton rows
    interp_c = [None] * n_nodes
    for i in np.flatnonzero(is_leaf):
        cand_r[i] = np.arange(start[i], stop[i])
        cand_c[i] = cand_r[i]

    bar = Progress(n_nodes, "from_kernel", enabled=progress)
    ratio = 1.0                        # largest rank / candidates of the level below
    for lvl in range(tree.depth, 0, -1):
        ids = np.arange(tree.level_ptr[lvl], tree.level_ptr[lvl + 1])
        next_ratio = 0.0
        for i in ids:
            if not is_leaf[i]:
                a, b = left[i], right[i]
                cand_r[i] = np.concatenate([skel_r[a], skel_r[b]])
                cand_c[i] = cand_r[i] if symmetric else np.concatenate([skel_c[a], skel_c[b]])
        # the frontier: nodes of this level and leaves above it; together they cover all points
        front = np.concatenate([ids, np.flatnonzero(is_leaf & (level < lvl))])
        flo, fhi = lo[front], hi[front]
        w_front = np.sqrt(sizes[front] / np.maximum([cand_r[f].size for f in front], 1))
        if not symmetric:
            w_front_c = np.sqrt(sizes[front] / np.maximum([cand_c[f].size for f in front], 1))
        for i in ids:
            R0 = _NEAR * max(half[i], proxies.tiny)
            meets = np.all((flo <= center[i] + R0) & (fhi >= center[i] - R0), axis=1)
            meets &= front != i
            near = front[meets]
            n_far = n - sizes[i] - int(sizes[near].sum())
            X = proxies.around(center[i], half[i]) if n_far > 0 else np.empty((0, d))
            w_far = np.sqrt(n_far / X.shape[0]) if X.shape[0] else 0.0

            # transposed samples of the block row K(cand, tau^c): one row per sampled column
            cols = [cand_c[f] for f in near]
            J = np.concatenate(cols) if cols else np.zeros(0, np.int64)
            wJ = np.repeat((w_front if symmetric else w_front_c)[meets], [c.size for c in cols])
            if algebraic:
                # J never meets cand_r[i] (other nodes' candidates): no shift in this block
                sample = _AlgebraicSample(*params, [(P[J], wJ), (X, np.full(X.shape[0], w_far))], P[cand_r[i]])
                evals += sample.shape[0] * sample.shape[1]
            else:
                if symmetric:
                    near_t, far_t = K(J, cand_r[i]), Kxt(X, cand_r[i])
                else:
                    near_t, far_t = K(cand_r[i], J).T, Kx(cand_r[i], X).T
                near_t *= wJ[:, None]
                far_t *= w_far
                sample = [near_t, far_t]
            # sketch size of a short-sketch ID, from the rank ratio below (leaves: full route)
            c_i = cand_r[i].size
            guess = None if is_leaf[i] else int(np.ceil(_RATIO_MARGIN * ratio * c_i)) + _OVERSAMPLE
            s, Pi = _column_id(sample, tol, atol, max_rank, rng, guess)
            # kept as (row order, non-identity rows): half the memory of P during the build
            skel_r[i], interp_r[i] = cand_r[i][s], _interp.compact(Pi, s)
            next_ratio = max(next_ratio, s.size / max(c_i, 1))
            if symmetric:
                skel_c[i], interp_c[i] = skel_r[i], interp_r[i]
            else:
                # the block column K(tau^c, cand): its rows are already the transposed samples
                rows_ = [cand_r[f] for f in near]
                I = np.concatenate(rows_) if rows_ else np.zeros(0, np.int64)
                wI = np.repeat(w_front[meets], [r.size for r in rows_])
                near_t = K(I, cand_c[i]) * wI[:, None]
                far_t = w_far * Kxt(X, cand_c[i])
                c_i = cand_c[i].size
                guess = None if is_leaf[i] else int(np.ceil(_RATIO_MARGIN * ratio * c_i)) + _OVERSAMPLE
                s, Pi = _column_id([near_t, far_t], tol, atol, max_rank, rng, guess)
                skel_c[i], interp_c[i] = cand_c[i][s], _interp.compact(Pi, s)
                next_ratio = max(next_ratio, s.size / max(c_i, 1))
            bar.update()
        ratio = next_ratio
        # candidates of the children are no longer needed
        for i in ids:
            if not is_leaf[i]:
                cand_r[left[i]] = cand_c[left[i]] = cand_r[right[i]] = cand_c[right[i]] = None
    bar.update()
    bar.close()

    if interpolative:
        gens = {kind: [None] * n_nodes for kind in _layout.INTERP_KINDS}
        for i in np.flatnonzero(is_leaf):
            idx = np.arange(start[i], stop[i])
            Dl = K(idx, idx)
            gens["D"][i] = _interp.pack_leaf(Dl) if symmetric else Dl
        for i in np.flatnonzero(~is_leaf):
            a, b = left[i], right[i]
            gens["B12"][i] = K(skel_r[a], skel_c[b])
            if not symmetric:
                gens["B21"][i] = K(skel_r[b], skel_c[a])
        for i in range(1, n_nodes):
            gens["pU"][i], gens["TU"][i] = interp_r[i]
            gens["pV"][i], gens["TV"][i] = interp_c[i]
        return gens, evals

    gens = {kind: [None] * n_nodes for kind in ("D", "U", "V", "R", "W", "B12", "B21")}
    for i in np.flatnonzero(is_leaf):
        idx = np.arange(start[i], stop[i])
        gens["D"][i] = K(idx, idx)
    for i in np.flatnonzero(~is_leaf):
        a, b = left[i], right[i]
        gens["B12"][i] = K(skel_r[a], skel_c[b])
        gens["B21"][i] = K(skel_r[b], skel_c[a])
    if n_nodes > 1:
        # back to full interpolation matrices, which _orthonormal_bases consumes
        for lst in ((interp_r,) if symmetric else (interp_r, interp_c)):
            for i in range(1, n_nodes):
                perm, T = lst[i]
                lst[i] = _interp.expand(T, perm, T.shape[1])
        if symmetric:
            interp_c = None                   # the same matrices as interp_r, which is consumed
        U, R, TU = _orthonormal_bases(tree, interp_r)
        V, W, TV = (U, R, TU) if symmetric else _orthonormal_bases(tree, interp_c)
        gens.update(U=U, V=V, R=R, W=W)
        # A(a, b) = U_a(old) B V_b(old)^T = U_a T_a B T_b^T V_b^T
        for i in np.flatnonzero(~is_leaf):
            a, b = left[i], right[i]
            gens["B12"][i] = _tri_right_t(_tri_left(TU[a], gens["B12"][i]), TV[b])
            # a symmetric kernel's B21 is B12^T; taken as such, not recomputed, so that the
            # result is exactly symmetric (the truncation then keeps U = V bit for bit)
            gens["B21"][i] = (gens["B12"][i].T.copy() if symmetric
                              else _tri_right_t(_tri_left(TU[b], gens["B21"][i]), TV[a]))
            TU[a] = TU[b] = TV[a] = TV[b] = None     # a child's factor serves its parent only
    return gens, evals


def _tri_left(T, M):
    """``T @ M`` for a square upper triangular T (k, k) and M (k, c): BLAS trmm, half the flops of a product."""
    if T.size == 0 or M.size == 0:
        return T @ M
    return _blas.dtrmm(1.0, T, M)


def _tri_left_inplace(T, M):
    """``M <- T @ M`` for a square upper triangular T (k, k) and a C-ordered M (k, c), by BLAS trmm.

    For a temporary of this module that is being consumed (no copy: the
    product of a 2435 x 1281 stack took as long to copy as to compute).
    """
    if T.size == 0 or M.size == 0:
        return
    # (T M)^T = M^T T^T, and M^T is the Fortran-ordered view BLAS overwrites
    out = _blas.dtrmm(1.0, T, M.T, side=1, lower=0, trans_a=1, overwrite_b=1)
    if not np.shares_memory(out, M):      # BLAS made a copy after all
        M[...] = out.T


def _tri_right_t(M, T):
    """``M @ T^T`` for M (r, k) and a square upper triangular T (k, k), by BLAS trmm."""
    if T.size == 0 or M.size == 0:
        return M @ T.T
    return _blas.dtrmm(1.0, T, M, side=1, trans_a=1)


def _qr(M):
    """Economic QR ``M = Q T`` of an r x c matrix: Q (r, min(r, c)), T (min(r, c), c)."""
    r, c = M.shape
    if min(r, c) == 0:
        return np.zeros((r, 0)), np.zeros((0, c))
    return sla.qr(M, mode="economic", check_finite=False)


def _qr_tall(M):
    """Economic QR ``M = Q T`` of a tall r x k matrix (r >= k) of full column rank.

    Below ``_LU_MIN`` columns: Householder (:func:`_qr`). From there on
    Cholesky QR (Fukaya, Nakatsukasa, Yanagisawa and Yamamoto 2014):
    ``T = chol(M^T M)``, ``Q = M T^{-1}``, a rank-k update and a triangular
    solve, both BLAS-3 at full speed (2435 x 1281: 0.20 s against 0.35 s for
    LAPACK's geqrf + orgqr). Its loss of orthogonality grows like
    ``eps cond(M)^2``; the interpolation matrices of this module contain
    identity rows, so ``sigma_min(M) >= 1`` and their condition numbers
    stay small (measured at most 40: 3-D Laplace, n = 8192), and Q is then
    as orthonormal as Householder's (RMS singular value of ``Q^T Q - I``
    1.5e-15 against 1.1e-15). That is checked, not assumed: 8 random probes
    x estimate ``||Q^T Q - I||_F / sqrt(k)`` (the expected value of
    ``||(Q^T Q - I) x|| / ||x||``); above ``_ORTH_TOL`` a second pass
    (CholeskyQR2, orthonormal to rounding for cond(M) < 1e8, Yamamoto et
    al. 2015) is taken, and Householder where a Cholesky factorisation fails
    or the second pass is still not orthonormal enough.
    """
    r, k = M.shape
    if k < _LU_MIN or r < k:
        return _qr(M)
    X = np.random.default_rng(k).standard_normal((k, 8))
    Q, T = _cholesky_qr(M)
    if Q is not None and not _orthonormal_enough(Q, X):
        Q, T2 = _cholesky_qr(Q)
        if Q is not None:
            T = _tri_left(T2, T)
            if not _orthonormal_enough(Q, X):
                Q = None
    return (Q, T) if Q is not None else _qr(M)


def _orthonormal_enough(Q, X):
    """Whether ``||(Q^T Q - I) X|| <= _ORTH_TOL ||X||`` for the random probes X (k, s)."""
    return np.linalg.norm(Q.T @ (Q @ X) - X) <= _ORTH_TOL * np.linalg.norm(X)


def _cholesky_qr(M):
    """One pass of Cholesky QR of a tall C-ordered M (r, k): (Q, T), or (None, None) if M^T M is not definite."""
    Mt = M.T                                  # (k, r), Fortran-ordered: BLAS takes it without a copy
    G = _blas.dsyrk(1.0, Mt, trans=0, lower=0)
    T, info = _lapack.dpotrf(G, lower=0, clean=1, overwrite_a=1)
    if info != 0:
        return None, None
    Qt = _blas.dtrsm(1.0, T, Mt, side=0, lower=0, trans_a=1)     # T^{-T} M^T = Q^T
    return np.ascontiguousarray(Qt.T), T


def _orthonormal_bases(tree, interp):
    """Orthonormal nested bases from interpolative ones, bottom-up.

    With U_tau(old) = U_tau(new) T_tau: a leaf takes the QR of its interpolation
    matrix, an inner node the QR of the stacked [T_a P_a; T_b P_b] of its
    interpolation matrix P (whose row blocks are the old R_a, R_b). The caller
    multiplies the couplings by the T factors, which leaves every product
    unchanged.

    ``interp`` is consumed: its entries are set to None as they are used.

    Returns
    -------
    basis : list, (m, k) orthonormal U of every leaf (None elsewhere)
    transfer : list, R of every node below the root's children (None elsewhere)
    T : list, (k, k) upper triangular factor of every node but the root
    """
    left, right = tree.left, tree.right
    n_nodes = tree.n_nodes
    basis, transfer, T = [None] * n_nodes, [None] * n_nodes, [None] * n_nodes
    for lvl in range(tree.depth, 0, -1):
        for i in range(tree.level_ptr[lvl], tree.level_ptr[lvl + 1]):
            if left[i] < 0:
                basis[i], T[i] = _qr_tall(interp[i])
            else:
                a, b = left[i], right[i]
                ka = T[a].shape[0]            # P has k_a + k_b rows
                M = interp[i]                 # consumed: the stack is formed in its place
                _tri_left_inplace(T[a], M[:ka])
                _tri_left_inplace(T[b], M[ka:])
                Q, T[i] = _qr_tall(M)
                transfer[a], transfer[b] = Q[:ka], Q[ka:]
            interp[i] = None                  # consumed: lowers the peak memory of the build
    return basis, transfer, T


# -- recompression after the build ---------------------------------------------------

def _frobenius_norm(tree, g):
    """||H||_F from orthonormal generators: each off-diagonal block U_a B V_b^T has the norm of B."""
    total = sum(float(np.sum(D * D)) for D in g["D"] if D is not None)
    for kind in ("B12", "B21"):
        total += sum(float(np.sum(B * B)) for B in g[kind] if B is not None)
    return np.sqrt(total)


def _kept_left(G, tau, max_rank):
    """Left singular vectors X (r, k) of G (r, c) and their values s (k,), dropping a tail of norm <= tau.

    The smallest k is kept for which the discarded singular values have
    ``sqrt(sum s_j^2) <= tau``: the projection ``X X^T G`` is then within tau of G
    in the Frobenius norm.
    """
    r, c = G.shape
    if r == 0 or c == 0:
        return np.zeros((r, 0)), np.zeros(0)
    X, s = _left_svd(G)
    # tail[j] = norm of s[j:]; keep k = the first j whose tail fits the budget
    tail = np.sqrt(np.cumsum((s * s)[::-1])[::-1])
    k = int(np.count_nonzero(tail > tau))
    if max_rank is not None:
        k = min(k, max_rank)
    return X[:, :k], s[:k]


def _truncate(tree, g, tau, max_rank, symmetric):
    """Top-down truncation of orthonormal generators g (per-node lists, updated in place).

    With orthonormal nested bases the off-diagonal block row of a child a of
    node i is ``U_a [B12 V_b^T, R_a S_i Phi_i]`` (S_i, Phi_i: the kept singular
    values and right vectors of the parent's block row), so its singular values
    are those of the small matrix ``G_a = [B12, R_a S_i]``. Its SVD gives the
    kept directions X_a; the new basis is ``U_a X_a``: X_a^T moves into R_a and
    the couplings, X_a into the children's transfers or the leaf U. Each
    truncation is an orthogonal projection of one block row (column) that
    changes the matrix by at most ``tau`` in the Frobenius norm. For a symmetric
    matrix (U = V, R = W, B21 = B12^T) the column truncation is the row one,
    done once. Afterwards the transfers are no longer orthonormal
    (:func:`_reorthonormalise` restores them).
    """
    left, right, level_ptr = tree.left, tree.right, tree.level_ptr
    n_nodes = tree.n_nodes
    XU, XV = [None] * n_nodes, [None] * n_nodes
    sU, sV = [None] * n_nodes, [None] * n_nodes
    for lvl in range(tree.depth + 1):
        for i in range(level_ptr[lvl], level_ptr[lvl + 1]):
            a = left[i]
            if a < 0:
                if i != 0:
                    g["U"][i] = g["U"][i] @ XU[i]
                    if not symmetric:
                        g["V"][i] = g["V"][i] @ XV[i]
                continue
            b = right[i]
            B12, B21 = g["B12"][i], g["B21"][i]
            if i == 0:   # the root's block rows are empty: only the couplings count
                Ra, Rb = np.zeros((B12.shape[0], 0)), np.zeros((B21.shape[0], 0))
                Wa, Wb = np.zeros((B21.shape[1], 0)), np.zeros((B12.shape[1], 0))
                su = sv = np.zeros(0)
            else:
                Ra, Rb = g["R"][a] @ XU[i], g["R"][b] @ XU[i]
                Wa, Wb = (Ra, Rb) if symmetric else (g["W"][a] @ XV[i], g["W"][b] @ XV[i])
                su, sv = sU[i], sV[i]
            XU[a], sU[a] = _kept_left(np.concatenate((B12, Ra * su), axis=1), tau, max_rank)
            XU[b], sU[b] = _kept_left(np.concatenate((B21, Rb * su), axis=1), tau, max_rank)
            if symmetric:
                XV[a], XV[b], sV[a], sV[b] = XU[a], XU[b], sU[a], sU[b]
            else:
                XV[a], sV[a] = _kept_left(np.concatenate((B21.T, Wa * sv), axis=1), tau, max_rank)
                XV[b], sV[b] = _kept_left(np.concatenate((B12.T, Wb * sv), axis=1), tau, max_rank)
            g["B12"][i] = XU[a].T @ B12 @ XV[b]
            g["B21"][i] = g["B12"][i].T.copy() if symmetric else XU[b].T @ B21 @ XV[a]
            if i != 0:
                g["R"][a], g["R"][b] = XU[a].T @ Ra, XU[b].T @ Rb
                if not symmetric:
                    g["W"][a], g["W"][b] = XV[a].T @ Wa, XV[b].T @ Wb
    if symmetric:
        g["V"], g["W"] = g["U"], g["R"]


def _reorthonormalise(tree, g, symmetric):
    """Bottom-up QR of the stacked transfers after :func:`_truncate` (g updated in place).

    The leaf bases ``U X`` are still orthonormal; above them ``[R_a; R_b]`` is
    not. With ``[S_a R_a; S_b R_b] = Q S_i`` (S = I at the leaves) the new
    transfers are the blocks of Q, the triangular factors move into the
    couplings (``B12 <- S_a B12 S_b^T``) and into the parent's stack. The
    matrix is unchanged.
    """
    left, right, level_ptr = tree.left, tree.right, tree.level_ptr
    n_nodes = tree.n_nodes
    SU, SV = [None] * n_nodes, [None] * n_nodes

    def lift(S, M):
        return M if S is None else S @ M

    for lvl in range(tree.depth, -1, -1):
        for i in range(level_ptr[lvl], level_ptr[lvl + 1]):
            a = left[i]
            if a < 0:
                continue
            b = right[i]
            if SU[a] is not None or SU[b] is not None or SV[a] is not None or SV[b] is not None:
                g["B12"][i] = lift(SU[a], g["B12"][i])
                g["B12"][i] = g["B12"][i] if SV[b] is None else g["B12"][i] @ SV[b].T
                if symmetric:
                    g["B21"][i] = g["B12"][i].T.copy()
                else:
                    g["B21"][i] = lift(SU[b], g["B21"][i])
                    g["B21"][i] = g["B21"][i] if SV[a] is None else g["B21"][i] @ SV[a].T
            if i == 0:
                continue
            # (a wide stack, fewer rows than the node's rank, lowers that rank to its row count)
            La = lift(SU[a], g["R"][a])
            Q, SU[i] = _qr(np.vstack([La, lift(SU[b], g["R"][b])]))
            g["R"][a], g["R"][b] = Q[:La.shape[0]], Q[La.shape[0]:]
            if symmetric:
                SV[i] = SU[i]
            else:
                La = lift(SV[a], g["W"][a])
                Q, SV[i] = _qr(np.vstack([La, lift(SV[b], g["W"][b])]))
                g["W"][a], g["W"][b] = Q[:La.shape[0]], Q[La.shape[0]:]
    if symmetric:
        g["V"], g["W"] = g["U"], g["R"]


def _assemble(tree, g, symmetric):
    """HSSMatrix from per-node generator lists (consumed); a symmetric one shares its U, V and R, W buffers.

    Sharing is safe because an HSSMatrix's buffers are read-only and every
    operation makes new ones; ``nbytes`` counts a shared buffer once.
    """
    n_nodes = tree.n_nodes
    leaf = tree.is_leaf
    kU = np.zeros(n_nodes, dtype=np.int64)
    kV = np.zeros(n_nodes, dtype=np.int64)
    for i in range(1, n_nodes):
        if leaf[i]:
            kU[i], kV[i] = g["U"][i].shape[1], g["V"][i].shape[1]
        else:
            kU[i], kV[i] = g["R"][tree.left[i]].shape[1], g["W"][tree.left[i]].shape[1]
    # the root's children carry transfers with zero columns
    if n_nodes > 1:
        for c in (tree.left[0], tree.right[0]):
            g["R"][c] = np.zeros((kU[c], 0))
            g["W"][c] = np.zeros((kV[c], 0))
    shapes = _layout.block_shapes(tree, kU, kV)
    offs = _layout.offsets(tree, kU, kV)
    bufs = {}
    for kind in _layout.KINDS:
        if symmetric and kind in ("V", "W"):
            continue
        rows, cols = shapes[kind]
        buf = np.empty(int(offs[kind][-1]))
        for i in range(n_nodes):
            size = int(rows[i] * cols[i])
            if size == 0:
                continue
            blk = g[kind][i]
            if blk.shape != (rows[i], cols[i]):  # an internal inconsistency, never the caller's
                raise AssertionError(f"{kind}[{i}] has shape {blk.shape}, layout wants {(rows[i], cols[i])}")
            # one strided copy whatever the block's memory order (ravel would copy twice)
            buf[offs[kind][i]:offs[kind][i + 1]].reshape(rows[i], cols[i])[...] = blk
            g[kind][i] = None                 # copied: the lists and buffers are never both whole
        bufs[kind] = buf
    if symmetric:
        bufs["V"], bufs["W"] = bufs["U"], bufs["R"]
    return HSSMatrix(tree, kU, kV, bufs, _offsets=offs)


def _assemble_interp(tree, g, symmetric):
    """HSSMatrix in interpolative storage from per-node lists of its kinds (consumed)."""
    kU, kV, bufs, offs = _interp.assemble(tree, g, symmetric)
    form = "interpolative-symmetric" if symmetric else "interpolative"
    return HSSMatrix(tree, kU, kV, bufs, _offsets=offs, _form=form)
