"""Black-box HSS compression from products with A and A^T only.

The scheme of Levitt and Martinsson ("Linear-complexity black-box randomized
compression of rank-structured matrices", SISC 2024, arXiv 2205.02990): one
pair of Gaussian test blocks Omega, Psi (n x s) and their images Y = A Omega,
Z = A^T Psi are drawn once and reused at every level of the tree. No entry of
A is ever read.

Sketch of the algorithm (tree order, bottom-up, every node treated as a leaf of
the "reduced" matrix that is left once the levels below it are compressed):

* A node i holds a test block ``Om`` (rV x s), a sample ``Y = M Om`` (rU x s)
  and their adjoint counterparts ``Ps`` (rU x s), ``Z = M^T Ps`` (rV x s) of
  the reduced matrix M; for a leaf these are the rows of Omega, Y, Psi, Z.
* Right-multiplying Y by an orthonormal basis P of the null space of Om
  cancels the unknown diagonal block M(i, i): ``Y P = M(i, i^c) Om(i^c) P``
  spans the column space of the off-diagonal block row, so its dominant left
  singular vectors give the row basis: U_i for a leaf, the stacked transfers
  [R_a; R_b] of the children for an inner node. V_i (or [W_a; W_b]) comes
  from ``Z Q`` likewise.
* The diagonal block is known from the samples only up to its part U_i C_i
  V_i^T: ``(I - U U^T) M(i, i) = (I - U U^T) Y Om^+`` and
  ``M(i, i) (I - V V^T) = (Z Ps^+)^T (I - V V^T)``, so we keep
  ``D_i = (I - U U^T) Y Om^+ + U U^T (Z Ps^+)^T (I - V V^T)`` and pass the
  unknown C_i = U^T M(i, i) V up as the diagonal block of the next reduced
  matrix, whose samples are ``U^T (Y - D_i Om)`` and ``V^T (Z - D_i^T Ps)``
  with test blocks ``V^T Om`` and ``U^T Ps``.
* At the root (rank 0) the whole reduced block is ``Y Om^+``. A top-down
  sweep then adds each ``U C V^T`` back: its off-diagonal parts are the
  couplings B12, B21, its diagonal parts the C of the children, and at a leaf
  it completes D.

A node of the reduced problem needs ``s >= r_i + k_i`` columns (r_i its
reduced size: the leaf size m_i for a leaf, k_a + k_b above), so a fixed rank k
costs ``s = max(m, 2k) + k + p`` products with A and as many with A^T (p the
oversampling), independent of n. With ``symmetric=True`` one sketch serves
both sides, so ``max(m, 2k) + k`` products with A alone suffice without
oversampling: the constructive form of fact P6 of HSS_PRIMER.md.
"""

import numbers
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from . import _layout
from ._validation import check_optional_rank, check_positive_int, check_tolerance
from .matrix import HSSMatrix
from .tree import ClusterTree

__all__ = ["MatvecInfo", "from_matvec"]

# tolerance mode splits the error budget rtol ||A||_F evenly over the truncations of
# all nodes (in the squared sense); 0.5 leaves room for the randomised tail estimates
_SAFETY = 0.5


@dataclass(frozen=True)
class MatvecInfo:
    """Statistics of a :func:`from_matvec` run.

    Attributes
    ----------
    n_matvecs : int
        Columns passed to ``matvec`` (products with A), probes included.
    n_rmatvecs : int
        Columns passed to ``rmatvec`` (products with A^T); 0 when symmetric.
    error_estimate : float or None
        ``||A X - H X||_F / ||A X||_F`` on fresh Gaussian probes X, an
        estimate of the relative Frobenius error ``||A - H||_F / ||A||_F``;
        None when no probes were drawn.
    n_samples : int
        Columns s of the sketch Omega (and Psi) the result was built from.
    n_rounds : int
        Number of sketch sizes tried (1 with a fixed rank).
    converged : bool
        False when the tolerance was not met within ``max_samples``.
    """

    n_matvecs: int
    n_rmatvecs: int
    error_estimate: float | None
    n_samples: int
    n_rounds: int
    converged: bool


# -- the black box -----------------------------------------------------------------

