"""HSS arithmetic on one cluster tree: sums, scalings, shifts, products, recompression.

Every function returns a new :class:`~hssalg.HSSMatrix` on the tree of its
operands and works on the generators only; nothing of size n x n is formed.
Notation as in HSS_PRIMER.md: leaf generators D_i, U_i, V_i; transfers R_i, W_i
(stored on the child); couplings B12_i, B21_i of the children a, b of node i;
U_i, V_i of an inner node denote the nested bases [U_a R_a; U_b R_b] and
[V_a W_a; V_b W_b], never formed.

Sum (fact P5)
    A +- C has the nested bases [U^A_i, U^C_i] and [V^A_i, V^C_i]: transfers
    and couplings are block diagonal, blockdiag(R^A, R^C) and
    blockdiag(B^A, +-B^C), and D = D^A +- D^C. Exact; ranks add.

Product (fact P5), derived from the block rows and columns of P = A C
    P(i, i^c) = A(i, i) C(i, i^c) + A(i, i^c) C(i^c, i^c) lies in the span of
    U^P_i = [U^A_i, A(i, i) U^C_i], and likewise P(i^c, i) in the row span of
    V^P_i = [C(i, i)^T V^A_i, V^C_i]. With two sweeps,

    * up:   T_i = (V^A_i)^T U^C_i, so T_i = V^A_i^T U^C_i at a leaf and
      T_i = W^A_a^T T_a R^C_a + W^A_b^T T_b R^C_b above;
    * down: F_i with A(i, i^c) C(i^c, i) = U^A_i F_i (V^C_i)^T, so F = 0 (empty) at
      the root and F_a = B12^A T_b B21^C + R^A_a F_i (W^C_a)^T for the left child a
      (a and b, B12 and B21 exchanged for the right child),

    expanding A(a, a) U^C_a R^C_a + A(a, b) U^C_b R^C_b (the rows a of
    A(i, i) U^C_i) and using A(a, b) = U^A_a B12^A (V^A_b)^T gives the generators

    * leaves: U = [U^A, D^A U^C], V = [(D^C)^T V^A, V^C], D = D^A D^C + U^A F (V^C)^T;
    * R_a = [[R^A_a, B12^A T_b R^C_b], [0, R^C_a]],
      W_a = [[W^A_a, 0], [(B21^C)^T T_b^T W^A_b, W^C_a]];
    * B12 = [[B12^A, R^A_a F_i (W^C_b)^T], [0, B12^C]], and B21 likewise with a, b
      exchanged.

    Exact; row ranks kU^A + kU^C, column ranks kV^A + kV^C. O(n (m^2 + m k + k^3 / m)).

Recompression (Xia, Chandrasekaran, Gu, Li 2010; the same two passes as the
HSS recompression of hm-toolbox)
    1. Bottom up, orthonormalise: QR of every leaf basis, U_i = Q_i S_i, then QR of
       the stacked [S_a R_a; S_b R_b] at each inner node; the triangular factors
       move into the parent's transfers and into the couplings
       (B12 <- S^U_a B12 (S^V_b)^T). The matrix is unchanged.
    2. Top down, truncate: with orthonormal bases the off-diagonal block row
       A(a, a^c) = U_a [B12 V_b^T, R_a Phi_i] has the singular values of the small
       matrix G_a = [B12, R_a Sigma_i] (Sigma_i: the kept singular values of the
       parent's block row), at most k x 2k. Its truncated SVD gives an orthonormal
       X_a; the new basis is U_a X_a (X_a^T moves into R_a and the couplings, X_a
       into the children's transfers or the leaf U). Columns likewise with V, W.

    Each truncation is an orthogonal projection that drops singular values not
    above ``max(rtol * sigma_1, atol)`` of one block row or column of the matrix
    as compressed so far (sigma_1: that block's largest), as in
    :func:`~hssalg.construct.from_dense`. Over the nodes of one level the dropped
    parts are orthogonal, and at most k values per block are dropped, so to
    first order one pass changes the matrix by

        ||H - H'||_F <= 2 L (sqrt(k) rtol ||H||_F + sqrt(N k) atol)

    for depth L, rank k and at most N nodes per level (rows and columns give the
    factor 2).

    3. Repeat 1-2 until a pass drops nothing. One pass is not idempotent by
       itself: a node decides on its block row before its sibling's column
       truncation and its children's truncations shrink that block, so singular
       values just above the threshold can fall below it in a second pass. The
       loop ends because every pass that drops something lowers the total rank;
       two passes are the rule (when nothing is dropped, one), and on random
       products truncated at rtol = 0.1 up to a dozen were seen. The last pass
       only rotates the bases, so the result has orthonormal bases and
       recompressing it again changes no rank and the matrix only by roundoff.
       The error bound above holds for each pass that drops something;
       measured totals stay below a tenth of the one-pass bound.
"""

