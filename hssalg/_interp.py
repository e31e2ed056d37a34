"""The interpolative storage form of an HSSMatrix: conversions and products.

In this form (see :mod:`hssalg._layout`) the bases are interpolation matrices
``P_i = Pi_i [I; T_i]`` of which only ``T_i`` and the row order are stored,
and a symmetric matrix keeps its leaf blocks as packed lower triangles and no
B21. Products run on that storage directly (:mod:`hssalg._kernels.interp`).
Every other operation (factorisations, arithmetic, export of the
generators) reads the explicit form, which :func:`to_explicit` materialises:
the same matrix with U = P of every leaf and R = the row blocks of every
inner node's P. Its bases are not orthonormal; nothing that reads the
explicit form assumes they are (recompression orthonormalises first).
"""

import functools

import numpy as np
import scipy.linalg as sla

from . import _layout
from ._kernels import interp as _kinterp
from ._kernels import matvec as _matvec

FORMS = ("explicit", "interpolative", "interpolative-symmetric")


def expand(T, perm, k):
    """The interpolation matrix P (c, k) with P[perm[:k]] = I and P[perm[k:]] = T.

    Parameters
    ----------
    T : (c - k, k) array
    perm : (c,) integer array
    k : int

    Returns
    -------
    P : (c, k) ndarray
    """
    c = perm.shape[0]
    P = np.zeros((c, k), dtype=T.dtype)
    P[perm[:k], np.arange(k)] = 1.0
    P[perm[k:]] = T
    return P


def compact(P, skel):
    """Row order and non-identity rows of an interpolation matrix P (c, k) with P[skel] = I.

    Returns
    -------
    perm : (c,) int32 array, ``skel`` first, then the other rows in increasing order
    T : (c - k, k) ndarray, ``P[perm[k:]]``
    """
    c = P.shape[0]
    rest = np.ones(c, dtype=bool)
    rest[skel] = False
    others = np.flatnonzero(rest)
    perm = np.concatenate([np.asarray(skel, dtype=np.int64), others]).astype(np.int32)
    return perm, np.ascontiguousarray(P[others])


def block(bufs, offs, kind, node, rows, cols):
    """Node ``node``'s block of ``kind`` as a (rows, cols) view."""
    return bufs[kind][offs[kind][node]:offs[kind][node + 1]].reshape(rows, cols)


@functools.lru_cache(maxsize=16)
def _tril(m):
    """Row and column indices of the lower triangle of an (m, m) block, by rows (read-only, cached:
    every leaf of a tree has one of a few sizes, and computing them took 40% of :func:`to_explicit`)."""
    rows, cols = np.tril_indices(m)
    rows.setflags(write=False)
    cols.setflags(write=False)
    return rows, cols


def unpack_leaf(packed, m):
    """The symmetric (m, m) block whose lower triangle is packed by rows in ``packed``."""
    out = np.empty((m, m), dtype=packed.dtype)
    rows, cols = _tril(m)
    out[rows, cols] = packed
    out[cols, rows] = packed
    return out


def pack_leaf(D):
    """The lower triangle of a square block, packed by rows."""
    return D[_tril(D.shape[0])]


def to_explicit(tree, kU, kV, bufs, offs, symmetric):
    """Explicit-form buffers (kinds of ``_layout.KINDS``) of a matrix stored in interpolative form.

    Parameters
    ----------
    tree : ClusterTree
    kU, kV : (n_nodes,) int64 arrays
    bufs, offs : dict
        Buffers and offsets of the interpolative form.
    symmetric : bool
        Whether the form is the symmetric one (packed D, no B21, TV = TU).

    Returns
    -------
    dict
        kind -> new flat buffer of the explicit layout (``_layout.offsets``);
        a symmetric matrix shares U / V and R / W.
    """
    dtype = bufs["D"].dtype
    eoffs = _layout.offsets(tree, kU, kV)
    shapes = _layout.block_shapes(tree, kU, kV)
    left, right, sizes = tree.left, tree.right, tree.sizes
    out = {}
    if symmetric:
        D = np.empty(int(eoffs["D"][-1]), dtype=dtype)
        for i in tree.leaves:
            m = int(sizes[i])
            D[eoffs["D"][i]:eoffs["D"][i + 1]] = unpack_leaf(bufs["D"][offs["D"][i]:offs["D"][i + 1]], m).ravel()
        out["D"] = D
    else:
        out["D"] = bufs["D"]
    sides = (("U", "R", "TU", "pU", kU),) if symmetric else (("U", "R", "TU", "pU", kU), ("V", "W", "TV", "pV", kV))
    for basis, transfer, T_kind, p_kind, k in sides:
        Ub = np.zeros(int(eoffs[basis][-1]), dtype=dtype)
        Rb = np.zeros(int(eoffs[transfer][-1]), dtype=dtype)
        for i in range(1, tree.n_nodes):
            perm = bufs[p_kind][offs[p_kind][i]:offs[p_kind][i + 1]]
            ki = int(k[i])
            T = block(bufs, offs, T_kind, i, perm.shape[0] - ki, ki)
            P = expand(T, perm, ki)
            if left[i] < 0:
                Ub[eoffs[basis][i]:eoffs[basis][i + 1]] = P.ravel()
            else:
                a, b = left[i], right[i]
                ka = int(k[a])
                Rb[eoffs[transfer][a]:eoffs[transfer][a + 1]] = P[:ka].ravel()
                Rb[eoffs[transfer][b]:eoffs[transfer][b + 1]] = P[ka:].ravel()
        out[basis], out[transfer] = Ub, Rb
    out["B12"] = bufs["B12"]
    if symmetric:
        out["V"], out["W"] = out["U"], out["R"]
        rows, cols = shapes["B21"]
        B21 = np.empty(int(eoffs["B21"][-1]), dtype=dtype)
        for i in np.flatnonzero(rows * cols):
            B12 = block(bufs, offs, "B12", i, cols[i], rows[i])
            B21[eoffs["B21"][i]:eoffs["B21"][i + 1]] = B12.T.ravel()
        out["B21"] = B21
    else:
        out["B21"] = bufs["B21"]
    return out


