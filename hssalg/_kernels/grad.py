"""Product of an HSS matrix with a batch of row vectors, and its reverse-mode derivative.

The neural layer keeps a batch as an (s, n) array whose *rows* are the vectors,
so these kernels work on that layout directly: node i's slice of the batch is
the strided (s, m_i) block ``X[:, start:stop]``, handed to BLAS with its leading
dimension (no transposed copy of the batch). The compressed vectors of every
node are stored transposed too, as contiguous (s, k_i) blocks:

    xt_i = x̂_iᵀ   (upsweep of the input),   yt_i = ŷ_iᵀ   (downsweep),
    gt_i = ĝ_iᵀ   (upsweep of the cotangent), zt_i = ẑ_iᵀ (downsweep of the cotangent).

As in :mod:`.matvec`, generators are passed *by role*: the column side
``(basis_in, transfer_in)`` compresses the input and the row side
``(basis_out, transfer_out)`` expands the output; ``C_ab`` of inner node i
(children a, b) maps x̂_b to ŷ_a, stored (k_out[a], k_in[b]), or transposed when
``trans_B``; ``C_ba`` likewise. For A X the roles are (V, W), (U, R), B12, B21;
for Aᵀ X they are (U, R), (V, W), B21ᵀ, B12ᵀ and Dᵀ.

Forward (rows are batch entries)::

    leaf:   xt_i = X_i Bin_i                    inner: xt_i = xt_a Tin_a + xt_b Tin_b
    pair:   yt_a = xt_b op(C_ab)ᵀ + yt_i Tout_aᵀ,   yt_b = xt_a op(C_ba)ᵀ + yt_i Tout_bᵀ
    leaf:   Y_i  = X_i op(D_i)ᵀ + yt_i Bout_iᵀ

Reverse, with cotangent G of Y (the transposed product on G, plus outer products)::

    leaf:   gt_i = G_i Bout_i                   inner: gt_i = gt_a Tout_a + gt_b Tout_b
    pair:   zt_b = gt_a op(C_ab) + zt_i Tin_bᵀ,    zt_a = gt_b op(C_ba) + zt_i Tin_aᵀ
    leaf:   dX_i = G_i op(D_i) + zt_i Bin_iᵀ
    dD_i = G_iᵀ X_i,  dBout_i = G_iᵀ yt_i,  dBin_i = X_iᵀ zt_i,
    dTout_c = gt_cᵀ yt_parent,  dTin_c = xt_cᵀ zt_parent,
    dC_ab = gt_aᵀ xt_b,  dC_ba = gt_bᵀ xt_a      (transposed when stored transposed)

In the column notation of HSS_PRIMER.md these are dD = G Xᵀ, dU = G ŷᵀ,
dV = X ẑᵀ, dR_c = ĝ_c ŷ_parentᵀ, dW_c = x̂_c ẑ_parentᵀ, dB12 = ĝ_a x̂_bᵀ,
dB21 = ĝ_b x̂_aᵀ and dX = Aᵀ G. Every kernel allocates its outputs and never
writes into an input. Cost: forward O(n (m + k) s), reverse about twice that.
"""

import numpy as np
from numba import njit

from .blas import SMALL_GEMM, gemm
from .matvec import _rank_offsets, workspace_like


@njit(cache=True)
def _block(buf, off, node, rows, cols):
    return buf[off[node]:off[node + 1]].reshape(rows, cols)


@njit(cache=True)
def _gemm_nt(alpha, A, B, beta, C, ws, scratch):
    """C <- alpha A Bᵀ + beta C, B (N, K) copied transposed into ``scratch`` first.

    OpenBLAS is markedly slower on the transposed-operand form for the leaf
    shapes here (s x m times m x m) than on the plain one; the copy costs far less.
    """
    N, K = B.shape
    if N * K * C.shape[0] <= SMALL_GEMM:
        gemm(False, True, alpha, A, B, beta, C, ws)
        return
    T = scratch[:N * K].reshape(K, N)
    for i in range(N):
        for j in range(K):
            T[j, i] = B[i, j]
    gemm(False, False, alpha, A, T, beta, C, ws)


@njit(cache=True)
def _gemm_op(trans, alpha, A, B, beta, C, ws, scratch):
    """C <- alpha A op(B) + beta C with op(B) = Bᵀ when ``trans``."""
    if trans:
        _gemm_nt(alpha, A, B, beta, C, ws, scratch)
    else:
        gemm(False, False, alpha, A, B, beta, C, ws)