class _BlackBox:
    """Products with A and A^T in tree order, checked and counted."""

    def __init__(self, matvec, rmatvec, tree, symmetric):
        self.tree = tree
        self.matvec = matvec
        self.rmatvec = matvec if symmetric else rmatvec
        self.symmetric = symmetric
        self.n_matvecs = 0
        self.n_rmatvecs = 0

    def _call(self, fn, name, X_tree):
        tree = self.tree
        n, s = X_tree.shape
        X = X_tree if tree.has_identity_perm else X_tree[tree.iperm]
        # the caller gets its own copy: a black box that writes into its input must not
        # corrupt the sketch
        Y = fn(np.array(X, copy=True))
        try:
            Y = np.asarray(Y)
        except Exception as exc:  # pragma: no cover - exotic return types
            raise TypeError(f"{name} must return an array, got {type(Y).__name__}") from exc
        if Y.dtype.kind == "c":
            raise TypeError(f"{name} returned a complex array (dtype {Y.dtype}); "
                            "from_matvec works in real arithmetic")
        if Y.dtype.kind not in "fiub":
            raise TypeError(f"{name} must return a numeric array, got dtype {Y.dtype}")
        if Y.ndim == 1 and s == 1 and Y.shape[0] == n:
            Y = Y.reshape(n, 1)
        if Y.shape != (n, s):
            raise ValueError(f"{name} returned an array of shape {Y.shape} for an input block of "
                             f"shape ({n}, {s}); expected ({n}, {s})")
        Y = np.asarray(Y, dtype=np.float64)
        if not np.all(np.isfinite(Y)):
            bad = int(Y.size - np.count_nonzero(np.isfinite(Y)))
            raise ValueError(f"{name} returned {bad} non-finite entr{'y' if bad == 1 else 'ies'} "
                             f"(NaN or inf) for a finite input block of shape ({n}, {s})")
        return Y if tree.has_identity_perm else Y[tree.perm]

    def forward(self, X_tree):
        """A @ X for X (n, s) in tree order; returns tree order."""
        self.n_matvecs += X_tree.shape[1]
        return self._call(self.matvec, "matvec", X_tree)

    def adjoint(self, X_tree):
        """A^T @ X (A @ X when symmetric)."""
        if self.symmetric:
            return self.forward(X_tree)
        self.n_rmatvecs += X_tree.shape[1]
        return self._call(self.rmatvec, "rmatvec", X_tree)


# -- per-node linear algebra ---------------------------------------------------------

def _pinv_and_null(Om, rcond=0.0):
    """Pseudo-inverse factors and null space of a wide test block Om (r x s).

    Returns ``(apply_pinv, P)``: ``apply_pinv(Y)`` is ``Y @ pinv(Om)`` and P
    (s x (s - r)) an orthonormal basis of the null space of Om. A Householder
    QR of Om^T gives both; Om is a Gaussian block (or an orthonormal
    projection of one), so it has full row rank with overwhelming probability
    when s >= r.

    With ``rcond > 0`` (test blocks that are data, not Gaussian: see
    ``hssalg_nn.fit_linear_exact``) an SVD is used instead: singular values
    below ``rcond`` times the largest are treated as zero, their directions
    join the null space, and the pseudo-inverse is the truncated one.
    """
    r, s = Om.shape
    if r == 0:
        return (lambda Y: np.zeros((Y.shape[0], 0))), np.eye(s)
    if rcond > 0 and s > 0:
        Uo, so, Vt = sla.svd(Om, full_matrices=True, check_finite=False, lapack_driver="gesdd")
        keep = int(np.sum(so > rcond * so[0])) if so.size and so[0] > 0 else 0
        pinv = (Vt[:keep].T / so[:keep]) @ Uo[:, :keep].T
        return (lambda Y: Y @ pinv), np.ascontiguousarray(Vt[keep:].T)
    if s < r:
        pinv = np.linalg.pinv(Om)
        return (lambda Y: Y @ pinv), np.zeros((s, 0))
    Q, Rfull = sla.qr(Om.T, mode="full", check_finite=False)
    Q1, R1, P = Q[:, :r], Rfull[:r], Q[:, r:]
    diag = np.abs(np.diag(R1))
    if diag.min() <= 1e3 * np.finfo(np.float64).eps * diag.max():
        # a test block without full row rank cannot happen for Gaussian samples
        # unless the black box is degenerate; fall back to the SVD pseudo-inverse
        pinv = np.linalg.pinv(Om)
        return (lambda Y: Y @ pinv), P

    def apply_pinv(Y):
        # Om = R1^T Q1^T, so Om^+ = Q1 R1^-T and Y Om^+ = (R1^-1 (Y Q1)^T)^T
        return sla.solve_triangular(R1, (Y @ Q1).T, lower=False, check_finite=False).T
    return apply_pinv, P


