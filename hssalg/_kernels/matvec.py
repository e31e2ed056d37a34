"""HSS matrix times a block of vectors: upsweep, coupling, downsweep.

One function serves ``A @ X`` and ``A.T @ X``: the caller passes the generators
*by role* rather than by name. For ``A @ X`` the column side (the basis that
compresses the input) is (V, W) and the row side (the basis that expands the
output) is (U, R), with couplings B12 / B21 and D as stored; for ``A.T @ X`` the
sides swap, the couplings are B21 / B12 used transposed, and D is used
transposed. See docs/primer.md, section 5.

Cost O(n (m + k) s) for n rows, leaf size m, rank k and s right-hand sides;
memory O(sum of ranks * s) for the compressed vectors, allocated once.
"""

import numpy as np
from numba import get_num_threads, njit, prange, set_num_threads, set_parallel_chunksize

from .._blas_threads import one_blas_thread
from .blas import gemm


@njit(cache=True)
def workspace_like(X):
    """BLAS scalar scratch for the dtype of ``X`` (see blas.workspace)."""
    return (np.zeros(8, np.int32), np.zeros(2, X.dtype), np.zeros(2, np.uint8))


@njit(cache=True)
def leaf_nodes(left):
    """Indices of the leaves (nodes without a left child), in index order.

    A serial function on purpose: inside a parallel kernel numba turns the array
    expression ``left < 0`` into a parallel loop, which ``run_parallel`` schedules
    in chunks of one element (measured: 0.8 ms of a 7.8 ms product at n = 2^16).
    """
    return np.flatnonzero(left < 0)


@njit(cache=True)
def _rank_offsets(k, s):
    off = np.empty(k.shape[0] + 1, np.int64)
    off[0] = 0
    for i in range(k.shape[0]):
        off[i + 1] = off[i] + k[i] * s
    return off


@njit(cache=True)
def _chunk_bounds(n_items, chunk, n_chunks):
    """Items ``lo:hi`` of chunk ``chunk`` when n_items are split into n_chunks."""
    return chunk * n_items // n_chunks, (chunk + 1) * n_items // n_chunks


@njit(cache=True)
def _n_chunks(n_items, n_threads):
    # a few chunks per thread balance the load; each chunk allocates one workspace
    return min(n_items, 4 * n_threads)


@njit(cache=True, parallel=True)
def upsweep(tree, k_in, basis_in, basis_in_off, transfer_in, transfer_in_off, X, n_threads):
    """Compressed inputs x̂_i = (column basis of node i)^T X_i for every node.

    Parameters
    ----------
    tree : tuple of (n_nodes,) int64 arrays
        ``(parent, left, right, start, stop, level_ptr)``.
    k_in : (n_nodes,) int64 array
        Column-side ranks.
    basis_in, transfer_in : 1-D arrays
        Leaf bases (m_i, k_i) and transfers (k_i, k_parent), flat with offsets.
    X : (n, s) array in tree order
    n_threads : int
        Threads the leaf loop is split over (numba.get_num_threads() of the caller).

    Returns
    -------
    xhat : 1-D array, node i's (k_i, s) block at ``_rank_offsets(k_in, s)[i]``.
    """
    parent, left, right, start, stop, level_ptr = tree
    s = X.shape[1]
    off = _rank_offsets(k_in, s)
    xhat = np.empty(off[-1], X.dtype)
    # leaves are independent and hold most of the work: split them over threads
    leaves = leaf_nodes(left)
    n_chunks = _n_chunks(leaves.shape[0], n_threads)
    for c in prange(n_chunks):
        ws = workspace_like(X)
        lo, hi = _chunk_bounds(leaves.shape[0], c, n_chunks)
        for li in range(lo, hi):
            node = leaves[li]
            k = k_in[node]
            m = stop[node] - start[node]
            Vt = basis_in[basis_in_off[node]:basis_in_off[node + 1]].reshape(m, k)
            gemm(True, False, 1.0, Vt, X[start[node]:stop[node]], 0.0,
                 xhat[off[node]:off[node + 1]].reshape(k, s), ws)
    ws = workspace_like(X)
    for lvl in range(level_ptr.shape[0] - 2, 0, -1):
        for node in range(level_ptr[lvl], level_ptr[lvl + 1]):
            a = left[node]
            if a < 0:
                continue
            b = right[node]
            k = k_in[node]
            xt = xhat[off[node]:off[node + 1]].reshape(k, s)
            Wa = transfer_in[transfer_in_off[a]:transfer_in_off[a + 1]].reshape(k_in[a], k)
            Wb = transfer_in[transfer_in_off[b]:transfer_in_off[b + 1]].reshape(k_in[b], k)
            gemm(True, False, 1.0, Wa, xhat[off[a]:off[a + 1]].reshape(k_in[a], s), 0.0, xt, ws)
            gemm(True, False, 1.0, Wb, xhat[off[b]:off[b + 1]].reshape(k_in[b], s), 1.0, xt, ws)
    return xhat