import functools
import numbers

import numpy as np
from scipy.linalg import lapack as _lapack

from . import _layout
from ._validation import check_nonnegative, check_optional_rank, check_tolerance
from .matrix import HSSMatrix

__all__ = ["add", "subtract", "scale", "shift", "multiply", "recompress"]


# -- validation -------------------------------------------------------------------------

def _check_hss(H, name):
    if not isinstance(H, HSSMatrix):
        raise TypeError(f"{name} must be a hssalg.HSSMatrix, got {type(H).__name__}")
    return H


def _check_pair(H, G):
    _check_hss(H, "H")
    _check_hss(G, "G")
    if not H.tree.same_as(G.tree):
        raise ValueError(f"H and G are on different cluster trees (H: {H.tree!r}, G: {G.tree!r}); "
                         "HSS arithmetic needs both operands on the same tree")


def _check_scalar(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


# -- generators as per-node blocks ---------------------------------------------------------

def _blocks(H, dtype):
    """Per-node generator blocks of H in its materialised orientation.

    Returns
    -------
    g : dict
        kind -> list of length n_nodes of 2-D arrays (zero-size where a node has
        no generator of that kind), views of one buffer converted to ``dtype``.
    kU, kV : (n_nodes,) int64 arrays
        Row and column ranks.
    """
    tree = H.tree
    bufs, offs = H.generator_buffers()
    kU, kV = H.row_ranks, H.col_ranks
    shapes = _layout.block_shapes(tree, kU, kV)
    g = {}
    for kind in _layout.KINDS:
        buf = np.asarray(bufs[kind], dtype=dtype)
        off = offs[kind].tolist()          # Python ints: numpy scalars make this loop slow
        rows, cols = (x.tolist() for x in shapes[kind])
        g[kind] = [buf[off[i]:off[i + 1]].reshape(rows[i], cols[i]) for i in range(tree.n_nodes)]
    return g, np.asarray(kU, dtype=np.int64), np.asarray(kV, dtype=np.int64)


def _assemble(tree, kU, kV, g, dtype):
    """HSSMatrix from per-node blocks (every node listed, zero-size where absent)."""
    kU = np.asarray(kU, dtype=np.int64).copy()
    kV = np.asarray(kV, dtype=np.int64).copy()
    kU[0] = kV[0] = 0
    shapes = _layout.block_shapes(tree, kU, kV)
    offs = _layout.offsets(tree, kU, kV)
    bufs = {}
    for kind in _layout.KINDS:
        rows, cols = (x.tolist() for x in shapes[kind])
        parts = []
        for i, blk in enumerate(g[kind]):
            if rows[i] == 0 or cols[i] == 0:
                continue
            if blk.shape != (rows[i], cols[i]):  # an internal inconsistency, never the caller's
                raise AssertionError(f"{kind}[{i}] has shape {blk.shape}, layout wants {(rows[i], cols[i])}")
            parts.append(blk.ravel())
        buf = np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype)
        bufs[kind] = buf
    return HSSMatrix(tree, kU, kV, bufs, _offsets=offs)