def _dominant_left(S, k):
    """The k dominant left singular vectors of S and all its singular values."""
    if S.shape[0] == 0 or S.shape[1] == 0:
        return np.zeros((S.shape[0], 0)), np.zeros(0)
    Us, sig, _ = sla.svd(S, full_matrices=False, check_finite=False, lapack_driver="gesdd")
    return np.ascontiguousarray(Us[:, :k]), sig


class _RankRule:
    """How many singular directions a node keeps.

    Fixed mode: ``min(rank, cap)`` less the directions at rounding level
    (``budget`` is then a few ulps of ||A||_F). Tolerance mode: the fewest whose discarded
    tail, in the sketch's scale, is below the node's share of the budget, and
    never more than the columns of the null-space sketch minus the
    oversampling (otherwise the node is *saturated* and the sample too small).
    """

    def __init__(self, rank, max_rank, oversampling, budget):
        self.rank = rank
        self.max_rank = max_rank
        self.p = oversampling
        self.budget = budget         # absolute tail allowed per node, per sqrt(column)
        self.saturated = False
        self.wanted = 0              # sketch size the saturated nodes ask for (a lower bound)

    def choose(self, sig, q, cap, r):
        """Rank for a node with singular values sig of a null-space sketch with q columns.

        r is the number of rows of the node's test block (q = s - r).
        """
        if self.max_rank is not None:
            cap = min(cap, self.max_rank)
        cap = min(cap, q)
        if self.rank is not None:
            # a fixed rank is an upper bound: only numerically zero directions are dropped
            return min(max(0, min(self.rank, cap)), self._needed(sig, q))
        if sig.size == 0 or cap <= 0:
            if q <= 0 and (self.max_rank is None or self.max_rank > 0):
                # no null-space columns at all: the test block has more rows than the sketch
                self.saturated = True
                self.wanted = max(self.wanted, r + 1 + self.p)
            return 0
        need = self._needed(sig, q)
        usable = max(0, q - self.p)
        capped = min(cap, need)
        if capped > usable and (self.max_rank is None or usable < self.max_rank):
            # the null-space sketch has no columns left to confirm this rank
            self.saturated = True
            self.wanted = max(self.wanted, r + capped + self.p)
        return capped

    def _needed(self, sig, q):
        """Fewest directions whose discarded tail ||sig[k:]|| is <= budget * sqrt(q)."""
        if sig.size == 0:
            return 0
        tail = np.append(np.sqrt(np.cumsum((sig * sig)[::-1])[::-1]), 0.0)
        return int(np.argmax(tail <= self.budget * np.sqrt(max(q, 1))))


