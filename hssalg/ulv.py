"""ULV and Cholesky-ULV factorisations of HSS matrices: solve, transposed solve, logdet.

``F = factorize(H)`` (or ``H.factorize()``) factors a square nonsingular HSS
matrix once in O(n k^2) (n rows, rank k, leaf size m ~ k: O(n m^2) in general)
with orthogonal transforms only (Chandrasekaran, Gu, Pals 2006; Xia,
Chandrasekaran, Gu, Li 2010), and ``F.solve(b)`` then costs O(n (m + k)) per
right-hand side. ``factorize(H, spd=True)`` is the generalised Cholesky variant
for symmetric positive definite matrices (less work, ``logdet`` of a
positive definite matrix).

How it works (details in :mod:`hssalg._kernels.ulv`): at every node, an
orthogonal Q with Q^T U = [0; U~] exposes the rows whose coupling to the rest of
the matrix vanishes; those rows are eliminated locally by an LQ factorisation
(Cholesky for ``spd=True``); the kept k x k parts of two siblings are merged
and the process repeats up the tree; the root is eliminated densely. No
pivoting across nodes is needed: every pivot block is a block of an orthogonal
transform of A (of a Schur complement of one, for ``spd=True``), so it is as
well conditioned as A itself, and a tiny pivot means that A is (numerically)
singular -- or, for ``spd=True``, not positive definite.

Precision: factors are computed and stored in float64 whatever the matrix dtype
(a float32 matrix is factorised exactly as given, then solutions are rounded
back to float32), so a float32 factor takes twice the bytes of a float32
matrix of the same size.

The factorisation and both solve sweeps are numba kernels that loop over the
levels and the nodes of the tree; no Python code runs per node.
"""

import numpy as np

from ._kernels import ulv as _k
from ._validation import as_block
from .matrix import HSSMatrix

__all__ = ["ULVFactor", "factorize"]

_GEN_KINDS = ("D", "U", "V", "R", "W", "B12", "B21")