def _blockdiag(A, B):
    out = np.zeros((A.shape[0] + B.shape[0], A.shape[1] + B.shape[1]), dtype=np.result_type(A, B))
    out[:A.shape[0], :A.shape[1]] = A
    out[A.shape[0]:, A.shape[1]:] = B
    return out


def _block2(A11, A12, A22):
    """[[A11, A12], [0, A22]]."""
    r1, c1 = A11.shape
    out = np.zeros((r1 + A22.shape[0], c1 + A22.shape[1]), dtype=np.result_type(A11, A12, A22))
    out[:r1, :c1] = A11
    out[:r1, c1:] = A12
    out[r1:, c1:] = A22
    return out


def _block2_lower(A11, A21, A22):
    """[[A11, 0], [A21, A22]]."""
    r1, c1 = A11.shape
    out = np.zeros((r1 + A22.shape[0], c1 + A22.shape[1]), dtype=np.result_type(A11, A21, A22))
    out[:r1, :c1] = A11
    out[r1:, :c1] = A21
    out[r1:, c1:] = A22
    return out


# -- sums, scalings, shifts ----------------------------------------------------------------

def _combine(H, G, sign):
    _check_pair(H, G)
    tree = H.tree
    dtype = np.result_type(H.dtype, G.dtype)
    gH, kUH, kVH = _blocks(H, dtype)
    gG, kUG, kVG = _blocks(G, dtype)
    is_leaf = tree.is_leaf
    out = {kind: [None] * tree.n_nodes for kind in _layout.KINDS}
    for i in range(tree.n_nodes):
        if is_leaf[i]:
            out["D"][i] = gH["D"][i] + sign * gG["D"][i]
            out["U"][i] = np.hstack([gH["U"][i], gG["U"][i]])
            out["V"][i] = np.hstack([gH["V"][i], gG["V"][i]])
        else:
            out["B12"][i] = _blockdiag(gH["B12"][i], sign * gG["B12"][i])
            out["B21"][i] = _blockdiag(gH["B21"][i], sign * gG["B21"][i])
        out["R"][i] = _blockdiag(gH["R"][i], gG["R"][i])
        out["W"][i] = _blockdiag(gH["W"][i], gG["W"][i])
    return _assemble(tree, kUH + kUG, kVH + kVG, out, dtype)


def add(H, G):
    """Exact sum H + G of two HSS matrices on the same tree (no truncation).

    The bases of the sum are the concatenated bases of the operands, so every
    node's ranks are the sums of the operands' ranks (fact P5); call
    :func:`recompress` to bring them back down.

    Parameters
    ----------
    H, G : HSSMatrix
        (n, n), on the same cluster tree (``H.tree.same_as(G.tree)``); either
        may be a transpose. float32 with float64 gives float64.

    Returns
    -------
    HSSMatrix
        (n, n), row ranks ``H.row_ranks + G.row_ranks`` and column ranks
        ``H.col_ranks + G.col_ranks``. Cost O(n (m + k)) for leaf size m and
        rank k.

    Raises
    ------
    TypeError
        If H or G is not an HSSMatrix.
    ValueError
        If the trees differ.
    """
    return _combine(H, G, 1.0)


def subtract(H, G):
    """Exact difference H - G of two HSS matrices on the same tree (no truncation).

    Same as :func:`add` with the couplings and diagonal blocks of G negated.

    Parameters
    ----------
    H, G : HSSMatrix
        (n, n), on the same cluster tree.

    Returns
    -------
    HSSMatrix
        (n, n), ranks the sums of the operands' ranks.
    """
    return _combine(H, G, -1.0)


