"""Test and benchmark matrices with known structure.

Dense families return ndarrays; the families that are exactly HSS with known
generators (:func:`random_hss`, :func:`poisson1d_green_hss`) are built directly
as :class:`~hssalg.HSSMatrix` at any size, without a dense matrix.

============================== ======== ==============================================
function                       returns  structure
============================== ======== ==============================================
poisson1d_green(n)             dense    Green's matrix of -u'' = f, HSS rank 2 (fact P2)
poisson1d_green_hss(n, ...)    HSS      the same matrix from its rank-2 generators
banded_inverse(n, b, seed)     dense    inverse of a banded matrix, HSS rank <= 2b (P2)
random_hss(tree, rank, seed)   HSS      random generators of a chosen rank (P1)
toeplitz_inverse_distance(n)   dense    1 / (1 + |i - j|), numerically low HSS rank
gaussian_kernel_matrix(pts, h) dense    exp(-|x - y|^2 / (2 h^2)) on a point set
============================== ======== ==============================================
"""

import numpy as np

from . import _layout
from ._validation import as_finite_array, check_dtype, check_nonnegative, check_positive_int
from .matrix import HSSMatrix
from .tree import ClusterTree

__all__ = ["poisson1d_green", "poisson1d_green_hss", "banded_inverse", "random_hss",
           "toeplitz_inverse_distance", "gaussian_kernel_matrix"]


def poisson1d_green(n):
    """Discrete Green's matrix of -u'' = f on (0, 1) with u(0) = u(1) = 0.

    ``G[i-1, j-1] = h^2 min(i, j) (n + 1 - max(i, j)) / (n + 1)`` with
    ``h = 1 / (n + 1)`` and 1-based i, j, that is ``G = (h^-2 tridiag(-1, 2, -1))^-1``,
    the inverse of the second-difference matrix.

    Parameters
    ----------
    n : int
        Number of interior grid points.

    Returns
    -------
    G : (n, n) float64 ndarray, symmetric positive definite
    """
    n = check_positive_int(n, "n")
    i = np.arange(1, n + 1, dtype=np.float64)
    h = 1.0 / (n + 1)
    lo = np.minimum.outer(i, i)
    hi = np.maximum.outer(i, i)
    return h * h * lo * (n + 1 - hi) / (n + 1)


