"""Forward-mode derivative of the HSS product with a batch of row vectors.

For Y = X op(A)ᵀ computed by :func:`.grad.forward`, the directional derivative
along a direction (dA, dX) — dA given by tangent generators of the same layout
as the generators, dX a batch of the shape of X — is

    dY = X op(dA)ᵀ + dX op(A)ᵀ,

the first term linear in the generator tangents, the second the product itself
applied to dX. Both come from one sweep that mirrors the forward one (same
layout: batch rows are vectors, the sweep quantities live in the sibling-pair
blocks of :func:`.grad.pair_layout`, generators and their tangents are passed
*by role*), differentiating every step by the product rule::

    leaf:   dxt_i = X_i dBin_i + dX_i Bin_i
    inner:  dxt_i = [dxt_a | dxt_b] [Tin_a; Tin_b] + [xt_a | xt_b] [dTin_a; dTin_b]
    pair:   dyt_a = dxt_b op(C_ab)ᵀ + xt_b op(dC_ab)ᵀ + dyt_i Tout_aᵀ + yt_i dTout_aᵀ
            dyt_b = dxt_a op(C_ba)ᵀ + xt_a op(dC_ba)ᵀ + dyt_i Tout_bᵀ + yt_i dTout_bᵀ
    leaf:   dY_i  = X_i op(dD_i)ᵀ + dX_i op(D_i)ᵀ + dyt_i Bout_iᵀ + yt_i dBout_iᵀ

where xt, yt are the forward quantities (x̂ᵀ, ŷᵀ) and the terms with dX drop
out when there is no tangent in X (dX passed as an empty (0, n) array: the
generators are the parameters, the batch is data), and the term with dD when
an empty dD is passed (D held fixed). In the column notation of
HSS_PRIMER.md (for A X): dx̂_i = dV_iᵀ x_i + V_iᵀ dx_i at a leaf,
dx̂_i = Σ_c (dW_cᵀ x̂_c + W_cᵀ dx̂_c) over the children c of an inner node,
dŷ_a = dB12 x̂_b + B12 dx̂_b + dR_a ŷ_i + R_a dŷ_i, and at a leaf
dy_i = dD_i x_i + D_i dx_i + dU_i ŷ_i + U_i dŷ_i.

Two entry points share the sweep: :func:`forward_tangent` computes Y and dY
together (the sweep quantities xt, yt are computed alongside their tangents,
each leaf slice of X read once for both), :func:`tangent` computes dY alone
from the xt, yt a previous :func:`.grad.forward` returned (autograd's JVP,
where Y is already known). Cost, measured against :func:`.grad.forward` at
n = 4096 and 8192, s = 70, rank 6, leaf size 64: :func:`forward_tangent` 2.3-2.7
forward products with a tangent in the generators only (the leaf products with
D and dD dominate), about 3 with dX too; :func:`tangent` about 1.3. Every kernel
allocates its outputs and never writes into an input.
"""

import numpy as np
from numba import njit, prange

# outputs from alloc: huge-page backed, as in grad.py.
# numba's cache does not see changes in the modules imported here (alloc, blas, grad,
# matvec); edit this file to recompile after one
from .alloc import empty
from .blas import gemm
from .grad import (_block, _cols, _gemm_nt, _gemm_op, _max_leaf, _pair, _pair_layouts, _part_leaves, _zero_cols,
                   coupling_blocks, pair_layout, parts_for, tree_parts)
from .matvec import workspace_like