@njit(cache=True)
def _scratch_size(start, stop, left, k_in, k_out):
    size = 1
    for node in range(left.shape[0]):
        if left[node] < 0:
            m = stop[node] - start[node]
            size = max(size, m * max(m, k_in[node], k_out[node]))
    return size


@njit(cache=True)
def forward(tree, k_in, k_out, basis_in, basis_in_off, transfer_in, transfer_in_off,
            basis_out, basis_out_off, transfer_out, transfer_out_off,
            C_ab, C_ab_off, C_ba, C_ba_off, trans_B, D, D_off, trans_D, X):
    """Y = X op(A)ᵀ (row i of Y is op(A) times row i of X), with the sweep quantities.

    Parameters
    ----------
    tree : tuple of (n_nodes,) int64 arrays
        ``(parent, left, right, start, stop, level_ptr)``.
    k_in, k_out : (n_nodes,) int64 arrays
        Column-side and row-side ranks (0 at the root).
    basis_*, transfer_*, C_*, D : 1-D arrays with (n_nodes + 1,) int64 offsets
        Generators by role (module docstring).
    trans_B, trans_D : bool
        Use the stored coupling / diagonal blocks transposed.
    X : (s, n) C-contiguous array in tree order

    Returns
    -------
    Y : (s, n) array in tree order
    xt, yt : 1-D arrays
        x̂_iᵀ and ŷ_iᵀ as (s, k_in[i]) and (s, k_out[i]) blocks at
        ``_rank_offsets(k_in, s)[i]`` and ``_rank_offsets(k_out, s)[i]``.
    """
    parent, left, right, start, stop, level_ptr = tree
    s = X.shape[0]
    xo = _rank_offsets(k_in, s)
    yo = _rank_offsets(k_out, s)
    xt = np.empty(xo[-1], X.dtype)
    yt = np.empty(yo[-1], X.dtype)
    Y = np.empty_like(X)
    ws = workspace_like(X)
    scratch = np.empty(_scratch_size(start, stop, left, k_in, k_out), X.dtype)
    n_nodes = left.shape[0]
    for node in range(n_nodes):
        if left[node] < 0:
            m = stop[node] - start[node]
            gemm(False, False, 1.0, X[:, start[node]:stop[node]],
                         _block(basis_in, basis_in_off, node, m, k_in[node]), 0.0,
                         xt[xo[node]:xo[node + 1]].reshape(s, k_in[node]), ws)
    for lvl in range(level_ptr.shape[0] - 2, 0, -1):
        for node in range(level_ptr[lvl], level_ptr[lvl + 1]):
            a = left[node]
            if a < 0:
                continue
            b = right[node]
            k = k_in[node]
            xn = xt[xo[node]:xo[node + 1]].reshape(s, k)
            gemm(False, False, 1.0, xt[xo[a]:xo[a + 1]].reshape(s, k_in[a]),
                         _block(transfer_in, transfer_in_off, a, k_in[a], k), 0.0, xn, ws)
            gemm(False, False, 1.0, xt[xo[b]:xo[b + 1]].reshape(s, k_in[b]),
                         _block(transfer_in, transfer_in_off, b, k_in[b], k), 1.0, xn, ws)
    for lvl in range(level_ptr.shape[0] - 1):
        for node in range(level_ptr[lvl], level_ptr[lvl + 1]):
            a = left[node]
            if a < 0:
                continue
            b = right[node]
            ya = yt[yo[a]:yo[a + 1]].reshape(s, k_out[a])
            yb = yt[yo[b]:yo[b + 1]].reshape(s, k_out[b])
            xa = xt[xo[a]:xo[a + 1]].reshape(s, k_in[a])
            xb = xt[xo[b]:xo[b + 1]].reshape(s, k_in[b])
            if trans_B:
                Cab = _block(C_ab, C_ab_off, node, k_in[b], k_out[a])
                Cba = _block(C_ba, C_ba_off, node, k_in[a], k_out[b])
            else:
                Cab = _block(C_ab, C_ab_off, node, k_out[a], k_in[b])
                Cba = _block(C_ba, C_ba_off, node, k_out[b], k_in[a])
            gemm(False, not trans_B, 1.0, xb, Cab, 0.0, ya, ws)
            gemm(False, not trans_B, 1.0, xa, Cba, 0.0, yb, ws)
            k = k_out[node]
            if k > 0:
                yn = yt[yo[node]:yo[node + 1]].reshape(s, k)
                gemm(False, True, 1.0, yn, _block(transfer_out, transfer_out_off, a, k_out[a], k),
                             1.0, ya, ws)
                gemm(False, True, 1.0, yn, _block(transfer_out, transfer_out_off, b, k_out[b], k),
                             1.0, yb, ws)
    for node in range(n_nodes):
        if left[node] < 0:
            i0 = start[node]
            i1 = stop[node]
            m = i1 - i0
            Yl = Y[:, i0:i1]
            _gemm_op(not trans_D, 1.0, X[:, i0:i1], _block(D, D_off, node, m, m), 0.0, Yl, ws, scratch)
            k = k_out[node]
            if k > 0:
                _gemm_nt(1.0, yt[yo[node]:yo[node + 1]].reshape(s, k),
                         _block(basis_out, basis_out_off, node, m, k), 1.0, Yl, ws, scratch)
    return Y, xt, yt