def factorize(H, spd=False):
    """ULV factorisation of a square HSS matrix, stored for repeated solves.

    Parameters
    ----------
    H : HSSMatrix
        Square and nonsingular (symmetric positive definite for ``spd=True``).
        ``H.T`` works as well (no copy of the matrix is made beyond its
        transposed generators).
    spd : bool
        Use the generalised Cholesky-ULV factorisation (about half the work
        of the general one; ``logdet`` is then log det A). The matrix must be
        symmetric in its HSS form: every node needs equal row and column
        ranks and a column basis V spanning the space of its row basis U
        (what a symmetric matrix with minimal ranks has; R and W may differ,
        as they do in ``from_dense`` of a symmetric matrix). The rule:

        - the leaf blocks D and the couplings A(a, b) = U_a B12 V_b^T are
          compared with the transposes of their mirror blocks, node by node
          inside the factorisation, to a relative tolerance of sqrt(eps) of
          the matrix dtype (Frobenius norms), and their symmetric parts
          (X + X^T) / 2 are used;
        - the part of each V outside the span of U is dropped; where it
          exceeds sqrt(eps) relative, the factor is judged by its backward
          error on a random right-hand side (one solve and four products),
          which must not exceed sqrt(eps) either.

        So what is factorised is (A + A^T) / 2 up to a relative perturbation
        of at most about sqrt(eps); an unsymmetric matrix raises ValueError.
        ``from_dense`` of a symmetric matrix, ``random_hss(symmetric=True)``
        and ``poisson1d_green_hss`` qualify.

    Returns
    -------
    ULVFactor

    Raises
    ------
    numpy.linalg.LinAlgError
        When a pivot block is singular to working precision (its rcond
        estimate is below mt * eps for a block of mt rows, eps of the matrix
        dtype): the message names the node, its level, its rows in tree order
        and the rcond estimate. With ``spd=True``, when a pivot block is not
        positive definite (the matrix is not), naming the node likewise.
    TypeError, ValueError
        ``H`` is not an HSSMatrix; ``spd=True`` and the matrix is not
        symmetric (the message names the first node where that shows).

    Notes
    -----
    Cost O(sum over nodes of mt^3) with mt the leaf size at leaves and at most
    twice the rank above: O(n m^2 + n k^2) time and O(n m) memory.
    """
    if not isinstance(H, HSSMatrix):
        raise TypeError(f"H must be a hssalg.HSSMatrix, got {type(H).__name__}")
    if not isinstance(spd, (bool, np.bool_)):
        raise TypeError(f"spd must be True or False, got {type(spd).__name__} {spd!r}")
    bufs, offs = H.generator_buffers()
    kU = np.ascontiguousarray(H.row_ranks, dtype=np.int64)
    kV = np.ascontiguousarray(H.col_ranks, dtype=np.int64)
    tree = H.tree
    if spd and not np.array_equal(kU, kV):
        node = int(np.flatnonzero(kU != kV)[0])
        raise ValueError(f"spd=True needs a symmetric matrix, but node {node} has row rank {kU[node]} "
                         f"and column rank {kV[node]}; use spd=False")
    gens = []
    for kind in _GEN_KINDS:
        g = np.ascontiguousarray(bufs[kind], dtype=np.float64)
        o = np.ascontiguousarray(offs[kind], dtype=np.int64)
        # read-only throughout (as H's own buffers are), so that float64, float32 and
        # transposed input share one compiled signature
        for a in (g, o):
            if a.flags.writeable:
                a.setflags(write=False)
        gens += [g, o]
    mt, r, c = _node_sizes(tree, kU)
    eps = float(np.finfo(H.dtype).eps)
    if spd:
        off = _spd_offsets(tree, kU, mt, r, c)
        fbufs, bad, code, value, logabs, worst_node, worst = _k.spd_factorize(
            tree.arrays, kU, mt, r, c, off, *gens, eps, float(np.sqrt(eps)))
        sign = 1.0
    else:
        off = _offsets(tree, kU, kV, mt, r, c)
        fbufs, bad, value, sign, logabs = _k.factorize(tree.arrays, kU, kV, mt, r, c, off, *gens, eps)
        code = 2
    if bad >= 0:
        _raise_failure(H, int(bad), int(code), float(value), spd)
    F = ULVFactor(H, spd, kU, kV, mt, r, c, off, fbufs, gens, float(sign), float(logabs))
    if spd and worst > np.sqrt(eps):
        _check_dropped_coupling(H, F, int(worst_node), float(worst))
    return F


def _check_dropped_coupling(H, F, node, worst):
    """Judge the column-basis parts the Cholesky-ULV dropped by the backward error they cause.

    A V that spans U's space only up to directions the couplings barely use
    (``from_dense`` truncates rows and columns separately) costs nothing;
    one that does not (an unsymmetric matrix) shows as a residual. Costs one
    solve and four products, O(n (m + k)).
    """
    rng = np.random.default_rng(0)
    n = H.shape[0]
    z = rng.standard_normal(n)
    for _ in range(2):                 # two power steps: ||A z|| / ||z|| estimates ||A||_2
        z = H @ z
        norm_a = np.linalg.norm(z)
        if norm_a == 0.0:
            return
        z /= norm_a
    norm_a = np.linalg.norm(H @ z)
    b = rng.standard_normal(n)
    x = F.solve(b)
    res = np.linalg.norm(H @ x - b) / (norm_a * np.linalg.norm(x) + np.linalg.norm(b))
    tol = np.sqrt(np.finfo(H.dtype).eps)
    if not res <= tol:
        tree = H.tree
        raise ValueError(
            f"spd=True needs a symmetric matrix, but the column basis of node {node} (level "
            f"{int(tree.level[node])}, rows {int(tree.start[node])}:{int(tree.stop[node])} in tree order) "
            f"does not span the space of its row basis (relative part outside {worst:.1g}), and the "
            f"symmetric form factorised misses A by a relative backward error of {res:.1g} > {tol:.1g}; "
            f"use spd=False")