@njit(cache=True)
def _sweep_up(tree, k_in, basis_in, basis_in_off, transfer_in, transfer_in_off,
              d_basis_in, d_transfer_in, X, dX, xt, fresh, xt_out, dxt, xl, part):
    """Leaves and upsweep of the tangent sweep over one part of the tree (:func:`.grad.tree_parts`).

    Writes dx̂ into ``dxt`` and, when ``fresh``, x̂ into ``xt_out``; the forward
    quantities are read from ``xt``. Reads and writes go through separate names
    because ``fresh`` is a run-time flag: numba types both branches, and without
    ``fresh`` the given xt may be a read-only array, which it would refuse to
    compile writes into. ``xt_out`` is a buffer the calling kernel allocated (an
    empty one, never indexed, without ``fresh``).
    """
    parent, left, right, start, stop, level_ptr = tree
    xb, xw, xc = xl
    s = X.shape[0]
    has_dX = dX.shape[0] > 0
    ws = workspace_like(X)
    leaves = _part_leaves(left, part)
    # leaves: x̂ and its tangent, X_i read once for both
    for q in range(leaves.shape[0]):
        node = leaves[q]
        i0 = start[node]
        i1 = stop[node]
        m = i1 - i0
        ki = k_in[node]
        Xl = X[:, i0:i1]
        Bin = _block(basis_in, basis_in_off, node, m, ki)
        dxl = _cols(dxt, xb, xw, xc, node, ki, s)
        if fresh:
            gemm(False, False, 1.0, Xl, Bin, 0.0, _cols(xt_out, xb, xw, xc, node, ki, s), ws)
        gemm(False, False, 1.0, Xl, _block(d_basis_in, basis_in_off, node, m, ki), 0.0, dxl, ws)
        if has_dX:
            gemm(False, False, 1.0, dX[:, i0:i1], Bin, 1.0, dxl, ws)
    # upsweep: dx̂_i = [dx̂_a | dx̂_b] [T_a; T_b] + [x̂_a | x̂_b] [dT_a; dT_b]
    for lvl in range(part.shape[0] - 1, 0, -1):
        for node in range(part[lvl, 0], part[lvl, 1]):
            a = left[node]
            if a < 0:
                continue
            k = k_in[node]
            kab = k_in[a] + k_in[a + 1]
            T = _pair(transfer_in, transfer_in_off, a, kab, k)
            xab = _cols(xt, xb, xw, xc, a, kab, s)
            dxn = _cols(dxt, xb, xw, xc, node, k, s)
            if fresh:
                gemm(False, False, 1.0, xab, T, 0.0, _cols(xt_out, xb, xw, xc, node, k, s), ws)
            gemm(False, False, 1.0, _cols(dxt, xb, xw, xc, a, kab, s), T, 0.0, dxn, ws)
            gemm(False, False, 1.0, xab, _pair(d_transfer_in, transfer_in_off, a, kab, k), 1.0, dxn, ws)


