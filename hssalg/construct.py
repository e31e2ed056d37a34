"""Building HSS matrices: from generators and by compressing a dense matrix."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.linalg as sla
from numba import get_num_threads as _numba_threads
from threadpoolctl import threadpool_limits
from scipy.linalg.lapack import dgeqrf as _geqrf

from . import _from_kernel, _from_matvec, _layout
from ._from_kernel import KernelInfo
from ._from_matvec import MatvecInfo
from ._progress import Progress
from ._validation import (as_finite_array, check_dtype, check_nonnegative, check_optional_rank,
                          check_tolerance)
from .matrix import HSSMatrix
from .tree import ClusterTree

__all__ = ["from_generators", "from_dense", "from_kernel", "from_matvec", "KernelInfo", "MatvecInfo"]


def _check_tree(tree, name="tree"):
    if not isinstance(tree, ClusterTree):
        raise TypeError(f"{name} must be a hssalg.ClusterTree, got {type(tree).__name__}")
    return tree


# -- from generators -----------------------------------------------------------------

def _node_list(seq, name, n_nodes, required):
    if seq is None:
        if required:
            raise ValueError(f"{name} is required for a tree with {n_nodes} nodes")
        return [None] * n_nodes
    if isinstance(seq, np.ndarray) and seq.dtype != object:
        raise TypeError(f"{name} must be a sequence of per-node arrays of length {n_nodes} "
                        f"(None for nodes without one), got a single array of shape {seq.shape}")
    seq = list(seq)
    if len(seq) != n_nodes:
        raise ValueError(f"{name} must have one entry per tree node ({n_nodes}), got {len(seq)}")
    return seq


def from_generators(tree, D, U, V, R=None, W=None, B12=None, B21=None, dtype=None):
    """Assemble an :class:`HSSMatrix` from per-node generators.

    See :meth:`HSSMatrix.from_generators` for the parameters.
    """
    tree = _check_tree(tree)
    n_nodes = tree.n_nodes
    single = n_nodes == 1
    gens = {
        "D": _node_list(D, "D", n_nodes, True),
        "U": _node_list(U, "U", n_nodes, not single),
        "V": _node_list(V, "V", n_nodes, not single),
        "R": _node_list(R, "R", n_nodes, not single),
        "W": _node_list(W, "W", n_nodes, not single),
        "B12": _node_list(B12, "B12", n_nodes, not single),
        "B21": _node_list(B21, "B21", n_nodes, not single),
    }
    leaf = tree.is_leaf
    # which node carries which kind (the root has no U, V; its children no R, W)
    not_root = tree.parent >= 0
    carries = {"D": leaf, "U": leaf & not_root, "V": leaf & not_root, "R": tree.parent > 0,
               "W": tree.parent > 0, "B12": ~leaf, "B21": ~leaf}
    arrays = {}
    for kind, seq in gens.items():
        lst = []
        for i in range(n_nodes):
            if not carries[kind][i]:
                lst.append(None)
                continue
            if seq[i] is None:
                raise ValueError(f"{kind}[{i}] is missing: node {i} needs a {kind} generator")
            a = as_finite_array(seq[i], f"{kind}[{i}]", ndim=2)
            lst.append(a)
        arrays[kind] = lst
    if dtype is None:
        all_f32 = all(a.dtype == np.float32 for lst in arrays.values() for a in lst if a is not None)
        dtype = np.float32 if all_f32 else np.float64
    dtype = check_dtype(dtype)

    # ranks: leaves from U / V, inner nodes below the root from their children's R / W
    kU = np.zeros(n_nodes, dtype=np.int64)
    kV = np.zeros(n_nodes, dtype=np.int64)
    for i in np.flatnonzero(leaf & not_root):
        kU[i] = arrays["U"][i].shape[1]
        kV[i] = arrays["V"][i].shape[1]
    for i in np.flatnonzero(~leaf & not_root):
        kU[i] = arrays["R"][tree.left[i]].shape[1]
        kV[i] = arrays["W"][tree.left[i]].shape[1]
    shapes = _layout.block_shapes(tree, kU, kV)
    offs = _layout.offsets(tree, kU, kV)
    buffers = {}
    for kind in _layout.KINDS:
        rows, cols = shapes[kind]
        buf = np.empty(int(offs[kind][-1]), dtype=dtype)
        for i in range(n_nodes):
            a = arrays[kind][i]
            if a is None:
                continue
            if a.shape != (rows[i], cols[i]):
                raise ValueError(f"{kind}[{i}] must have shape ({rows[i]}, {cols[i]}) "
                                 f"(from the tree and the ranks), got {a.shape}")
            buf[offs[kind][i]:offs[kind][i + 1]] = a.ravel()
        buffers[kind] = buf
    return HSSMatrix(tree, kU, kV, buffers, _offsets=offs)


# -- from a dense matrix -------------------------------------------------------------

def _dominant_row_basis(T, rtol, atol, max_rank):
    """Orthonormal basis of the dominant row space of a tall matrix T (N x r).

    The row space of T is that of the triangular factor of its QR
    factorisation, so the SVD is taken of an r x r matrix: a Householder QR
    (LAPACK geqrf, on the array as given when it is Fortran-ordered) costs
    O(N r^2) and keeps singular values accurate down to eps * sigma_1, which a
    Gram matrix T^T T would not (it loses everything below sqrt(eps)).
    Singular values above ``max(rtol * sigma_1, atol)`` are kept, at most
    ``max_rank`` of them.

    Returns
    -------
    Q : (r, k) ndarray with orthonormal columns
    """
    N, r = T.shape
    if r == 0 or N == 0:
        return np.zeros((r, 0))
    if N > r:
        qr, _, _, info = _geqrf(T, lwork=max(1, 64 * r), overwrite_a=True)
        if info != 0:  # only an illegal argument can cause this: a bug, not bad data
            raise RuntimeError(f"LAPACK dgeqrf failed with info = {info} on a {N} x {r} block")
        T = np.triu(qr[:r])
    _, sigma, Vt = sla.svd(T, full_matrices=False, check_finite=False, lapack_driver="gesdd")
    if sigma.size == 0 or sigma[0] == 0.0:
        return np.zeros((r, 0))
    k = int(np.count_nonzero(sigma > max(rtol * sigma[0], atol)))
    if max_rank is not None:
        k = min(k, max_rank)
    return np.ascontiguousarray(Vt[:k].T)


def _outside_rows(M, s0, s1):
    """Rows of M outside s0:s1, as a Fortran-ordered copy (geqrf's layout)."""
    out = np.empty((M.shape[0] - (s1 - s0), M.shape[1]), order="F")
    out[:s0] = M[:s0]
    out[s0:] = M[s1:]
    return out


def from_dense(A, tree=None, leaf_size=64, rtol=1e-10, atol=0.0, max_rank=None, progress=False):
    """Compress a dense square matrix into HSS form.

    Bottom-up compression of Xia, Chandrasekaran, Gu and Li (2010): at each
    node the off-diagonal block row A(i, i^c) and block column A(i^c, i) -- for
    inner nodes in their already reduced form -- are compressed by a truncated
    SVD, and the reduced rows / columns are passed to the parent, which gives
    nested bases (U_i = [U_a R_a; U_b R_b]).

    The bases are **orthonormal** (leaf U, V have orthonormal columns and each
    stacked [R_a; R_b] is orthonormal), not interpolative: the truncation is
    then optimal for every block (SVD), the coupling matrices are the exact
    projections B = U_a^T A(a, b) V_b, and the ULV factorisation and
    recompression that build on this format need orthonormal bases to be
    backward stable. Interpolative bases pay off when entries are expensive,
    which is not the case for a matrix already in memory.

    Parameters
    ----------
    A : (n, n) array_like
        Finite, float64 or float32 (other numeric types become float64); the
        result has the dtype of A (the work is done in float64).
    tree : ClusterTree, optional
        Tree on the row and column indices; default
        ``ClusterTree.balanced(n, leaf_size)``. With a geometric tree the
        matrix is read in the tree's permuted order and products still take
        vectors in the original order.
    leaf_size : int
        Used only when ``tree`` is None.
    rtol : float in [0, 1]
        Singular values of a block row or column below ``rtol`` times its
        largest one are dropped. The error of the whole matrix is then about
        ``rtol * ||A||`` times a small factor growing with the depth.
    atol : float >= 0
        Singular values below ``atol`` are dropped as well.
    max_rank : int, optional
        Upper bound on every node rank.
    progress : bool
        Print a progress line on stderr.

    Returns
    -------
    HSSMatrix

    Notes
    -----
    Costs O(n^2 (m + k)) time for leaf size m and rank k, and reads the whole
    matrix; memory O(n^2) for the tree-ordered copy of A.
    """
    A = as_finite_array(A, "A", ndim=2)
    out_dtype = A.dtype
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be square, got shape {A.shape}")
    n = A.shape[0]
    if n == 0:
        raise ValueError("A must have at least one row, got shape (0, 0)")
    rtol = check_tolerance(rtol, "rtol")
    atol = check_nonnegative(atol, "atol")
    max_rank = check_optional_rank(max_rank)
    if tree is None:
        tree = ClusterTree.balanced(n, leaf_size)
    else:
        tree = _check_tree(tree)
        if tree.n != n:
            raise ValueError(f"tree has {tree.n} indices but A has {n} rows")
    perm = tree.perm
    if np.array_equal(perm, np.arange(n)):
        Ap = np.asarray(A, dtype=np.float64)
    else:
        Ap = np.asarray(A, dtype=np.float64)[np.ix_(perm, perm)]

    start, stop, left, right = tree.start, tree.stop, tree.left, tree.right
    gens = {kind: [None] * tree.n_nodes for kind in _layout.KINDS}
    # per live node: reduced rows  U_i^T A(i, :)  (kU x n), reduced columns  A(:, i) V_i  (n x kV),
    # and the explicit nested bases U_i (m_i x kU), V_i (m_i x kV)
    rows, cols, Ufull, Vfull = {}, {}, {}, {}

    def compress_leaf(i):
        s0, s1 = start[i], stop[i]
        out = {"D": (i, Ap[s0:s1, s0:s1])}
        if i == 0:
            return out
        # column space of the block row A(i, i^c) = row space of its transpose
        U = _dominant_row_basis(_outside_rows(Ap[s0:s1].T, s0, s1), rtol, atol, max_rank)
        V = _dominant_row_basis(_outside_rows(Ap[:, s0:s1], s0, s1), rtol, atol, max_rank)
        out.update(U=(i, U), V=(i, V))
        out["live"] = (i, U.T @ Ap[s0:s1], Ap[:, s0:s1] @ V, U, V)
        return out

    def compress_inner(i):
        a, b = left[i], right[i]
        # couplings of the two children: B = U_a^T A(a, b) V_b
        out = {"B12": (i, rows[a][:, start[b]:stop[b]] @ Vfull[b]),
               "B21": (i, rows[b][:, start[a]:stop[a]] @ Vfull[a])}
        if i == 0:
            return out
        s0, s1 = start[i], stop[i]
        stacked_rows = np.vstack([rows[a], rows[b]])
        stacked_cols = np.hstack([cols[a], cols[b]])
        Q = _dominant_row_basis(_outside_rows(stacked_rows.T, s0, s1), rtol, atol, max_rank)
        P = _dominant_row_basis(_outside_rows(stacked_cols, s0, s1), rtol, atol, max_rank)
        ka, kva = rows[a].shape[0], cols[a].shape[1]
        out["R"] = [(a, Q[:ka]), (b, Q[ka:])]
        out["W"] = [(a, P[:kva]), (b, P[kva:])]
        out["live"] = (i, Q.T @ stacked_rows, stacked_cols @ P,
                       np.vstack([Ufull[a] @ Q[:ka], Ufull[b] @ Q[ka:]]),
                       np.vstack([Vfull[a] @ P[:kva], Vfull[b] @ P[kva:]]))
        return out

    bar = Progress(tree.n_nodes, "from_dense", enabled=progress)
    workers = max(1, min(_numba_threads(), 8))
    # One BLAS thread per call and the nodes of a level spread over Python threads
    # (LAPACK releases the GIL): multithreaded BLAS on these tall, thin blocks gains
    # little on an idle machine and, with its spinning threads, loses 10-30x on a
    # busy one.
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        for lvl in range(tree.depth, -1, -1):
            ids = range(tree.level_ptr[lvl], tree.level_ptr[lvl + 1])
            work = lambda i: compress_leaf(i) if left[i] < 0 else compress_inner(i)  # noqa: E731
            results = list(pool.map(work, ids)) if len(ids) > 1 and workers > 1 else [work(i) for i in ids]
            for i, res in zip(ids, results):
                for kind, val in res.items():
                    if kind == "live":
                        node, r, c, U, V = val
                        rows[node], cols[node], Ufull[node], Vfull[node] = r, c, U, V
                    else:
                        for node, block in (val if isinstance(val, list) else [val]):
                            gens[kind][node] = block
                if left[i] >= 0:
                    for c in (left[i], right[i]):
                        del rows[c], cols[c], Ufull[c], Vfull[c]
                bar.update()
    bar.close()
    return from_generators(tree, dtype=out_dtype, **gens)


def from_matvec(matvec, rmatvec, tree, rank=None, rtol=1e-8, seed=0, symmetric=False, max_rank=None,
                oversampling=10, n_probes=8, max_samples=None):
    H, info = _from_matvec.from_matvec(matvec, rmatvec, tree, rank=rank, rtol=rtol, seed=seed,
                                       symmetric=symmetric, max_rank=max_rank,
                                       oversampling=oversampling, n_probes=n_probes,
                                       max_samples=max_samples)
    return H._with_info(info)


# the public form returns the matrix alone, the record of the run travels as H.info
from_matvec.__doc__ = _from_matvec.from_matvec.__doc__.replace(
    """    H : HSSMatrix
        float64, on ``tree``, with orthonormal bases.
    info : MatvecInfo
        Products used (``n_matvecs``, ``n_rmatvecs``), the error estimate and
        the sketch size.""",
    """    H : HSSMatrix
        float64, on ``tree``, with orthonormal bases. ``H.info`` is a
        :class:`MatvecInfo`: products used (``n_matvecs``, ``n_rmatvecs``), the
        error estimate and the sketch size.""")


def from_kernel(kernel, points, leaf_size=64, rtol=1e-8, atol=0.0, max_rank=None, seed=0,
                progress=False, n_probes=8, max_error_rows=1024, recompress=False,
                basis="interpolative"):
    H, info = _from_kernel.from_kernel(kernel, points, leaf_size=leaf_size, rtol=rtol, atol=atol,
                                       max_rank=max_rank, seed=seed, progress=progress,
                                       n_probes=n_probes, max_error_rows=max_error_rows,
                                       recompress=recompress, basis=basis)
    return H._with_info(info)


_KERNEL_RETURNS = """    info : KernelInfo
        Error estimate, kernel evaluations and timings."""
if _KERNEL_RETURNS not in _from_kernel.from_kernel.__doc__:   # keep the two docstrings in step
    raise AssertionError("from_kernel's docstring no longer has the Returns entry replaced here")
from_kernel.__doc__ = _from_kernel.from_kernel.__doc__.replace(
    _KERNEL_RETURNS, """        ``H.info`` is a :class:`KernelInfo`: the a-posteriori error estimate,
        kernel evaluations and timings.""")
