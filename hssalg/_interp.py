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

import numpy as np

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


def unpack_leaf(packed, m):
    """The symmetric (m, m) block whose lower triangle is packed by rows in ``packed``."""
    out = np.empty((m, m), dtype=packed.dtype)
    rows, cols = np.tril_indices(m)
    out[rows, cols] = packed
    out[cols, rows] = packed
    return out


def pack_leaf(D):
    """The lower triangle of a square block, packed by rows."""
    return D[np.tril_indices(D.shape[0])]


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