def _compress(tree, Om_all, Y_all, Ps_all, Z_all, symmetric, rule, rcond=0.0):
    """One bottom-up pass over the tree, then the top-down sweep; returns an HSSMatrix.

    All blocks are in tree order: Om_all, Ps_all (n x s) test blocks,
    Y_all = A Om_all, Z_all = A^T Ps_all. ``rcond``: see :func:`_pinv_and_null`.
    """
    n = tree.n
    n_nodes = tree.n_nodes
    start, stop, left, right = tree.start, tree.stop, tree.left, tree.right
    kU = np.zeros(n_nodes, dtype=np.int64)
    kV = np.zeros(n_nodes, dtype=np.int64)
    Ubasis = [None] * n_nodes        # reduced row basis (rU x kU): U (leaf) or [R_a; R_b]
    Vbasis = [None] * n_nodes
    Dpart = [None] * n_nodes         # diagonal block of the reduced matrix, minus U C V^T
    reduced = [None] * n_nodes       # (Om~, Y~, Ps~, Z~) handed to the parent

    for lvl in range(tree.depth, -1, -1):
        for i in range(tree.level_ptr[lvl], tree.level_ptr[lvl + 1]):
            if left[i] < 0:
                sl = slice(start[i], stop[i])
                Om, Y, Ps, Z = Om_all[sl], Y_all[sl], Ps_all[sl], Z_all[sl]
            else:
                a, b = left[i], right[i]
                Om, Y, Ps, Z = (np.vstack([ra, rb]) for ra, rb in zip(reduced[a], reduced[b]))
                reduced[a] = reduced[b] = None
            pinv_om, P = _pinv_and_null(Om, rcond)
            G1 = pinv_om(Y)                            # Y Om^+, rU x rV
            if i == 0:
                # the root has no off-diagonal block: its reduced block is all there is
                Dpart[0] = 0.5 * (G1 + G1.T) if symmetric else G1
                Ubasis[0] = np.zeros((Y.shape[0], 0))
                Vbasis[0] = np.zeros((Om.shape[0], 0))
                continue
            rU, rV = Y.shape[0], Om.shape[0]
            cap_off = n - (stop[i] - start[i])         # columns of the off-diagonal block row
            U, sig = _dominant_left(Y @ P, rU)
            k = rule.choose(sig, P.shape[1], min(rU, cap_off), rV)
            U = U[:, :k]
            if symmetric:
                V, G2 = U, G1.T
            else:
                pinv_ps, Q = _pinv_and_null(Ps, rcond)
                V, sigv = _dominant_left(Z @ Q, rV)
                kv = rule.choose(sigv, Q.shape[1], min(rV, cap_off), rU)
                V = V[:, :kv]
                G2 = pinv_ps(Z).T                      # (Z Ps^+)^T, rU x rV
            # (I - U U^T) M_ii from Y, U U^T M_ii (I - V V^T) from Z; U C V^T is unknown
            UtG1 = U.T @ G1
            D = G1 - U @ UtG1
            UtG2 = U.T @ G2
            D += U @ (UtG2 - (UtG2 @ V) @ V.T)
            if symmetric:
                D = 0.5 * (D + D.T)
            Dpart[i], Ubasis[i], Vbasis[i] = D, U, V
            kU[i], kV[i] = U.shape[1], V.shape[1]
            Ytil = U.T @ (Y - D @ Om)
            Omtil = V.T @ Om
            if symmetric:
                reduced[i] = (Omtil, Ytil, Omtil, Ytil)
            else:
                reduced[i] = (Omtil, Ytil, U.T @ Ps, V.T @ (Z - D.T @ Ps))
    return _assemble(tree, kU, kV, Ubasis, Vbasis, Dpart, symmetric)


def _assemble(tree, kU, kV, Ubasis, Vbasis, Dpart, symmetric):
    """Top-down sweep: restore each U C V^T, split into couplings and children's C."""
    offs = _layout.offsets(tree, kU, kV)
    bufs = {kind: np.zeros(int(offs[kind][-1])) for kind in _layout.KINDS}
    left, right = tree.left, tree.right

    def put(kind, i, block):
        bufs[kind][offs[kind][i]:offs[kind][i + 1]] = block.ravel()

    C = {0: np.zeros((0, 0))}
    for i in range(tree.n_nodes):            # breadth first: parents before children
        U, V = Ubasis[i], Vbasis[i]
        F = Dpart[i] + U @ C.pop(i) @ V.T     # the full diagonal block of the reduced matrix
        if left[i] < 0:
            put("D", i, F)
            if i != 0:
                put("U", i, U)
                put("V", i, V)
            continue
        a, b = left[i], right[i]
        ka, kva = kU[a], kV[a]
        put("B12", i, F[:ka, kva:])
        put("B21", i, F[ka:, :kva])
        C[a], C[b] = F[:ka, :kva], F[ka:, kva:]
        if i != 0:
            put("R", a, U[:ka])
            put("R", b, U[ka:])
            put("W", a, V[:kva])
            put("W", b, V[kva:])
    if symmetric:
        # identical buffers make the symmetry exact, not just to rounding
        bufs["V"], bufs["W"] = bufs["U"], bufs["R"]
        rows, cols = _layout.block_shapes(tree, kU, kV)["B12"]
        for i in np.flatnonzero(rows * cols):
            B12 = bufs["B12"][offs["B12"][i]:offs["B12"][i + 1]].reshape(rows[i], cols[i])
            bufs["B21"][offs["B21"][i]:offs["B21"][i + 1]] = B12.T.ravel()
        for i in tree.leaves:
            m = tree.stop[i] - tree.start[i]
            blk = bufs["D"][offs["D"][i]:offs["D"][i + 1]].reshape(m, m)
            bufs["D"][offs["D"][i]:offs["D"][i + 1]] = (0.5 * (blk + blk.T)).ravel()
    return HSSMatrix(tree, kU, kV, bufs, _offsets=offs)


