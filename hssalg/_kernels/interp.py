"""HSS product for the interpolative storage form: bases kept as P = Pi [I; T].

A node's interpolation matrix ``P_i`` (c_i, k_i) maps its k_i skeleton rows to
its c_i candidate rows (a leaf's points, or the stacked skeletons of its two
children). It is stored as ``perm_i`` (c_i,) and ``T_i`` (c_i - k_i, k_i): rows
``perm_i[:k_i]`` of P_i are the identity and rows ``perm_i[k_i:]`` are T_i (see
:mod:`hssalg._layout`). A leaf's P is its basis U_i; an inner node's P stacks
its children's transfers, ``[R_a; R_b]``. So

- compressing (upsweep): ``P^T z = z[perm[:k]] + T^T z[perm[k:]]``;
- expanding (downsweep): ``z[perm[:k]] += y``, ``z[perm[k:]] += T y``.

Both cost (c - k) k s multiply-adds instead of the c k s of an explicit basis,
plus a gather or scatter of rows. The generators are passed by role as in
:mod:`hssalg._kernels.matvec`: the input side compresses X, the output side
expands into Y. ``D_mode`` 2 reads D as packed lower triangles (a symmetric
matrix stores only those).

Cost O(n (m + k) s); memory O(sum of ranks * s) plus one scratch block per
chunk of leaves.
"""

import numpy as np
from numba import njit, prange

from .blas import gemm
from .matvec import _chunk_bounds, _n_chunks, _rank_offsets, leaf_nodes, workspace_like

D_AS_STORED = 0
D_TRANSPOSED = 1
D_PACKED_SYMMETRIC = 2


@njit(cache=True)
def _stacked_row(buf, off_a, off_b, k_a, s, r):
    """Row r (length s) of the stack [block a (k_a, s); block b] of a flat buffer."""
    if r < k_a:
        return buf[off_a + r * s:off_a + (r + 1) * s]
    r -= k_a
    return buf[off_b + r * s:off_b + (r + 1) * s]


@njit(cache=True)
def _add_row(dst, src):
    """dst += src for two 1-D arrays of one length (dst a view into a kernel's own buffer).

    A loop, not ``dst[:] += src``: on a view returned by a function, numba's
    in-place operator wrote into a temporary (the first version of this kernel
    lost those updates); a loop also never builds a temporary row.
    """
    for j in range(dst.shape[0]):
        dst[j] += src[j]


@njit(cache=True)
def _zeros(n, like):
    """(n,) zeros of the dtype of ``like``, outside any parallel region."""
    return np.zeros(n, like.dtype)


@njit(cache=True)
def _copy_row(dst, src):
    """dst[:] = src, by a loop (see :func:`_add_row`)."""
    for j in range(dst.shape[0]):
        dst[j] = src[j]


@njit(cache=True)
def unpack_symmetric(Dp, m, out):
    """Write the symmetric (m, m) matrix whose packed lower triangle is Dp into out."""
    for r in range(m):
        base = r * (r + 1) // 2
        for c in range(r + 1):
            v = Dp[base + c]
            out[r, c] = v
            out[c, r] = v


@njit(cache=True)
def _scratch_rows(tree, k_in, k_out, leaves_only):
    """Largest c_i - k_i over the nodes (leaves or inner nodes), for both sides."""
    parent, left, right, start, stop, level_ptr = tree
    most = 0
    for node in range(1, left.shape[0]):
        a = left[node]
        is_leaf = a < 0
        if is_leaf != leaves_only:
            continue
        if is_leaf:
            c_in = c_out = stop[node] - start[node]
        else:
            c_in = k_in[a] + k_in[right[node]]
            c_out = k_out[a] + k_out[right[node]]
        most = max(most, c_in - k_in[node], c_out - k_out[node])
    return most