@njit(cache=True)
def backward(tree, k_in, k_out, basis_in, basis_in_off, transfer_in, transfer_in_off,
             basis_out, basis_out_off, transfer_out, transfer_out_off,
             C_ab, C_ab_off, C_ba, C_ba_off, trans_B, D, D_off, trans_D, X, xt, yt, G):
    """Vector-Jacobian products of :func:`forward` for the cotangent G of Y.

    Parameters
    ----------
    tree, k_in, k_out, basis_*, transfer_*, C_*, trans_B, D, trans_D, X
        As given to :func:`forward`.
    xt, yt : 1-D arrays
        The sweep quantities :func:`forward` returned for this X.
    G : (s, n) C-contiguous array in tree order

    Returns
    -------
    dX : (s, n) array in tree order, the transposed product G op(A)
    d_basis_in, d_transfer_in, d_basis_out, d_transfer_out, d_C_ab, d_C_ba, dD : 1-D arrays
        Gradients with the layout (offsets, stored orientation) of the generators.
    """
    parent, left, right, start, stop, level_ptr = tree
    s = X.shape[0]
    xo = _rank_offsets(k_in, s)
    yo = _rank_offsets(k_out, s)
    gt = np.empty(yo[-1], X.dtype)
    zt = np.empty(xo[-1], X.dtype)
    dX = np.empty_like(X)
    # leaf blocks tile their buffers and are all written below; the small
    # transfer and coupling buffers are zeroed so that any block a rank-0 parent
    # skips reads as zero
    d_basis_in = np.empty_like(basis_in)
    d_transfer_in = np.zeros_like(transfer_in)
    d_basis_out = np.empty_like(basis_out)
    d_transfer_out = np.zeros_like(transfer_out)
    d_C_ab = np.zeros_like(C_ab)
    d_C_ba = np.zeros_like(C_ba)
    dD = np.empty_like(D)
    ws = workspace_like(X)
    scratch = np.empty(_scratch_size(start, stop, left, k_in, k_out), X.dtype)
    n_nodes = left.shape[0]
    # upsweep of the cotangent through the row side
    for node in range(n_nodes):
        if left[node] < 0:
            m = stop[node] - start[node]
            gemm(False, False, 1.0, G[:, start[node]:stop[node]],
                         _block(basis_out, basis_out_off, node, m, k_out[node]), 0.0,
                         gt[yo[node]:yo[node + 1]].reshape(s, k_out[node]), ws)
    for lvl in range(level_ptr.shape[0] - 2, 0, -1):
        for node in range(level_ptr[lvl], level_ptr[lvl + 1]):
            a = left[node]
            if a < 0:
                continue
            b = right[node]
            k = k_out[node]
            gn = gt[yo[node]:yo[node + 1]].reshape(s, k)
            yn = yt[yo[node]:yo[node + 1]].reshape(s, k)
            ga = gt[yo[a]:yo[a + 1]].reshape(s, k_out[a])
            gb = gt[yo[b]:yo[b + 1]].reshape(s, k_out[b])
            Ra = _block(transfer_out, transfer_out_off, a, k_out[a], k)
            Rb = _block(transfer_out, transfer_out_off, b, k_out[b], k)
            gemm(False, False, 1.0, ga, Ra, 0.0, gn, ws)
            gemm(False, False, 1.0, gb, Rb, 1.0, gn, ws)
            gemm(True, False, 1.0, ga, yn, 0.0,
                         _block(d_transfer_out, transfer_out_off, a, k_out[a], k), ws)
            gemm(True, False, 1.0, gb, yn, 0.0,
                         _block(d_transfer_out, transfer_out_off, b, k_out[b], k), ws)
    # couplings and downsweep of the cotangent through the column side
    for lvl in range(level_ptr.shape[0] - 1):
        for node in range(level_ptr[lvl], level_ptr[lvl + 1]):
            a = left[node]
            if a < 0:
                continue
            b = right[node]
            ga = gt[yo[a]:yo[a + 1]].reshape(s, k_out[a])
            gb = gt[yo[b]:yo[b + 1]].reshape(s, k_out[b])
            xa = xt[xo[a]:xo[a + 1]].reshape(s, k_in[a])
            xb = xt[xo[b]:xo[b + 1]].reshape(s, k_in[b])
            za = zt[xo[a]:xo[a + 1]].reshape(s, k_in[a])
            zb = zt[xo[b]:xo[b + 1]].reshape(s, k_in[b])
            if trans_B:
                Cab = _block(C_ab, C_ab_off, node, k_in[b], k_out[a])
                Cba = _block(C_ba, C_ba_off, node, k_in[a], k_out[b])
                gemm(True, False, 1.0, xb, ga, 0.0,
                             _block(d_C_ab, C_ab_off, node, k_in[b], k_out[a]), ws)
                gemm(True, False, 1.0, xa, gb, 0.0,
                             _block(d_C_ba, C_ba_off, node, k_in[a], k_out[b]), ws)
            else:
                Cab = _block(C_ab, C_ab_off, node, k_out[a], k_in[b])
                Cba = _block(C_ba, C_ba_off, node, k_out[b], k_in[a])
                gemm(True, False, 1.0, ga, xb, 0.0,
                             _block(d_C_ab, C_ab_off, node, k_out[a], k_in[b]), ws)
                gemm(True, False, 1.0, gb, xa, 0.0,
                             _block(d_C_ba, C_ba_off, node, k_out[b], k_in[a]), ws)
            gemm(False, trans_B, 1.0, ga, Cab, 0.0, zb, ws)
            gemm(False, trans_B, 1.0, gb, Cba, 0.0, za, ws)
            k = k_in[node]
            if k > 0:
                zn = zt[xo[node]:xo[node + 1]].reshape(s, k)
                Wa = _block(transfer_in, transfer_in_off, a, k_in[a], k)
                Wb = _block(transfer_in, transfer_in_off, b, k_in[b], k)
                gemm(False, True, 1.0, zn, Wa, 1.0, za, ws)
                gemm(False, True, 1.0, zn, Wb, 1.0, zb, ws)
                gemm(True, False, 1.0, xa, zn, 0.0,
                             _block(d_transfer_in, transfer_in_off, a, k_in[a], k), ws)
                gemm(True, False, 1.0, xb, zn, 0.0,
                             _block(d_transfer_in, transfer_in_off, b, k_in[b], k), ws)
    # leaves: the transposed product and the outer products of the leaf generators
    for node in range(n_nodes):
        if left[node] < 0:
            i0 = start[node]
            i1 = stop[node]
            m = i1 - i0
            Xl = X[:, i0:i1]
            Gl = G[:, i0:i1]
            dXl = dX[:, i0:i1]
            Dl = _block(D, D_off, node, m, m)
            _gemm_op(trans_D, 1.0, Gl, Dl, 0.0, dXl, ws, scratch)
            if trans_D:
                gemm(True, False, 1.0, Xl, Gl, 0.0, _block(dD, D_off, node, m, m), ws)
            else:
                gemm(True, False, 1.0, Gl, Xl, 0.0, _block(dD, D_off, node, m, m), ws)
            ki = k_in[node]
            if ki > 0:
                zl = zt[xo[node]:xo[node + 1]].reshape(s, ki)
                _gemm_nt(1.0, zl, _block(basis_in, basis_in_off, node, m, ki), 1.0, dXl, ws, scratch)
                gemm(True, False, 1.0, Xl, zl, 0.0, _block(d_basis_in, basis_in_off, node, m, ki), ws)
            ko = k_out[node]
            if ko > 0:
                gemm(True, False, 1.0, Gl, yt[yo[node]:yo[node + 1]].reshape(s, ko), 0.0,
                             _block(d_basis_out, basis_out_off, node, m, ko), ws)
    return dX, d_basis_in, d_transfer_in, d_basis_out, d_transfer_out, d_C_ab, d_C_ba, dD