def diagonal(tree, bufs, offs, symmetric):
    """(n,) diagonal in tree order, read from the leaf blocks of either form."""
    leaves = tree.leaves
    m = tree.sizes[leaves]
    local = np.arange(tree.n) - np.repeat(tree.start[leaves], m)
    if symmetric:
        # entry (j, j) of a packed lower triangle sits at j (j + 1) / 2 + j
        pos = local * (local + 1) // 2 + local
    else:
        pos = local * (np.repeat(m, m) + 1)
    return bufs["D"][np.repeat(offs["D"][leaves], m) + pos]


def apply(tree, kU, kV, bufs, offs, symmetric, transpose, X):
    """Y = A X, or A^T X when ``transpose``, for X (n, s) C-contiguous in tree order."""
    threads = _matvec.threads_for(*X.shape)
    b, o = bufs, offs
    if symmetric:
        # A^T = A; B_ba = B12^T
        return _matvec.run_parallel(_kinterp.apply, threads, tree.arrays, kU, kU,
                                    b["TU"], o["TU"], b["pU"], o["pU"], b["TU"], o["TU"], b["pU"], o["pU"],
                                    b["B12"], o["B12"], False, b["B12"], o["B12"], True,
                                    b["D"], o["D"], _kinterp.D_PACKED_SYMMETRIC, X)
    if not transpose:
        return _matvec.run_parallel(_kinterp.apply, threads, tree.arrays, kV, kU,
                                    b["TV"], o["TV"], b["pV"], o["pV"], b["TU"], o["TU"], b["pU"], o["pU"],
                                    b["B12"], o["B12"], False, b["B21"], o["B21"], False,
                                    b["D"], o["D"], _kinterp.D_AS_STORED, X)
    # A^T (a, b) = V_a B21^T U_b^T: the sides swap and the couplings are read transposed
    return _matvec.run_parallel(_kinterp.apply, threads, tree.arrays, kU, kV,
                                b["TU"], o["TU"], b["pU"], o["pU"], b["TV"], o["TV"], b["pV"], o["pV"],
                                b["B21"], o["B21"], True, b["B12"], o["B12"], True,
                                b["D"], o["D"], _kinterp.D_TRANSPOSED, X)


def _row_id(M):
    """Exact row interpolative decomposition M = P S of a (c, k) block.

    The skeleton rows are the pivots of a column-pivoted QR of M^T; its rank
    r is the number of pivots above ``max(c, k) eps`` times the largest (the
    rest is rounding), so a numerically rank-deficient basis loses columns.

    Returns
    -------
    perm : (c,) int32 array, the r skeleton rows first
    T : (c - r, r) ndarray, P[perm[r:]]
    S : (r, k) ndarray, the skeleton rows M[perm[:r]]
    """
    c, k = M.shape
    if c == 0 or k == 0:
        return np.arange(c, dtype=np.int32), np.zeros((c, 0)), np.zeros((0, k))
    _, R, piv = sla.qr(M.T, mode="economic", pivoting=True, check_finite=False)
    d = np.abs(np.diag(R))
    r = int(np.count_nonzero(d > max(c, k) * np.finfo(M.dtype).eps * d[0])) if d[0] > 0 else 0
    T = sla.solve_triangular(R[:r, :r], R[:r, r:], check_finite=False).T if r else np.zeros((c, 0))
    return piv.astype(np.int32), np.ascontiguousarray(T), np.ascontiguousarray(M[piv[:r]])


def _interp_side(tree, basis, transfer):
    """Interpolative form of one side's nested bases, bottom-up.

    Parameters
    ----------
    basis, transfer : lists (per node) of the explicit U (leaves) and R (non-root nodes)

    Returns
    -------
    perm, T : lists, the row order and T (its columns: the new rank) of every non-root node
    S : list, (k_new, k_old) factor of every non-root node: old basis = new basis @ S
    """
    n_nodes, left, right = tree.n_nodes, tree.left, tree.right
    perm, T, S = [None] * n_nodes, [None] * n_nodes, [None] * n_nodes
    for lvl in range(tree.depth, 0, -1):
        for i in range(tree.level_ptr[lvl], tree.level_ptr[lvl + 1]):
            if left[i] < 0:
                M = basis[i]
            else:
                a, b = left[i], right[i]
                M = np.vstack([S[a] @ transfer[a], S[b] @ transfer[b]])
            perm[i], T[i], S[i] = _row_id(M)
    return perm, T, S