def scale(H, alpha):
    """alpha * H: the couplings B12, B21 and the blocks D are scaled, the bases shared.

    Parameters
    ----------
    H : HSSMatrix
        (n, n).
    alpha : float
        Finite real scalar.

    Returns
    -------
    HSSMatrix
        (n, n), dtype and ranks of H. Cost O(n m).
    """
    _check_hss(H, "H")
    alpha = _check_scalar(alpha, "alpha")
    bufs, offs = H.generator_buffers()
    bufs = dict(bufs)
    for kind in ("D", "B12", "B21"):
        with np.errstate(over="ignore", invalid="ignore"):  # reported below, naming the generator
            b = (bufs[kind] * alpha).astype(H.dtype, copy=False)
            # one sum clears the common case; a sum can overflow where no entry does
            bad = not np.isfinite(np.sum(b)) and not np.all(np.isfinite(b))
        bufs[kind] = b
        if bad:
            raise OverflowError(f"alpha = {alpha:g} times the {kind} generators overflows {H.dtype}")
    return HSSMatrix(H.tree, H.row_ranks, H.col_ranks, bufs, _offsets=offs)


def shift(H, sigma):
    """H + sigma I: sigma is added to the diagonal of every leaf block D.

    Parameters
    ----------
    H : HSSMatrix
        (n, n).
    sigma : float
        Finite real scalar.

    Returns
    -------
    HSSMatrix
        (n, n), dtype and ranks of H. Cost O(n m).
    """
    _check_hss(H, "H")
    sigma = _check_scalar(sigma, "sigma")
    tree = H.tree
    bufs, offs = H.generator_buffers()
    bufs = dict(bufs)
    leaves = tree.leaves
    m = tree.sizes[leaves]
    # entry (j, j) of a row-major m x m block sits at j * (m + 1)
    local = np.arange(tree.n) - np.repeat(tree.start[leaves], m)
    idx = np.repeat(offs["D"][leaves], m) + local * (np.repeat(m, m) + 1)
    D = np.array(bufs["D"], copy=True)
    D[idx] += sigma
    bufs["D"] = D
    return HSSMatrix(tree, H.row_ranks, H.col_ranks, bufs, _offsets=offs)


# -- product ------------------------------------------------------------------------------

def multiply(H, G):
    """Exact product H @ G of two HSS matrices on the same tree, by tree sweeps.

    No dense matrix is formed: an upsweep computes T_i = (V^H_i)^T U^G_i and a
    downsweep the compressed far-field products F_i; the generators of the
    product follow from them (see the module docstring for the derivation).

    Parameters
    ----------
    H, G : HSSMatrix
        (n, n), on the same cluster tree; either may be a transpose. float32
        with float64 gives float64.

    Returns
    -------
    HSSMatrix
        (n, n), row ranks ``H.row_ranks + G.row_ranks`` and column ranks
        ``H.col_ranks + G.col_ranks`` (fact P5), not truncated; call
        :func:`recompress` to reduce them. Cost O(n (m^2 + m k + k^3 / m)) for
        leaf size m and rank k (the leaf products D^H D^G dominate when k < m).

    Raises
    ------
    TypeError
        If H or G is not an HSSMatrix.
    ValueError
        If the trees differ.
    """
    _check_pair(H, G)
    tree = H.tree
    dtype = np.result_type(H.dtype, G.dtype)
    A, kUA, kVA = _blocks(H, dtype)
    C, kUC, kVC = _blocks(G, dtype)
    left, right, level_ptr = tree.left, tree.right, tree.level_ptr
    n_nodes = tree.n_nodes
    depth = tree.depth

    # upsweep: T_i = (V^A_i)^T U^C_i
    T = [None] * n_nodes
    for lvl in range(depth, 0, -1):
        for i in range(level_ptr[lvl], level_ptr[lvl + 1]):
            a = left[i]
            if a < 0:
                T[i] = A["V"][i].T @ C["U"][i]
            else:
                b = right[i]
                T[i] = A["W"][a].T @ T[a] @ C["R"][a] + A["W"][b].T @ T[b] @ C["R"][b]

    out = {kind: [None] * n_nodes for kind in _layout.KINDS}
    out["R"][0] = np.zeros((0, 0), dtype)
    out["W"][0] = np.zeros((0, 0), dtype)
    # downsweep: A(i, i^c) C(i^c, i) = U^A_i F_i (V^C_i)^T
    F = [None] * n_nodes
    F[0] = np.zeros((0, 0), dtype)
    for lvl in range(depth + 1):
        for i in range(level_ptr[lvl], level_ptr[lvl + 1]):
            a = left[i]
            if a < 0:
                Ua, Va, DA = A["U"][i], A["V"][i], A["D"][i]
                Uc, Vc, DC = C["U"][i], C["V"][i], C["D"][i]
                out["U"][i] = np.hstack([Ua, DA @ Uc])
                out["V"][i] = np.hstack([DC.T @ Va, Vc])
                out["D"][i] = DA @ DC + (Ua @ F[i]) @ Vc.T
                continue
            b = right[i]
            B12A, B21A, B12C, B21C = A["B12"][i], A["B21"][i], C["B12"][i], C["B21"][i]
            RAa, RAb, WCa, WCb = A["R"][a], A["R"][b], C["W"][a], C["W"][b]
            RF_a = RAa @ F[i]
            RF_b = RAb @ F[i]
            F[a] = B12A @ T[b] @ B21C + RF_a @ WCa.T
            F[b] = B21A @ T[a] @ B12C + RF_b @ WCb.T
            out["B12"][i] = _block2(B12A, RF_a @ WCb.T, B12C)
            out["B21"][i] = _block2(B21A, RF_b @ WCa.T, B21C)
            out["R"][a] = _block2(RAa, B12A @ T[b] @ C["R"][b], C["R"][a])
            out["R"][b] = _block2(RAb, B21A @ T[a] @ C["R"][a], C["R"][b])
            out["W"][a] = _block2_lower(A["W"][a], B21C.T @ T[b].T @ A["W"][b], WCa)
            out["W"][b] = _block2_lower(A["W"][b], B12C.T @ T[a].T @ A["W"][a], WCb)
    return _assemble(tree, kUA + kUC, kVA + kVC, out, dtype)