def _node_sizes(tree, kU):
    """Working size mt, eliminated r and kept c = mt - r of every node, bottom up."""
    mt = np.zeros(tree.n_nodes, dtype=np.int64)
    r = np.zeros(tree.n_nodes, dtype=np.int64)
    c = np.zeros(tree.n_nodes, dtype=np.int64)
    sizes = tree.sizes
    for lvl in range(tree.depth, -1, -1):
        ids = np.arange(tree.level_ptr[lvl], tree.level_ptr[lvl + 1])
        a, b = tree.left[ids], tree.right[ids]
        leaf = a < 0
        mt[ids] = np.where(leaf, sizes[ids], c[np.maximum(a, 0)] + c[np.maximum(b, 0)])
        r[ids] = np.maximum(mt[ids] - kU[ids], 0)
        c[ids] = mt[ids] - r[ids]
    return mt, r, c


def _table(sizes):
    off = np.zeros((len(sizes), sizes[0].size + 1), dtype=np.int64)
    for q, sz in enumerate(sizes):
        off[q, 1:] = np.cumsum(sz)
    return off


def _offsets(tree, kU, kV, mt, r, c):
    kq = np.where(r > 0, kU, 0)
    sizes = [None] * _k.N_KINDS
    sizes[_k.QV] = mt * kq
    sizes[_k.TQ] = kq
    sizes[_k.LP] = r * mt
    sizes[_k.TP] = r
    sizes[_k.CC] = c * r
    sizes[_k.UH] = c * kU
    sizes[_k.V1] = r * kV
    sizes[_k.V2] = c * kV
    sizes[_k.DR] = c * c
    return _table(sizes)


def _spd_offsets(tree, kU, mt, r, c):
    kq = np.where(r > 0, kU, 0)
    sizes = [None] * _k.N_SPD_KINDS
    sizes[_k.S_QV] = mt * kq
    sizes[_k.S_TQ] = kq
    sizes[_k.S_L] = r * r
    sizes[_k.S_G] = r * c
    sizes[_k.S_UH] = c * kU
    sizes[_k.S_DR] = c * c
    sizes[_k.S_V2] = c * kU
    return _table(sizes)


def _raise_failure(H, node, code, value, spd):
    tree = H.tree
    where = (f"node {node} (level {int(tree.level[node])}, rows {int(tree.start[node])}:"
             f"{int(tree.stop[node])} in tree order)")
    if code == 3:
        raise ValueError(
            f"spd=True needs a symmetric matrix, but at {where} the matrix differs from its transpose "
            f"(relative difference {value:.1g} > {np.sqrt(np.finfo(H.dtype).eps):.1g}); use spd=False")
    if code == 1:
        raise np.linalg.LinAlgError(
            f"Cholesky-ULV factorisation: the matrix is not positive definite: the reduced diagonal "
            f"block of {where} has a non-positive pivot")
    kind = "Cholesky-ULV" if spd else "ULV"
    raise np.linalg.LinAlgError(
        f"{kind} factorisation: the reduced diagonal block of {where} is singular to working "
        f"precision (rcond {value:.1g})")