# -- sample sizes and the driver --------------------------------------------------------

def _fixed_sample_size(tree, k, oversampling):
    """Columns s needed for ranks min(k, ...) on every node: max_i (r_i + k_i) + p, capped at n."""
    n = tree.n
    m = tree.sizes
    kk = np.zeros(tree.n_nodes, dtype=np.int64)
    r = np.zeros(tree.n_nodes, dtype=np.int64)
    for lvl in range(tree.depth, -1, -1):
        for i in range(tree.level_ptr[lvl], tree.level_ptr[lvl + 1]):
            r[i] = m[i] if tree.left[i] < 0 else kk[tree.left[i]] + kk[tree.right[i]]
            kk[i] = 0 if i == 0 else min(k, r[i], n - m[i])
    return int(min(n, int(np.max(r + kk)) + oversampling))


def _check_callable(f, name):
    if not callable(f):
        raise TypeError(f"{name} must be a callable taking an (n, s) block and returning A @ block "
                        f"(A^T @ block for rmatvec), got {type(f).__name__}")
    return f


def _estimate_error(H, bb, rng, n_probes):
    """||A X - H X||_F / ||A X||_F on fresh Gaussian probes; returns (error, X, AX) in tree order."""
    n = H.shape[0]
    X = rng.standard_normal((n, n_probes))
    AX = bb.forward(X)
    tree = H.tree
    X_caller = X if tree.has_identity_perm else X[tree.iperm]
    HX = H.matvec(X_caller)
    if not tree.has_identity_perm:
        HX = HX[tree.perm]
    den = np.linalg.norm(AX)
    num = np.linalg.norm(AX - HX)
    return (float(num / den) if den > 0 else float(num)), X, AX


def _check_symmetry(Om, Y, tol):
    """A symmetric black box gives a symmetric Om^T A Om; say so when it does not."""
    G = Om.T @ Y
    scale = np.linalg.norm(G)
    asym = np.linalg.norm(G - G.T)
    if scale > 0 and asym > tol * scale:
        raise ValueError(f"symmetric=True but matvec is not symmetric: the sample Om^T A Om has a "
                         f"relative antisymmetric part of {asym / scale:.2e} (allowed {tol:.1e}); "
                         "pass rmatvec and symmetric=False")