@njit(cache=True)
def _sweep_down(tree, k_in, k_out, basis_out, basis_out_off, transfer_out, transfer_out_off,
                C_ab, C_ab_off, C_ba, C_ba_off, trans_B, D, D_off, trans_D,
                d_basis_out, d_transfer_out, d_C_ab, d_C_ba, dD,
                X, dX, xt, yt, fresh, yt_out, Y, dY, dxt, dyt, xl, yl, part):
    """Couplings, downsweep and leaf products of the tangent sweep over one part of the tree.

    Writes dŷ into ``dyt`` and dY into ``dY``, and with ``fresh`` ŷ into ``yt_out``
    and Y into ``Y`` (as in :func:`_sweep_up`; Y is (0, n) without ``fresh``).
    """
    parent, left, right, start, stop, level_ptr = tree
    xb, xw, xc = xl
    yb, yw, yc = yl
    s = X.shape[0]
    has_dX = dX.shape[0] > 0
    has_dD = dD.shape[0] > 0
    has_D = D.shape[0] > 0      # an empty D: the matrix without its diagonal blocks
    ws = workspace_like(X)
    m_max, k_max = _max_leaf(start, stop, left, k_in, k_out)
    scratch = np.empty(m_max * max(m_max, k_max), X.dtype)
    # couplings and downsweep, root first
    for lvl in range(part.shape[0]):
        for node in range(part[lvl, 0], part[lvl, 1]):
            a = left[node]
            if a < 0:
                continue
            b = a + 1
            xa = _cols(xt, xb, xw, xc, a, k_in[a], s)
            xb_ = _cols(xt, xb, xw, xc, b, k_in[b], s)
            dxa = _cols(dxt, xb, xw, xc, a, k_in[a], s)
            dxb = _cols(dxt, xb, xw, xc, b, k_in[b], s)
            dya = _cols(dyt, yb, yw, yc, a, k_out[a], s)
            dyb = _cols(dyt, yb, yw, yc, b, k_out[b], s)
            Cab, Cba = coupling_blocks(C_ab, C_ab_off, C_ba, C_ba_off, trans_B, node, a, k_in, k_out)
            dCab, dCba = coupling_blocks(d_C_ab, C_ab_off, d_C_ba, C_ba_off, trans_B, node, a, k_in, k_out)
            if fresh:
                gemm(False, not trans_B, 1.0, xb_, Cab, 0.0, _cols(yt_out, yb, yw, yc, a, k_out[a], s), ws)
                gemm(False, not trans_B, 1.0, xa, Cba, 0.0, _cols(yt_out, yb, yw, yc, b, k_out[b], s), ws)
            # dŷ_a = dx̂_b op(C_ab)ᵀ + x̂_b op(dC_ab)ᵀ, likewise dŷ_b
            gemm(False, not trans_B, 1.0, dxb, Cab, 0.0, dya, ws)
            gemm(False, not trans_B, 1.0, xb_, dCab, 1.0, dya, ws)
            gemm(False, not trans_B, 1.0, dxa, Cba, 0.0, dyb, ws)
            gemm(False, not trans_B, 1.0, xa, dCba, 1.0, dyb, ws)
            k = k_out[node]
            if k > 0:
                kab = k_out[a] + k_out[b]
                T = _pair(transfer_out, transfer_out_off, a, kab, k)
                yn = _cols(yt, yb, yw, yc, node, k, s)
                dyab = _cols(dyt, yb, yw, yc, a, kab, s)
                if fresh:
                    gemm(False, True, 1.0, yn, T, 1.0, _cols(yt_out, yb, yw, yc, a, kab, s), ws)
                # [dŷ_a | dŷ_b] += dŷ_i [T_a; T_b]ᵀ + ŷ_i [dT_a; dT_b]ᵀ
                gemm(False, True, 1.0, _cols(dyt, yb, yw, yc, node, k, s), T, 1.0, dyab, ws)
                gemm(False, True, 1.0, yn, _pair(d_transfer_out, transfer_out_off, a, kab, k), 1.0, dyab, ws)
    # leaves: the output and its tangent, X_i read once for both
    leaves = _part_leaves(left, part)
    for q in range(leaves.shape[0]):
        node = leaves[q]
        i0 = start[node]
        i1 = stop[node]
        m = i1 - i0
        k = k_out[node]
        Xl = X[:, i0:i1]
        dYl = dY[:, i0:i1]
        Yl = Y[:, i0:i1]   # (0, m) without ``fresh``
        # beta of the next product into dYl: 0 until one has written it
        beta = 0.0
        if has_dD:
            _gemm_op(not trans_D, 1.0, Xl, _block(dD, D_off, node, m, m), 0.0, dYl, ws, scratch)
            beta = 1.0
        if has_D:
            Dl = _block(D, D_off, node, m, m)
            if has_dX:
                _gemm_op(not trans_D, 1.0, dX[:, i0:i1], Dl, beta, dYl, ws, scratch)
                beta = 1.0
            if fresh:
                _gemm_op(not trans_D, 1.0, Xl, Dl, 0.0, Yl, ws, scratch)
        if k > 0:
            Bout = _block(basis_out, basis_out_off, node, m, k)
            yl = _cols(yt, yb, yw, yc, node, k, s)
            _gemm_nt(1.0, _cols(dyt, yb, yw, yc, node, k, s), Bout, beta, dYl, ws, scratch)
            _gemm_nt(1.0, yl, _block(d_basis_out, basis_out_off, node, m, k), 1.0, dYl, ws, scratch)
            if fresh:
                _gemm_nt(1.0, yl, Bout, 1.0 if has_D else 0.0, Yl, ws, scratch)
        else:
            # a rank-0 leaf: what no product wrote is zero
            if beta == 0.0:
                _zero_cols(dYl)
            if fresh and not has_D:
                _zero_cols(Yl)