# -- recompression ------------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _strict_lower(q, c):
    return np.tri(q, c, -1, dtype=bool)


def _qr(M):
    """Economic QR of a float64 matrix, M = Q S with Q (r, min(r, c)) orthonormal.

    LAPACK geqrf + orgqr directly: the blocks are tiny and scipy.linalg.qr's
    wrapper costs several times the factorisation there.
    """
    r, c = M.shape
    q = min(r, c)
    if q == 0:
        return np.zeros((r, 0)), np.zeros((0, c))
    qr, tau, _, info = _lapack.dgeqrf(M)
    if info != 0:  # only an illegal argument can cause this: a bug, not bad data
        raise RuntimeError(f"LAPACK dgeqrf failed with info = {info} on a {r} x {c} block")
    S = qr[:q].copy()             # below the diagonal qr holds the reflectors orgqr needs
    S[_strict_lower(q, c)] = 0.0
    Q, _, info = _lapack.dorgqr(qr[:, :q], tau)
    if info != 0:
        raise RuntimeError(f"LAPACK dorgqr failed with info = {info} on a {r} x {q} block")
    return Q, S


def _left_svd(G):
    """Left singular vectors X (r, min(r, c)) and values s of a small float64 matrix G (r, c), r, c >= 1."""
    X, s, _, info = _lapack.dgesdd(G, compute_uv=1, full_matrices=0)
    if info > 0:  # gesdd can fail to converge where the slower gesvd does not
        X, s, _, info = _lapack.dgesvd(G, compute_uv=1, full_matrices=0)
    if info != 0:
        r, c = G.shape
        raise np.linalg.LinAlgError(f"SVD of a {r} x {c} block did not converge (LAPACK info = {info})")
    return X, s