def poisson1d_green_hss(n, leaf_size=64, tree=None):
    """:func:`poisson1d_green` as an HSSMatrix of rank 2, built from its generators.

    With x_i = i / (n + 1) and y_i = (n + 1 - i) / (n + 1) (1-based), the matrix is
    ``G_ij = h x_i y_j`` for i <= j and ``h y_i x_j`` for i >= j, so every node has
    U = V = [x y] restricted to its rows, R = W = I (2 x 2), and the couplings
    B12 = [[0, h], [0, 0]], B21 = B12^T. Memory O(n (m + 2)); any n.

    Parameters
    ----------
    n : int
    leaf_size : int
        Used when ``tree`` is None (balanced tree).
    tree : ClusterTree, optional
        Must have the identity permutation (the matrix is defined on a 1-D grid
        in its natural order).

    Returns
    -------
    HSSMatrix (float64, symmetric)
    """
    n = check_positive_int(n, "n")
    if tree is None:
        tree = ClusterTree.balanced(n, leaf_size)
    elif not isinstance(tree, ClusterTree):
        raise TypeError(f"tree must be a hssalg.ClusterTree, got {type(tree).__name__}")
    elif tree.n != n:
        raise ValueError(f"tree has {tree.n} indices but n is {n}")
    elif not np.array_equal(tree.perm, np.arange(n)):
        raise ValueError("tree must have the identity permutation (a 1-D grid in natural order)")
    h = 1.0 / (n + 1)
    i = np.arange(1, n + 1, dtype=np.float64)
    x = i / (n + 1)
    y = (n + 1 - i) / (n + 1)
    k = np.full(tree.n_nodes, 2, dtype=np.int64)
    k[0] = 0                                   # the root has no basis
    offs = _layout.offsets(tree, k, k)
    D = np.empty(int(offs["D"][-1]))
    U = np.empty(int(offs["U"][-1]))
    XY = np.column_stack([x, y])
    for node in np.flatnonzero(tree.is_leaf):
        s, e = tree.start[node], tree.stop[node]
        D[offs["D"][node]:offs["D"][node + 1]] = _green_block(x, y, h, s, e).ravel()
        if node != 0:                          # a single-leaf tree has no U
            U[offs["U"][node]:offs["U"][node + 1]] = XY[s:e].ravel()
    R = np.tile(np.eye(2).ravel(), int(offs["R"][-1]) // 4)
    n_inner = int(np.count_nonzero(~tree.is_leaf))
    B12 = np.tile(np.array([0.0, h, 0.0, 0.0]), n_inner)
    B21 = np.tile(np.array([0.0, 0.0, h, 0.0]), n_inner)
    bufs = {"D": D, "U": U, "V": U, "R": R, "W": R, "B12": B12, "B21": B21}
    return HSSMatrix(tree, k, k, bufs, _offsets=offs)


def _green_block(x, y, h, s, e):
    xs, ys = x[s:e], y[s:e]
    upper = h * np.outer(xs, ys)          # i <= j
    return np.where(np.arange(e - s)[:, None] <= np.arange(e - s)[None, :], upper, upper.T)


def banded_inverse(n, b, seed=0):
    """Inverse of a random, strictly diagonally dominant banded matrix.

    Fact P2: the inverse of a nonsingular matrix of half bandwidth b has
    off-diagonal blocks of rank <= b, so HSS rank <= 2b on every tree.

    Parameters
    ----------
    n : int
    b : int
        Half bandwidth, ``b >= 0`` (b = 0 gives a diagonal matrix).
    seed : int

    Returns
    -------
    A : (n, n) float64 ndarray
    """
    n = check_positive_int(n, "n")
    b = check_positive_int(b, "b", minimum=0)
    rng = np.random.default_rng(seed)
    M = np.zeros((n, n))
    for d in range(-b, b + 1):
        idx = np.arange(max(0, -d), min(n, n - d))
        M[idx, idx + d] = rng.uniform(-1.0, 1.0, idx.size)
    # dominance margin 1 keeps the inverse well conditioned (cond <= (2b+1)/1 + 1)
    M[np.arange(n), np.arange(n)] = np.abs(M).sum(axis=1) + 1.0
    return np.linalg.inv(M)


def random_hss(tree, rank, seed=0, symmetric=False, dtype=np.float64):
    """HSS matrix with random Gaussian generators of a given rank.

    Every node below the root gets rank ``min(rank, m_i)`` for a leaf and
    ``min(rank, k_a + k_b)`` for an inner node, so ranks are never larger than
    what the block can hold. Entries are scaled so that blocks have norms of
    order one.

    Parameters
    ----------
    tree : ClusterTree or int
        A tree, or ``n`` for ``ClusterTree.balanced(n, 64)``.
    rank : int >= 0
    seed : int
    symmetric : bool
        U = V, R = W, B21 = B12^T and symmetric D (a matrix in H_s(T, k)).
    dtype : float64 or float32

    Returns
    -------
    HSSMatrix
    """
    if not isinstance(tree, ClusterTree):
        tree = ClusterTree.balanced(check_positive_int(tree, "tree (as n)"), 64)
    rank = check_positive_int(rank, "rank", minimum=0)
    dtype = check_dtype(dtype)
    rng = np.random.default_rng(seed)
    m = tree.sizes
    k = np.zeros(tree.n_nodes, dtype=np.int64)
    for lvl in range(tree.depth, 0, -1):
        ids = np.arange(tree.level_ptr[lvl], tree.level_ptr[lvl + 1])
        leaf = tree.left[ids] < 0
        cap = np.where(leaf, m[ids], k[np.maximum(tree.left[ids], 0)] + k[np.maximum(tree.right[ids], 0)])
        k[ids] = np.minimum(rank, cap)
    shapes = _layout.block_shapes(tree, k, k)
    offs = _layout.offsets(tree, k, k)

    def fill(kind):
        rows, cols = shapes[kind]
        # scale by the inner dimension so products of blocks stay O(1)
        scale = np.repeat(1.0 / np.sqrt(np.maximum(cols, 1)), rows * cols)
        return rng.standard_normal(int(offs[kind][-1])) * scale

    bufs = {kind: fill(kind) for kind in _layout.KINDS}
    if symmetric:
        bufs["V"] = bufs["U"]
        bufs["W"] = bufs["R"]
        rows, cols = shapes["B12"]
        B21 = np.empty_like(bufs["B12"])
        for i in np.flatnonzero(rows * cols):
            B21[offs["B21"][i]:offs["B21"][i + 1]] = \
                bufs["B12"][offs["B12"][i]:offs["B12"][i + 1]].reshape(rows[i], cols[i]).T.ravel()
        bufs["B21"] = B21
        D = bufs["D"]
        for i in tree.leaves:
            blk = D[offs["D"][i]:offs["D"][i + 1]].reshape(m[i], m[i])
            D[offs["D"][i]:offs["D"][i + 1]] = (0.5 * (blk + blk.T)).ravel()
    bufs = {kind: np.ascontiguousarray(b, dtype=dtype) for kind, b in bufs.items()}
    return HSSMatrix(tree, k, k, bufs, _offsets=offs)


def toeplitz_inverse_distance(n):
    """The Toeplitz matrix ``A[i, j] = 1 / (1 + |i - j|)``.

    Not exactly HSS, but its off-diagonal blocks have numerical rank growing
    only like log(1/tol): the standard benchmark matrix of STRUMPACK's and
    H2Pack's papers.

    Returns
    -------
    A : (n, n) float64 ndarray
    """
    n = check_positive_int(n, "n")
    i = np.arange(n, dtype=np.float64)
    return 1.0 / (1.0 + np.abs(i[:, None] - i[None, :]))


def gaussian_kernel_matrix(points, h, shift=0.0):
    """Gaussian kernel matrix ``exp(-|x_i - x_j|^2 / (2 h^2)) + shift * I``.

    Parameters
    ----------
    points : (n,) or (n, d) array_like
    h : float > 0
        Bandwidth.
    shift : float >= 0
        Added to the diagonal (regularisation, as in kernel ridge regression).

    Returns
    -------
    K : (n, n) float64 ndarray, symmetric positive semidefinite (+ shift I)
    """
    pts = as_finite_array(points, "points", ndim=(1, 2), dtype=np.float64)
    if pts.ndim == 1:
        pts = pts[:, None]
    if pts.shape[0] == 0:
        raise ValueError("points must contain at least one point")
    h = check_nonnegative(h, "h")
    if h == 0.0:
        raise ValueError("h must be > 0, got 0")
    shift = check_nonnegative(shift, "shift")
    sq = np.sum(pts * pts, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * pts @ pts.T, 0.0)
    K = np.exp(-d2 / (2.0 * h * h))
    if shift:
        K[np.diag_indices_from(K)] += shift
    return K