class ULVFactor:
    """A stored ULV (or Cholesky-ULV) factorisation of an HSS matrix A.

    Made by :func:`factorize` / :meth:`HSSMatrix.factorize`; reuse it for any
    number of solves. Vectors are in the caller's index order, like
    ``H @ x``.

    Attributes
    ----------
    shape : (int, int)
    dtype : numpy dtype
        The matrix dtype; solutions come back in it (the factor is float64).
    spd : bool
        True for the Cholesky-ULV factorisation.
    nbytes : int
        Bytes held by the factor (including the generators it keeps for the
        solves).
    """

    __slots__ = ("_tree", "_dtype", "_spd", "_kU", "_kV", "_mt", "_r", "_c", "_off", "_bufs",
                 "_gens", "_sign", "_logabs")

    def __init__(self, H, spd, kU, kV, mt, r, c, off, bufs, gens, sign, logabs):
        self._tree = H.tree
        self._dtype = H.dtype
        self._spd = bool(spd)
        self._kU, self._kV = kU, kV
        self._mt, self._r, self._c = mt, r, c
        self._off = off
        if spd:
            # the kept blocks only pass data to the parent during the factorisation, and the
            # eliminated unknowns never couple outside their node: no generator is needed
            self._bufs = bufs[:_k.S_UH]
            self._gens = ()
        else:
            # V2 and DR only pass data to the parent; the solves need R, W, B12, B21 of A
            self._bufs = bufs[:_k.V2]
            self._gens = tuple(gens[6:])
        self._sign = sign
        self._logabs = logabs

    @property
    def shape(self):
        n = self._tree.n
        return (n, n)

    @property
    def dtype(self):
        return self._dtype

    @property
    def spd(self):
        return self._spd

    @property
    def nbytes(self):
        arrays = self._bufs + self._gens + (self._off, self._mt, self._r, self._c, self._kU, self._kV)
        return int(sum(a.nbytes for a in arrays))

    def __repr__(self):
        n = self._tree.n
        kind = "Cholesky-ULV" if self._spd else "ULV"
        return f"ULVFactor({kind}, shape=({n}, {n}), dtype={self._dtype}, {self.nbytes / 2**20:.2f} MiB)"

    def solve(self, b, transpose=False):
        """Solve A x = b, or A^T x = b with ``transpose=True``.

        Parameters
        ----------
        b : (n,) or (n, s) array_like
            Right-hand side(s) in the caller's index order; finite.
        transpose : bool

        Returns
        -------
        x : ndarray, same shape as b, in the matrix dtype

        Raises
        ------
        ValueError
            ``b`` has the wrong shape or non-finite entries.
        FloatingPointError
            The solution overflows float64 (never returned as inf or NaN).
        """
        n = self._tree.n
        B, was_vector = as_block(b, n, np.float64, name="b")
        tree = self._tree
        if not tree.has_identity_perm:
            B = np.take(B, tree.perm, axis=0)
        X = self._solve_tree_order(B, bool(transpose))
        if not tree.has_identity_perm:
            X = np.take(X, tree.iperm, axis=0)
        with np.errstate(over="ignore"):
            X = X.astype(self._dtype, copy=False)
        # finite b and pivots that passed the rcond test can still overflow on extreme scales
        if not np.isfinite(np.sum(X)) and not np.all(np.isfinite(X)):
            raise FloatingPointError(
                f"{'Cholesky-ULV' if self._spd else 'ULV'} solve: the solution overflowed (entries beyond "
                f"{np.finfo(self._dtype).max:.1e}); scale b or the matrix")
        return X[:, 0] if was_vector else X

    def _solve_tree_order(self, B, transpose):
        tree = self._tree
        g = self._gens
        if self._spd:
            # A is symmetric: the transposed solve is the same
            return _k.spd_solve(tree.arrays, self._kU, self._mt, self._r, self._c, self._off,
                                *self._bufs[:4], B)
        kernel = _k.solve_transposed if transpose else _k.solve
        return kernel(tree.arrays, self._kU, self._kV, self._mt, self._r, self._c, self._off,
                      *self._bufs, *g, B)

    def logdet(self):
        """Sign and logarithm of the absolute value of det A, like ``numpy.linalg.slogdet``.

        Returns
        -------
        sign : float
            +1.0 or -1.0 (always +1.0 for the Cholesky-ULV factor, whose
            matrix is positive definite).
        logabsdet : float
            log |det A| (= log det A for ``spd=True``), computed as a sum of
            logarithms of pivots, so it neither overflows nor underflows.
        """
        return self._sign, self._logabs

    def aslinearoperator(self):
        """A^-1 as a :class:`scipy.sparse.linalg.LinearOperator`.

        ``matvec`` solves A x = b and ``rmatvec`` solves A^T x = b, so the
        operator can precondition ``scipy.sparse.linalg.gmres`` or ``cg``.
        """
        from scipy.sparse.linalg import LinearOperator
        return LinearOperator(self.shape, matvec=self.solve, matmat=self.solve,
                              rmatvec=lambda b: self.solve(b, transpose=True),
                              rmatmat=lambda b: self.solve(b, transpose=True), dtype=self._dtype)