def _truncated_left(G, rtol, atol, max_rank):
    """Kept left singular vectors X (r, k) and values s (k,) of a small float64 matrix G (r, c)."""
    r, c = G.shape
    if r == 0 or c == 0:
        return np.zeros((r, 0)), np.zeros(0)
    X, s = _left_svd(G)
    if s[0] == 0.0:
        return np.zeros((r, 0)), np.zeros(0)
    k = int(np.count_nonzero(s > max(rtol * s[0], atol)))
    if max_rank is not None:
        k = min(k, max_rank)
    return X[:, :k], s[:k]


def _orthonormalise(tree, g):
    """Bottom-up pass: orthonormal leaf bases and stacked transfers; g is updated in place."""
    left, right, level_ptr = tree.left, tree.right, tree.level_ptr
    SU, SV = [None] * tree.n_nodes, [None] * tree.n_nodes
    for lvl in range(tree.depth, -1, -1):
        for i in range(level_ptr[lvl], level_ptr[lvl + 1]):
            a = left[i]
            if a >= 0:
                b = right[i]
                # the children's triangular factors move into the couplings ...
                g["B12"][i] = SU[a] @ g["B12"][i] @ SV[b].T
                g["B21"][i] = SU[b] @ g["B21"][i] @ SV[a].T
            if i == 0:
                if a >= 0:  # the root's children keep zero-size transfers, with their new row counts
                    for c in (a, b):
                        g["R"][c] = SU[c] @ g["R"][c]
                        g["W"][c] = SV[c] @ g["W"][c]
                continue
            if a < 0:
                g["U"][i], SU[i] = _qr(g["U"][i])
                g["V"][i], SV[i] = _qr(g["V"][i])
                continue
            # ... and into the stacked transfers, whose QR gives the node's factor
            ra = SU[a].shape[0]
            Q, SU[i] = _qr(np.vstack([SU[a] @ g["R"][a], SU[b] @ g["R"][b]]))
            g["R"][a], g["R"][b] = Q[:ra], Q[ra:]
            ra = SV[a].shape[0]
            Q, SV[i] = _qr(np.vstack([SV[a] @ g["W"][a], SV[b] @ g["W"][b]]))
            g["W"][a], g["W"][b] = Q[:ra], Q[ra:]
    return SU, SV


def _truncate(tree, g, rtol, atol, max_rank):
    """Top-down pass on orthonormalised blocks g (updated in place).

    Returns
    -------
    kU, kV : (n_nodes,) int64 arrays
        The new ranks.
    truncated : bool
        Whether any basis lost a direction (a kept set smaller than the basis).
    """
    # X*: kept left singular vectors of each node's block row / column in the current basis,
    # s*: the kept singular values (empty at the root)
    left, right, level_ptr = tree.left, tree.right, tree.level_ptr
    n_nodes = tree.n_nodes
    XU, XV = [None] * n_nodes, [None] * n_nodes
    sU, sV = [None] * n_nodes, [None] * n_nodes
    XU[0] = XV[0] = np.zeros((0, 0))
    sU[0] = sV[0] = np.zeros(0)
    truncated = False
    for lvl in range(tree.depth + 1):
        for i in range(level_ptr[lvl], level_ptr[lvl + 1]):
            a = left[i]
            if a < 0:
                g["U"][i] = g["U"][i] @ XU[i]
                g["V"][i] = g["V"][i] @ XV[i]
                continue
            b = right[i]
            Ra, Rb = g["R"][a] @ XU[i], g["R"][b] @ XU[i]
            Wa, Wb = g["W"][a] @ XV[i], g["W"][b] @ XV[i]
            B12, B21 = g["B12"][i], g["B21"][i]
            XU[a], sU[a] = _truncated_left(np.concatenate((B12, Ra * sU[i]), axis=1), rtol, atol, max_rank)
            XU[b], sU[b] = _truncated_left(np.concatenate((B21, Rb * sU[i]), axis=1), rtol, atol, max_rank)
            XV[a], sV[a] = _truncated_left(np.concatenate((B21.T, Wa * sV[i]), axis=1), rtol, atol, max_rank)
            XV[b], sV[b] = _truncated_left(np.concatenate((B12.T, Wb * sV[i]), axis=1), rtol, atol, max_rank)
            truncated = truncated or any(X.shape[1] < X.shape[0] for X in (XU[a], XU[b], XV[a], XV[b]))
            g["B12"][i] = XU[a].T @ B12 @ XV[b]
            g["B21"][i] = XU[b].T @ B21 @ XV[a]
            g["R"][a], g["R"][b] = XU[a].T @ Ra, XU[b].T @ Rb
            g["W"][a], g["W"][b] = XV[a].T @ Wa, XV[b].T @ Wb
    kU = np.array([x.shape[1] for x in XU], dtype=np.int64)
    kV = np.array([x.shape[1] for x in XV], dtype=np.int64)
    return kU, kV, truncated