@njit(cache=True, parallel=True)
def apply(tree, k_in, k_out, basis_in, basis_in_off, transfer_in, transfer_in_off,
          basis_out, basis_out_off, transfer_out, transfer_out_off,
          B_ab, B_ab_off, B_ba, B_ba_off, trans_B, D, D_off, trans_D, X, n_threads):
    """Y = A X for an HSS matrix given by role (see the module docstring).

    Parameters
    ----------
    tree : tuple of (n_nodes,) int64 arrays
        ``(parent, left, right, start, stop, level_ptr)``.
    k_in, k_out : (n_nodes,) int64 arrays
        Column-side and row-side ranks.
    basis_*, transfer_*, B_*, D : 1-D arrays with (n_nodes + 1,) offsets
        Generators by role. ``B_ab`` of inner node i (children a, b) maps
        x̂_b to ŷ_a and is stored (k_out[a], k_in[b]), or (k_in[b], k_out[a])
        when ``trans_B``; ``B_ba`` likewise with a and b exchanged.
    trans_B, trans_D : bool
        Use the stored coupling and diagonal blocks transposed.
    X : (n, s) C-contiguous array in tree order
    n_threads : int
        Threads the leaf loops are split over. Call with numba's parallel chunk
        size set to 1 (``run_parallel``), so that threads take chunks as they
        come free and one thread the OS delays does not hold up the rest.

    Returns
    -------
    Y : (n, s) array in tree order
    """
    parent, left, right, start, stop, level_ptr = tree
    s = X.shape[1]
    xhat = upsweep(tree, k_in, basis_in, basis_in_off, transfer_in, transfer_in_off, X, n_threads)
    xoff = _rank_offsets(k_in, s)
    yoff = _rank_offsets(k_out, s)
    yhat = np.empty(yoff[-1], X.dtype)
    Y = np.empty_like(X)
    ws = workspace_like(X)
    for lvl in range(level_ptr.shape[0] - 1):
        for node in range(level_ptr[lvl], level_ptr[lvl + 1]):
            a = left[node]
            if a >= 0:
                b = right[node]
                ya = yhat[yoff[a]:yoff[a + 1]].reshape(k_out[a], s)
                yb = yhat[yoff[b]:yoff[b + 1]].reshape(k_out[b], s)
                xa = xhat[xoff[a]:xoff[a + 1]].reshape(k_in[a], s)
                xb = xhat[xoff[b]:xoff[b + 1]].reshape(k_in[b], s)
                if trans_B:
                    Bab = B_ab[B_ab_off[node]:B_ab_off[node + 1]].reshape(k_in[b], k_out[a])
                    Bba = B_ba[B_ba_off[node]:B_ba_off[node + 1]].reshape(k_in[a], k_out[b])
                else:
                    Bab = B_ab[B_ab_off[node]:B_ab_off[node + 1]].reshape(k_out[a], k_in[b])
                    Bba = B_ba[B_ba_off[node]:B_ba_off[node + 1]].reshape(k_out[b], k_in[a])
                # coupling: the sibling's compressed input, expanded in this node's basis
                gemm(trans_B, False, 1.0, Bab, xb, 0.0, ya, ws)
                gemm(trans_B, False, 1.0, Bba, xa, 0.0, yb, ws)
                # downsweep: what the parent received from the rest of the matrix
                k = k_out[node]
                if k > 0:
                    yp = yhat[yoff[node]:yoff[node + 1]].reshape(k, s)
                    Ra = transfer_out[transfer_out_off[a]:transfer_out_off[a + 1]].reshape(k_out[a], k)
                    Rb = transfer_out[transfer_out_off[b]:transfer_out_off[b + 1]].reshape(k_out[b], k)
                    gemm(False, False, 1.0, Ra, yp, 1.0, ya, ws)
                    gemm(False, False, 1.0, Rb, yp, 1.0, yb, ws)
    # leaves: Y_i = op(D_i) X_i + U_i ŷ_i, independent, split over threads
    leaves = leaf_nodes(left)
    n_chunks = _n_chunks(leaves.shape[0], n_threads)
    for c in prange(n_chunks):
        wsc = workspace_like(X)
        lo, hi = _chunk_bounds(leaves.shape[0], c, n_chunks)
        for li in range(lo, hi):
            node = leaves[li]
            i0 = start[node]
            i1 = stop[node]
            m = i1 - i0
            Dl = D[D_off[node]:D_off[node + 1]].reshape(m, m)
            Yl = Y[i0:i1]
            gemm(trans_D, False, 1.0, Dl, X[i0:i1], 0.0, Yl, wsc)
            k = k_out[node]
            if k > 0:
                Ul = basis_out[basis_out_off[node]:basis_out_off[node + 1]].reshape(m, k)
                gemm(False, False, 1.0, Ul, yhat[yoff[node]:yoff[node + 1]].reshape(k, s), 1.0, Yl, wsc)
    return Y


def run_parallel(kernel, n_threads, *args):
    """Call ``kernel(*args, n_threads)`` on ``n_threads`` numba threads, chunk size 1.

    Chunk size 1 lets threads take chunks as they come free, so one thread the
    OS delays does not hold up the others. Both settings are thread-local and
    are made here rather than inside the kernel, where they would stop numba
    from caching it. With ``n_threads == 1`` the parallel loops run on the
    calling thread alone, which is what small products want: waking a thread
    pool costs more than they do, and far more on a loaded machine.

    BLAS runs on one thread meanwhile (:mod:`hssalg._blas_threads`): the kernels'
    own products must not start a second pool of threads beside numba's.
    """
    old_threads = get_num_threads()
    old_chunk = set_parallel_chunksize(1)
    set_num_threads(n_threads)
    try:
        with one_blas_thread():
            return kernel(*args, n_threads)
    finally:
        set_num_threads(old_threads)
        set_parallel_chunksize(old_chunk)


# below this many rows times right-hand sides a product runs on one thread
PARALLEL_MIN_WORK = 2**15


def threads_for(n_rows, n_cols):
    """Number of threads worth using for an (n_rows, n_cols) block of right-hand sides."""
    return get_num_threads() if n_rows * n_cols >= PARALLEL_MIN_WORK else 1