@njit(cache=True, parallel=True)
def _sweep(tree, k_in, k_out, basis_in, basis_in_off, transfer_in, transfer_in_off,
           basis_out, basis_out_off, transfer_out, transfer_out_off,
           C_ab, C_ab_off, C_ba, C_ba_off, trans_B, D, D_off, trans_D,
           d_basis_in, d_transfer_in, d_basis_out, d_transfer_out, d_C_ab, d_C_ba, dD,
           X, dX, xt, yt, fresh, xt_out, yt_out, Y, dY, n_threads):
    """The tangent sweep, writing dY (and, when ``fresh``, x̂, ŷ and Y) into the buffers given.

    The subtrees of :func:`.grad.tree_parts` run on threads, the top part on
    one, as in :func:`.grad.forward`; the result is the same bit for bit
    whatever the number of threads. ``xt_out``, ``yt_out``, ``Y`` and ``dY`` are
    buffers the calling kernel allocated (empty ones, never indexed, without
    ``fresh``); see :func:`_sweep_up` for why reads and writes have separate names.
    """
    parent, left, right, start, stop, level_ptr = tree
    s = X.shape[0]
    xl, yl, x_size, y_size = _pair_layouts(parent, left, k_in, k_out, s)
    # every block of dxt, dyt is written (beta = 0) before it is read, as in grad.forward
    dxt = empty(x_size, X.dtype)
    dyt = empty(y_size, X.dtype)
    parts = tree_parts(left, level_ptr, parts_for(n_threads))
    n_sub = parts.shape[0] - 1
    for j in prange(n_sub):
        _sweep_up(tree, k_in, basis_in, basis_in_off, transfer_in, transfer_in_off,
                  d_basis_in, d_transfer_in, X, dX, xt, fresh, xt_out, dxt, xl, parts[1 + j])
    _sweep_up(tree, k_in, basis_in, basis_in_off, transfer_in, transfer_in_off,
              d_basis_in, d_transfer_in, X, dX, xt, fresh, xt_out, dxt, xl, parts[0])
    _sweep_down(tree, k_in, k_out, basis_out, basis_out_off, transfer_out, transfer_out_off,
                C_ab, C_ab_off, C_ba, C_ba_off, trans_B, D, D_off, trans_D,
                d_basis_out, d_transfer_out, d_C_ab, d_C_ba, dD,
                X, dX, xt, yt, fresh, yt_out, Y, dY, dxt, dyt, xl, yl, parts[0])
    for j in prange(n_sub):
        _sweep_down(tree, k_in, k_out, basis_out, basis_out_off, transfer_out, transfer_out_off,
                    C_ab, C_ab_off, C_ba, C_ba_off, trans_B, D, D_off, trans_D,
                    d_basis_out, d_transfer_out, d_C_ab, d_C_ba, dD,
                    X, dX, xt, yt, fresh, yt_out, Y, dY, dxt, dyt, xl, yl, parts[1 + j])