def recompress(H, rtol=1e-10, atol=0.0, max_rank=None):
    """Equivalent HSS matrix with the smallest ranks the tolerances allow.

    Passes of orthonormalisation (bottom up) and truncation (top down, SVDs of
    small k x 2k matrices) as in Xia et al. 2010; see the module docstring. A
    truncation changes the block rows and columns that the other nodes'
    decisions were based on, so the passes repeat until one drops nothing
    (usually the second; at most the total rank). The result therefore has
    orthonormal bases (like :func:`~hssalg.construct.from_dense`) and is a fixed
    point: no rank ever increases, and a second call with the same tolerances
    changes neither a rank nor the matrix beyond roundoff.

    Parameters
    ----------
    H : HSSMatrix
        (n, n); may be a transpose.
    rtol : float in [0, 1]
        Singular values of a node's off-diagonal block row (column) not above
        ``rtol`` times the largest one of that block are dropped, as in
        ``from_dense``. ``rtol = 1`` drops everything: the result is the block
        diagonal of the leaf blocks D.
    atol : float >= 0
        Singular values not above ``atol`` are dropped as well.
    max_rank : int >= 0, optional
        At most this many singular values are kept per node and side.

    Returns
    -------
    HSSMatrix
        (n, n), dtype of H (the work is done in float64), in the storage form
        of H: orthonormal bases for an explicit H; for one in interpolative
        storage (``from_kernel``) the truncated orthonormal bases are
        rewritten as interpolative ones (:meth:`HSSMatrix.to_interpolative`,
        same matrix up to rounding), which keeps the memory low; the fixed
        point property then holds up to that rounding. (The two sides of a
        symmetric matrix are truncated separately and round differently, so
        the symmetric form becomes the general one.) Every pass that drops
        something changes the matrix by at most, to first order,
        ``2 L (sqrt(k) rtol ||H||_F + sqrt(N k) atol)`` in the Frobenius norm
        for depth L, rank k and at most N nodes per level; in practice the total
        stays close to the largest dropped singular value. Nothing is
        guaranteed for the truncation forced by ``max_rank``. Cost per pass
        O(n k^2 (1 + k / m)) for leaf size m and rank k (QRs of the leaf bases,
        SVDs of k x 2k blocks per node); memory O(size of the generators);
        nothing of size n x n is formed.
    """
    _check_hss(H, "H")
    rtol = check_tolerance(rtol, "rtol")
    atol = check_nonnegative(atol, "atol")
    max_rank = check_optional_rank(max_rank)
    tree = H.tree
    g, kU, kV = _blocks(H, np.float64)
    g = {kind: list(blocks) for kind, blocks in g.items()}
    if tree.n_nodes == 1:
        out = _assemble(tree, [0], [0], g, H.dtype)
    else:
        truncated = True
        while truncated:  # each pass that truncates lowers the total rank: at most sum(k) passes
            _orthonormalise(tree, g)
            kU, kV, truncated = _truncate(tree, g, rtol, atol, max_rank)
        out = _assemble(tree, kU, kV, g, H.dtype)
    # an interpolative matrix stays one: orthonormal bases would need about twice its memory
    return out if H.storage == "explicit" else out.to_interpolative()