@njit(cache=True, parallel=True)
def apply(tree, k_in, k_out, T_in, T_in_off, p_in, p_in_off, T_out, T_out_off, p_out, p_out_off,
          B_ab, B_ab_off, trans_ab, B_ba, B_ba_off, trans_ba, D, D_off, D_mode, X, n_threads):
    """Y = A X for an HSS matrix in interpolative form, generators by role.

    Parameters
    ----------
    tree : tuple of (n_nodes,) int64 arrays
        ``(parent, left, right, start, stop, level_ptr)``.
    k_in, k_out : (n_nodes,) int64 arrays
        Input-side and output-side ranks (0 at the root).
    T_in, T_out : 1-D float arrays with (n_nodes + 1,) offsets
        Non-identity rows of every non-root node's interpolation matrix,
        (c_i - k_i, k_i) row-major.
    p_in, p_out : 1-D int32 arrays with (n_nodes + 1,) offsets
        Every non-root node's row order (c_i,): skeleton rows first.
    B_ab, B_ba : 1-D arrays with offsets
        Couplings of inner node i (children a, b): ``B_ab`` maps x̂_b to ŷ_a,
        stored (k_out[a], k_in[b]), or (k_in[b], k_out[a]) when ``trans_ab``;
        ``B_ba`` likewise with a and b exchanged.
    D : 1-D array with offsets
        Leaf blocks; ``D_mode``: 0 as stored (m, m), 1 transposed, 2 packed
        lower triangles of symmetric blocks (m (m + 1) / 2 numbers).
    X : (n, s) C-contiguous array in tree order
    n_threads : int
        Threads the leaf loops are split over (see ``matvec.run_parallel``).

    Returns
    -------
    Y : (n, s) array in tree order
    """
    parent, left, right, start, stop, level_ptr = tree
    s = X.shape[1]
    xoff = _rank_offsets(k_in, s)
    yoff = _rank_offsets(k_out, s)
    # allocated by serial helpers: in this parallel function numba would turn np.zeros and
    # array expressions into parallel loops, scheduled in chunks of one element by
    # run_parallel (measured: 16 -> 235 ms for one product at n = 2^16, 16 columns)
    xhat = _zeros(xoff[-1], X)
    yhat = _zeros(yoff[-1], X)
    Y = np.empty_like(X)
    leaves = leaf_nodes(left)
    n_chunks = _n_chunks(leaves.shape[0], n_threads)
    leaf_rows = _scratch_rows(tree, k_in, k_out, True)
    inner_rows = _scratch_rows(tree, k_in, k_out, False)
    m_max = 0
    for li in range(leaves.shape[0]):
        m_max = max(m_max, stop[leaves[li]] - start[leaves[li]])

    # upsweep, leaves: x̂_i = P_i^T X_i
    for c in prange(n_chunks):
        wsu = workspace_like(X)
        Zu = np.empty(leaf_rows * s, X.dtype)
        lo, hi = _chunk_bounds(leaves.shape[0], c, n_chunks)
        for li in range(lo, hi):
            node = leaves[li]
            if node == 0:
                continue
            k = k_in[node]
            if k == 0:
                continue
            i0 = start[node]
            m = stop[node] - i0
            permu = p_in[p_in_off[node]:p_in_off[node + 1]]
            xt = xhat[xoff[node]:xoff[node + 1]].reshape(k, s)
            if m > k:
                Zul = Zu[:(m - k) * s].reshape(m - k, s)
                for r in range(m - k):
                    _copy_row(Zul[r], X[i0 + permu[k + r]])
                Tl = T_in[T_in_off[node]:T_in_off[node + 1]].reshape(m - k, k)
                gemm(True, False, 1.0, Tl, Zul, 0.0, xt, wsu)
            for j in range(k):
                _add_row(xt[j], X[i0 + permu[j]])

    # upsweep, inner nodes below the root: x̂_i = P_i^T [x̂_a; x̂_b]
    ws = workspace_like(X)
    Z = np.empty(inner_rows * s, X.dtype)
    for lvl in range(level_ptr.shape[0] - 2, 0, -1):
        for node in range(level_ptr[lvl], level_ptr[lvl + 1]):
            a = left[node]
            if a < 0:
                continue
            k = k_in[node]
            if k == 0:
                continue
            b = right[node]
            cnt = k_in[a] + k_in[b]
            perm = p_in[p_in_off[node]:p_in_off[node + 1]]
            xt = xhat[xoff[node]:xoff[node + 1]].reshape(k, s)
            if cnt > k:
                Zl = Z[:(cnt - k) * s].reshape(cnt - k, s)
                for r in range(cnt - k):
                    _copy_row(Zl[r], _stacked_row(xhat, xoff[a], xoff[b], k_in[a], s, perm[k + r]))
                T = T_in[T_in_off[node]:T_in_off[node + 1]].reshape(cnt - k, k)
                gemm(True, False, 1.0, T, Zl, 0.0, xt, ws)
            for j in range(k):
                _add_row(xt[j], _stacked_row(xhat, xoff[a], xoff[b], k_in[a], s, perm[j]))

    # couplings and downsweep, top down
    for lvl in range(level_ptr.shape[0] - 1):
        for node in range(level_ptr[lvl], level_ptr[lvl + 1]):
            a = left[node]
            if a < 0:
                continue
            b = right[node]
            ya = yhat[yoff[a]:yoff[a + 1]].reshape(k_out[a], s)
            yb = yhat[yoff[b]:yoff[b + 1]].reshape(k_out[b], s)
            xa = xhat[xoff[a]:xoff[a + 1]].reshape(k_in[a], s)
            xb = xhat[xoff[b]:xoff[b + 1]].reshape(k_in[b], s)
            if trans_ab:
                Bab = B_ab[B_ab_off[node]:B_ab_off[node + 1]].reshape(k_in[b], k_out[a])
            else:
                Bab = B_ab[B_ab_off[node]:B_ab_off[node + 1]].reshape(k_out[a], k_in[b])
            if trans_ba:
                Bba = B_ba[B_ba_off[node]:B_ba_off[node + 1]].reshape(k_in[a], k_out[b])
            else:
                Bba = B_ba[B_ba_off[node]:B_ba_off[node + 1]].reshape(k_out[b], k_in[a])
            # the parent's share first (it scatters into ya, yb), then the sibling's
            k = k_out[node]
            if node != 0 and k > 0:
                cnt = k_out[a] + k_out[b]
                perm = p_out[p_out_off[node]:p_out_off[node + 1]]
                yp = yhat[yoff[node]:yoff[node + 1]].reshape(k, s)
                for j in range(k):
                    _add_row(_stacked_row(yhat, yoff[a], yoff[b], k_out[a], s, perm[j]), yp[j])
                if cnt > k:
                    Zl = Z[:(cnt - k) * s].reshape(cnt - k, s)
                    T = T_out[T_out_off[node]:T_out_off[node + 1]].reshape(cnt - k, k)
                    gemm(False, False, 1.0, T, yp, 0.0, Zl, ws)
                    for r in range(cnt - k):
                        _add_row(_stacked_row(yhat, yoff[a], yoff[b], k_out[a], s, perm[k + r]), Zl[r])
            gemm(trans_ab, False, 1.0, Bab, xb, 1.0, ya, ws)
            gemm(trans_ba, False, 1.0, Bba, xa, 1.0, yb, ws)

    # leaves: Y_i = op(D_i) X_i + P_i ŷ_i
    for c in prange(n_chunks):
        wsc = workspace_like(X)
        Zc = np.empty(leaf_rows * s, X.dtype)
        Dfull = np.empty(m_max * m_max if D_mode == D_PACKED_SYMMETRIC else 0, X.dtype)
        lo, hi = _chunk_bounds(leaves.shape[0], c, n_chunks)
        for li in range(lo, hi):
            node = leaves[li]
            i0 = start[node]
            m = stop[node] - i0
            Yl = Y[i0:i0 + m]
            if D_mode == D_PACKED_SYMMETRIC:
                Dl = Dfull[:m * m].reshape(m, m)
                unpack_symmetric(D[D_off[node]:D_off[node + 1]], m, Dl)
                gemm(False, False, 1.0, Dl, X[i0:i0 + m], 0.0, Yl, wsc)
            else:
                Dl = D[D_off[node]:D_off[node + 1]].reshape(m, m)
                gemm(D_mode == D_TRANSPOSED, False, 1.0, Dl, X[i0:i0 + m], 0.0, Yl, wsc)
            k = k_out[node]
            if node == 0 or k == 0:
                continue
            permc = p_out[p_out_off[node]:p_out_off[node + 1]]
            yl = yhat[yoff[node]:yoff[node + 1]].reshape(k, s)
            for j in range(k):
                _add_row(Yl[permc[j]], yl[j])
            if m > k:
                Zcl = Zc[:(m - k) * s].reshape(m - k, s)
                Tc = T_out[T_out_off[node]:T_out_off[node + 1]].reshape(m - k, k)
                gemm(False, False, 1.0, Tc, yl, 0.0, Zcl, wsc)
                for r in range(m - k):
                    _add_row(Yl[permc[k + r]], Zcl[r])
    return Y