@njit(cache=True)
def forward_tangent(tree, k_in, k_out, basis_in, basis_in_off, transfer_in, transfer_in_off,
                    basis_out, basis_out_off, transfer_out, transfer_out_off,
                    C_ab, C_ab_off, C_ba, C_ba_off, trans_B, D, D_off, trans_D,
                    d_basis_in, d_transfer_in, d_basis_out, d_transfer_out, d_C_ab, d_C_ba, dD,
                    X, dX, n_threads):
    """Y = X op(A)ᵀ and its directional derivative dY = X op(dA)ᵀ + dX op(A)ᵀ, one sweep.

    Parameters
    ----------
    tree, k_in, k_out, basis_*, transfer_*, C_*, trans_B, D, trans_D
        As for :func:`.grad.forward` (generators by role).
    d_basis_in, d_transfer_in, d_basis_out, d_transfer_out, d_C_ab, d_C_ba, dD : 1-D arrays
        Tangents of the generators of the same roles, with their layout (offsets,
        stored orientation); of X's dtype. An empty dD means D is fixed: the leaf
        products with dD, most of the leaf work, are skipped (an optimiser that
        solves for D separately, :mod:`hssalg_nn.lm`).
    X : (s, n) C-contiguous array in tree order
    dX : (s, n) or (0, n) C-contiguous array in tree order
        Tangent of X; an empty (0, n) array means none (dX = 0, its products skipped).
    n_threads : int
        As for :func:`.grad.forward`. Call through :func:`.matvec.run_parallel`.

    Returns
    -------
    Y : (s, n) array in tree order, as :func:`.grad.forward` returns it
    dY : (s, n) array in tree order
    """
    parent, left, right, start, stop, level_ptr = tree
    s = X.shape[0]
    x_size = pair_layout(parent, left, k_in, s)[3]
    y_size = pair_layout(parent, left, k_out, s)[3]
    xt = empty(x_size, X.dtype)
    yt = empty(y_size, X.dtype)
    # Y and dY in one allocation: two separate large buffers, freed together, made
    # glibc give their pages back to the system after every call, and each call then
    # page-faulted them in again (measured at n = 4096, s = 70: 8 faults and 6.1 ms
    # a call against 0 and ~3.9 ms)
    YdY = empty(2 * X.size, X.dtype)
    Y = YdY[:X.size].reshape(X.shape)
    dY = YdY[X.size:].reshape(X.shape)
    _sweep(tree, k_in, k_out, basis_in, basis_in_off, transfer_in, transfer_in_off,
           basis_out, basis_out_off, transfer_out, transfer_out_off,
           C_ab, C_ab_off, C_ba, C_ba_off, trans_B, D, D_off, trans_D,
           d_basis_in, d_transfer_in, d_basis_out, d_transfer_out, d_C_ab, d_C_ba, dD,
           X, dX, xt, yt, True, xt, yt, Y, dY, n_threads)
    return Y, dY


@njit(cache=True)
def tangent(tree, k_in, k_out, basis_in, basis_in_off, transfer_in, transfer_in_off,
            basis_out, basis_out_off, transfer_out, transfer_out_off,
            C_ab, C_ab_off, C_ba, C_ba_off, trans_B, D, D_off, trans_D,
            d_basis_in, d_transfer_in, d_basis_out, d_transfer_out, d_C_ab, d_C_ba, dD,
            X, xt, yt, dX, n_threads):
    """dY = X op(dA)ᵀ + dX op(A)ᵀ from the sweep quantities of a forward product.

    Parameters
    ----------
    tree, ..., dD, X
        As for :func:`forward_tangent`.
    xt, yt : 1-D arrays
        What :func:`.grad.forward` returned for these generators and this X (read only).
    dX : (s, n) or (0, n) C-contiguous array in tree order
        As for :func:`forward_tangent`.
    n_threads : int
        As for :func:`forward_tangent`.

    Returns
    -------
    dY : (s, n) array in tree order
    """
    dY = empty(X.size, X.dtype).reshape(X.shape)
    # no Y, x̂, ŷ to compute: empty writable placeholders (see _sweep_up)
    none = empty(0, X.dtype)
    Y = none.reshape((0, X.shape[1]))
    _sweep(tree, k_in, k_out, basis_in, basis_in_off, transfer_in, transfer_in_off,
           basis_out, basis_out_off, transfer_out, transfer_out_off,
           C_ab, C_ab_off, C_ba, C_ba_off, trans_B, D, D_off, trans_D,
           d_basis_in, d_transfer_in, d_basis_out, d_transfer_out, d_C_ab, d_C_ba, dD,
           X, dX, xt, yt, False, none, none, Y, dY, n_threads)
    return dY