def from_explicit(tree, g, symmetric):
    """Buffers of the interpolative form of the matrix with explicit per-node generators g.

    The same matrix up to rounding: every basis U = P S (P = Pi [I; T], S the
    skeleton rows of U) moves its factor S into the parent's stack and into
    the couplings, ``B12 <- S_a B12 S_b^T``.

    Parameters
    ----------
    tree : ClusterTree
    g : dict
        kind -> per-node list of blocks (``HSSMatrix.generators()``).
    symmetric : bool
        Whether U = V, R = W, B21 = B12^T and D = D^T hold exactly: the
        symmetric form is then returned.

    Returns
    -------
    kU, kV : (n_nodes,) int64 arrays
    bufs, offs : dict
        Buffers and offsets of the interpolative form (``_layout.INTERP_KINDS``).
    """
    n_nodes, left, right = tree.n_nodes, tree.left, tree.right
    dtype = np.float64 if all(b is None or b.dtype == np.float64 for b in g["D"]) else np.float32
    pU, TU, SU = _interp_side(tree, g["U"], g["R"])
    pV, TV, SV = (pU, TU, SU) if symmetric else _interp_side(tree, g["V"], g["W"])
    blocks = {kind: [None] * n_nodes for kind in _layout.INTERP_KINDS}
    for i in range(n_nodes):
        if left[i] < 0:
            blocks["D"][i] = pack_leaf(g["D"][i]) if symmetric else g["D"][i]
        else:
            a, b = left[i], right[i]
            blocks["B12"][i] = SU[a] @ g["B12"][i] @ SV[b].T
            if not symmetric:
                blocks["B21"][i] = SU[b] @ g["B21"][i] @ SV[a].T
    for i in range(1, n_nodes):
        blocks["TU"][i], blocks["pU"][i] = TU[i], pU[i]
        blocks["TV"][i], blocks["pV"][i] = TV[i], pV[i]
    return assemble(tree, blocks, symmetric, dtype)


def assemble(tree, blocks, symmetric, dtype=np.float64):
    """Flat buffers of the interpolative form from per-node blocks (the lists are consumed).

    Parameters
    ----------
    tree : ClusterTree
    blocks : dict
        kind of ``_layout.INTERP_KINDS`` -> per-node list (None where a node
        has no block; TV, pV and B21 are ignored in the symmetric form).
    symmetric : bool
    dtype : float64 or float32, of the float kinds

    Returns
    -------
    kU, kV : (n_nodes,) int64 arrays, the ranks: columns of each node's T
    bufs, offs : dict
        The buffers (TV, pV are TU, pU in the symmetric form) and their offsets.
    """
    n_nodes = tree.n_nodes
    kU = np.zeros(n_nodes, dtype=np.int64)
    for i in range(1, n_nodes):
        kU[i] = blocks["TU"][i].shape[1]
    kV = kU.copy()
    if not symmetric:
        for i in range(1, n_nodes):
            kV[i] = blocks["TV"][i].shape[1]
    shapes = _layout.interp_block_shapes(tree, kU, kV, symmetric)
    offs = _layout.interp_offsets(tree, kU, kV, symmetric)
    bufs = {}
    for kind in _layout.INTERP_KINDS:
        if symmetric and kind in ("TV", "pV"):
            continue
        rows, cols = shapes[kind]
        buf = np.empty(int(offs[kind][-1]), dtype=np.int32 if kind in ("pU", "pV") else dtype)
        for i in range(n_nodes):
            size = int(rows[i] * cols[i])
            if size == 0:
                continue
            blk = blocks[kind][i]
            if blk.size != size:             # an internal inconsistency, never the caller's
                raise AssertionError(f"{kind}[{i}] has shape {blk.shape}, layout wants {(rows[i], cols[i])}")
            buf[offs[kind][i]:offs[kind][i + 1]].reshape(blk.shape)[...] = blk
            blocks[kind][i] = None           # copied: the lists and buffers are never both whole
        bufs[kind] = buf
    if symmetric:
        bufs["TV"], bufs["pV"] = bufs["TU"], bufs["pU"]
    return kU, kV, bufs, offs


def is_exactly_symmetric(g):
    """Whether per-node generators g (``HSSMatrix.generators()``) have U = V, R = W,
    B21 = B12^T and symmetric D, exactly."""
    def same(x, y):
        return x is y or (x is None) == (y is None) and (x is None or np.array_equal(x, y))
    return (all(same(u, v) for u, v in zip(g["U"], g["V"]))
            and all(same(r, w) for r, w in zip(g["R"], g["W"]))
            and all(same(b, None if c is None else c.T) for b, c in zip(g["B12"], g["B21"]))
            and all(d is None or np.array_equal(d, d.T) for d in g["D"]))