def from_matvec(matvec, rmatvec, tree, rank=None, rtol=1e-8, seed=0, symmetric=False,
                max_rank=None, oversampling=10, n_probes=8, max_samples=None):
    """Compress a matrix known only through products with A and A^T into HSS form.

    Black-box randomised compression of Levitt and Martinsson (SISC 2024): one
    pair of Gaussian sketches ``Y = A Omega``, ``Z = A^T Psi`` of s columns is
    drawn and reused at every level; no entry of A is read.

    Parameters
    ----------
    matvec : callable
        ``matvec(X) -> A @ X`` for a block X of shape (n, s) in the caller's
        index order (the tree's ``perm`` is applied inside); must return a
        finite real (n, s) array. It receives a copy it may modify.
    rmatvec : callable or None
        ``rmatvec(X) -> A.T @ X``, same conventions; ignored (may be None)
        when ``symmetric`` is True.
    tree : ClusterTree
        Tree on the rows and columns of A.
    rank : int >= 0, optional
        Fixed rank: every node gets rank at most ``min(rank, max_rank, r_i, n - m_i)``
        (r_i: leaf size, or the children's ranks summed) from a single sketch
        of ``s = max_i (r_i + k_i) + oversampling`` columns, that is
        ``max(m, 2 rank) + rank + oversampling`` for leaf size m (capped at n).
        An HSS matrix of at most this rank is recovered exactly up to
        rounding; directions whose singular values are at rounding level
        (below 16 eps ||A||_F in the sketch's scale) are dropped, so a node
        whose true rank is lower gets its true rank. Default None: tolerance
        mode.
    rtol : float in (0, 1]
        Tolerance mode: target relative error ``||A - H||_F / ||A||_F``. Ranks
        are chosen from the sketch's singular values and the sketch is doubled
        until the randomised estimate on ``n_probes`` fresh vectors meets rtol
        or ``max_samples`` is reached (then a RuntimeWarning). The first
        sketch has ``m + 2 max(p, 8)`` columns; the excess over the leaf size
        m doubles each round, and the probes are recycled into the sketch.
    seed : int or None
        Seed of the Gaussian test blocks.
    symmetric : bool
        A = A^T: only ``matvec`` is called, one sketch serves both sides
        (Psi = Omega), so half the products; the result is exactly symmetric
        (U = V, R = W, B21 = B12^T). A ValueError is raised when the sample
        shows that A is not symmetric.
    max_rank : int >= 0, optional
        Upper bound on every node rank (both modes).
    oversampling : int >= 0
        Extra sketch columns p beyond the minimum (default 10).
    n_probes : int >= 0
        Probe vectors of the a-posteriori error estimate (extra products with
        A). Must be >= 1 in tolerance mode; 0 skips the estimate in fixed mode.
    max_samples : int, optional
        Largest sketch size s in tolerance mode; default n.

    Returns
    -------
    H : HSSMatrix
        float64, on ``tree``, with orthonormal bases.
    info : MatvecInfo
        Products used (``n_matvecs``, ``n_rmatvecs``), the error estimate and
        the sketch size.

    Notes
    -----
    Products: with a fixed rank k and leaf size m, ``s = max(m, 2k) + k + p``
    columns for A and as many for A^T (none when symmetric), plus
    ``n_probes`` for A; the number does not depend on n. Work besides the
    products: O(n s^2) for the per-node QR / SVD of the sketches; memory
    O(n s). Every node of the reduced problem cancels its own diagonal block
    through the null space of its test block, which is why s must exceed the
    leaf size: a leaf block D is an arbitrary m x m matrix.
    """
    matvec = _check_callable(matvec, "matvec")
    if not isinstance(symmetric, (bool, np.bool_)):
        raise TypeError(f"symmetric must be True or False, got {type(symmetric).__name__} {symmetric!r}")
    symmetric = bool(symmetric)
    if not symmetric:
        if rmatvec is None:
            raise TypeError("rmatvec is required (a callable returning A.T @ X) unless symmetric=True")
        _check_callable(rmatvec, "rmatvec")
    elif rmatvec is not None:
        _check_callable(rmatvec, "rmatvec")
    if not isinstance(tree, ClusterTree):
        raise TypeError(f"tree must be a hssalg.ClusterTree, got {type(tree).__name__}")
    rank = check_optional_rank(rank, "rank")
    max_rank = check_optional_rank(max_rank, "max_rank")
    # a tolerance of 0 would ask for an exact match that rounding never reaches
    rtol = check_tolerance(rtol, "rtol", allow_zero=rank is not None)
    oversampling = check_positive_int(oversampling, "oversampling", minimum=0)
    n_probes = check_positive_int(n_probes, "n_probes", minimum=0 if rank is not None else 1)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TypeError(f"seed must be an integer or None, got {type(seed).__name__} {seed!r}")
    n = tree.n
    if max_samples is None:
        max_samples = n
    else:
        max_samples = min(n, check_positive_int(max_samples, "max_samples"))

    rng = np.random.default_rng(seed)
    bb = _BlackBox(matvec, rmatvec, tree, symmetric)
    sym_tol = max(1e-6, 10.0 * rtol)

    def sketch(s_new, Om=None, Y=None, Ps=None, Z=None, extra=None):
        """Grow the sketches to s_new columns (probes X, A X may be recycled into Omega)."""
        s_old = 0 if Om is None else Om.shape[1]
        parts_om, parts_y = ([] if Om is None else [Om]), ([] if Y is None else [Y])
        if extra is not None and s_old < s_new:
            X, AX = extra
            t = min(X.shape[1], s_new - s_old)
            parts_om.append(X[:, :t])
            parts_y.append(AX[:, :t])
            s_old += t
        if s_old < s_new:
            Xn = rng.standard_normal((n, s_new - s_old))
            parts_om.append(Xn)
            parts_y.append(bb.forward(Xn))
        Om, Y = np.hstack(parts_om), np.hstack(parts_y)
        if symmetric:
            return Om, Y, Om, Y
        ps_old = 0 if Ps is None else Ps.shape[1]
        if ps_old < s_new:
            Xn = rng.standard_normal((n, s_new - ps_old))
            Ps = Xn if Ps is None else np.hstack([Ps, Xn])
            Zn = bb.adjoint(Xn)
            Z = Zn if Z is None else np.hstack([Z, Zn])
        return Om, Y, Ps, Z

    if rank is not None:
        k = rank if max_rank is None else min(rank, max_rank)
        s = _fixed_sample_size(tree, k, oversampling)
        Om, Y, Ps, Z = sketch(s)
        if symmetric:
            _check_symmetry(Om, Y, sym_tol)
        # directions below a few ulps of ||A||_F carry nothing: the rank is an upper bound
        norm_a = np.linalg.norm(Y) / np.sqrt(max(s, 1))
        rule = _RankRule(k, None, oversampling, 16 * np.finfo(np.float64).eps * norm_a)
        H = _compress(tree, Om, Y, Ps, Z, symmetric, rule)
        err = _estimate_error(H, bb, rng, n_probes)[0] if n_probes else None
        info = MatvecInfo(bb.n_matvecs, bb.n_rmatvecs, err, s, 1, True)
        return H, info

    # tolerance mode: room for the leaf blocks (base) plus an excess that doubles each round
    base = int(tree.sizes[tree.leaves].max()) if tree.n_nodes > 1 else n
    s = min(max_samples, base + 2 * max(oversampling, 8))

    def grow(s, wanted):
        return min(max_samples, max(base + 2 * (s - base), wanted))

    Om = Y = Ps = Z = None
    extra = None
    n_rounds = 0
    budget_nodes = max(1, 2 * (tree.n_nodes - 1))
    while True:
        n_rounds += 1
        Om, Y, Ps, Z = sketch(s, Om, Y, Ps, Z, extra)
        if symmetric and n_rounds == 1:
            _check_symmetry(Om, Y, sym_tol)
        # ||A||_F ~ ||A Omega||_F / sqrt(s); each node may drop its share of rtol ||A||_F
        norm_a = np.linalg.norm(Y) / np.sqrt(Om.shape[1])
        budget = _SAFETY * rtol * norm_a / np.sqrt(budget_nodes)
        rule = _RankRule(None, max_rank, oversampling if s < n else 0, budget)
        H = _compress(tree, Om, Y, Ps, Z, symmetric, rule)
        at_cap = s >= max_samples
        if rule.saturated and not at_cap:
            extra = None
            s = grow(s, rule.wanted)
            continue
        err, X, AX = _estimate_error(H, bb, rng, n_probes)
        if err <= rtol or norm_a == 0.0:
            return H, MatvecInfo(bb.n_matvecs, bb.n_rmatvecs, err, s, n_rounds, True)
        if at_cap or (max_rank is not None and not rule.saturated and int(H.max_rank) >= max_rank):
            why = (f"max_samples = {max_samples} was reached" if at_cap else
                   f"max_rank = {max_rank} limits the ranks")
            warnings.warn(f"from_matvec: estimated relative error {err:.2e} does not meet rtol = {rtol:.1e}; "
                          f"{why} (sketch of {s} columns)", RuntimeWarning, stacklevel=2)
            return H, MatvecInfo(bb.n_matvecs, bb.n_rmatvecs, err, s, n_rounds, False)
        extra = (X, AX)
        s = grow(s, 0)
