"""ULV factorisation of an HSS matrix and its solve sweeps (numba kernels).

General matrices (Chandrasekaran, Gu, Pals 2006; Xia et al. 2010). Every node
tau holds a *working* block of size mt (the leaf size at a leaf, the sum of the
children's kept sizes above): a diagonal block A (mt x mt), a row basis Ut
(mt x kU) and a column basis Vt (mt x kV). With r = max(mt - kU, 0):

1. QL of Ut: an orthogonal Q (kU Householder reflectors) with
   Q^T Ut = [0; Uh], so the first r rows of Q^T A_tau have no coupling outside
   tau.
2. LQ of those r rows: (Q^T A)[:r] = [L 0] P, P orthogonal (r reflectors from
   the right; LAPACK's blocked QR of the transpose, see :mod:`.lapack`). With
   z = P x the r unknowns z1 = L^-1 (Q^T b)[:r] are local.
3. What is left is c = mt - r rows and unknowns: C = (Q^T A P^T)[r:, :r] moves
   z1 to the right-hand side, the kept block Dr = (Q^T A P^T)[r:, r:], the
   kept bases Uh and V2 = (P Vt)[r:] go to the parent, and
   V1 = (P Vt)[:r] carries the known part V1^T z1 of the column-compressed
   solution upwards (the parent's sibling coupling subtracts it).

The parent merges its children: A = [[Dr_a, Uh_a B12 V2_b^T], [Uh_b B21 V2_a^T,
Dr_b]], Ut = [Uh_a R_a; Uh_b R_b], Vt = [V2_a W_a; V2_b W_b]. The root has rank
0, so it eliminates everything (r = mt): a dense LQ solve.

The reduced system after eliminating z1 is a submatrix of an orthogonal
transform of A that is block lower triangular, so every L and every kept block
has a condition number at most cond(A): a tiny pivot means a (numerically)
singular A, never a bad pivot choice. det A = prod det L times (-1) per
nontrivial reflector.

Symmetric positive definite matrices (``spd_*``): V spans the space of U, so
the same Q acts on both sides; Q^T A Q = [[S11, S12], [S21, S22]] with
S11 = L L^T (Cholesky), the kept block is the Schur complement S22 - G^T G with
G = L^-1 S12, and z1 never couples outside the node (no V1, no coupling terms
in the solve). log det A = 2 sum log L_ii.

Every kernel works in float64, allocates its outputs and never writes into an
input. The factor is a tuple of flat buffers with per-node offsets
(``off[kind, node]``, kinds below).
"""

import numpy as np
from numba import njit

from .lapack import WORK_PER_ROW, lq_rows, ql_columns
from .matvec import _rank_offsets

# kinds of the factor's flat buffers (rows of the offset table)
QV, TQ, LP, TP, CC, UH, V1, V2, DR = range(9)
N_KINDS = 9


@njit(cache=True)
def _mm(alpha, A, ta, B, tb, beta, C):
    """C <- alpha op(A) op(B) + beta C with explicit loops (any strides, small blocks)."""
    M, N = C.shape
    K = A.shape[0] if ta else A.shape[1]
    for i in range(M):
        for j in range(N):
            acc = 0.0
            for p in range(K):
                acc += (A[p, i] if ta else A[i, p]) * (B[j, p] if tb else B[p, j])
            if beta == 0.0:
                C[i, j] = alpha * acc
            else:
                C[i, j] = alpha * acc + beta * C[i, j]


@njit(cache=True)
def _house(x0, sig):
    """Householder reflector for a vector with head x0 and squared tail norm sig.

    Returns (tau, beta, scale): H = I - tau v v^T with v = [1, tail * scale]
    maps the vector to beta e_1; tau = 0 (H = I) when the tail is zero
    (LAPACK dlarfg convention).
    """
    if sig == 0.0:
        return 0.0, x0, 0.0
    nrm = np.sqrt(x0 * x0 + sig)
    beta = -nrm if x0 >= 0.0 else nrm
    return (beta - x0) / beta, beta, 1.0 / (x0 - beta)


@njit(cache=True)
def _lower_solve(L, x, trans):
    """x <- L^-1 x (or L^-T x) in place for a lower triangular L (r x r), x (r, s)."""
    r = L.shape[0]
    s = x.shape[1]
    if not trans:
        for i in range(r):
            d = L[i, i]
            for q in range(s):
                acc = x[i, q]
                for k in range(i):
                    acc -= L[i, k] * x[k, q]
                x[i, q] = acc / d
    else:
        for i in range(r - 1, -1, -1):
            d = L[i, i]
            for q in range(s):
                acc = x[i, q]
                for k in range(i + 1, r):
                    acc -= L[k, i] * x[k, q]
                x[i, q] = acc / d


@njit(cache=True)
def rcond_lower(L):
    """Estimate of 1 / (||L||_1 ||L^-1||_1) for a lower triangular L (r x r).

    Hager's estimator with Higham's extra test vector (as in LAPACK dlacn2):
    O(r^2) per iteration, at most five iterations. 0 for an exactly singular
    L, and 0 when the estimate is not finite.
    """
    r = L.shape[0]
    if r == 0:
        return 1.0
    norm = 0.0
    for j in range(r):
        col = 0.0
        for i in range(j, r):
            col += abs(L[i, j])
        norm = max(norm, col)
        if L[j, j] == 0.0:
            return 0.0
    x = np.full((r, 1), 1.0 / r)
    z = np.empty((r, 1))
    est = 0.0
    for it in range(5):
        y = x.copy()
        _lower_solve(L, y, False)
        new = 0.0
        for i in range(r):
            new += abs(y[i, 0])
        if it > 0 and new <= est:
            break
        est = new
        for i in range(r):
            z[i, 0] = 1.0 if y[i, 0] >= 0.0 else -1.0
        _lower_solve(L, z, True)
        j = 0
        ztx = 0.0
        for i in range(r):
            ztx += z[i, 0] * x[i, 0]
            if abs(z[i, 0]) > abs(z[j, 0]):
                j = i
        if it > 0 and abs(z[j, 0]) <= ztx:
            break
        x[:, 0] = 0.0
        x[j, 0] = 1.0
    for i in range(r):
        sgn = 1.0 if i % 2 == 0 else -1.0
        x[i, 0] = sgn * (1.0 + i / max(r - 1, 1))
    _lower_solve(L, x, False)
    alt = 0.0
    for i in range(r):
        alt += abs(x[i, 0])
    est = max(est, 2.0 * alt / (3.0 * r))
    rc = 1.0 / (norm * est)
    if not (rc >= 0.0) or not np.isfinite(est):
        return 0.0
    return rc


@njit(cache=True)
def _apply_q(Qv, tQ, m, X, trans):
    """X <- Q^T X (trans) or Q X for the reflectors of :func:`.lapack.ql_columns`, X (m, s)."""
    k = tQ.shape[0]
    s = X.shape[1]
    for jj in range(k):
        j = jj if trans else k - 1 - jj
        tau = tQ[j]
        if tau == 0.0:
            continue
        p = m - 1 - j
        for q in range(s):
            w = X[p, q]
            for i in range(p):
                w += Qv[i, j] * X[i, q]
            w *= tau
            X[p, q] -= w
            for i in range(p):
                X[i, q] -= w * Qv[i, j]


@njit(cache=True)
def _apply_p(LPn, tP, X, trans):
    """X <- P X (not trans) or P^T X (trans) for the LQ reflectors stored in LPn (r x m)."""
    r = tP.shape[0]
    m = LPn.shape[1]
    s = X.shape[1]
    for ii in range(r):
        i = r - 1 - ii if trans else ii
        tau = tP[i]
        if tau == 0.0:
            continue
        for q in range(s):
            w = X[i, q]
            for k in range(i + 1, m):
                w += LPn[i, k] * X[k, q]
            w *= tau
            X[i, q] -= w
            for k in range(i + 1, m):
                X[k, q] -= w * LPn[i, k]


@njit(cache=True)
def _blk(buf, off, kind, node, rows, cols):
    return buf[off[kind, node]:off[kind, node + 1]].reshape(rows, cols)


@njit(cache=True)
def _gen(buf, off, node, rows, cols):
    return buf[off[node]:off[node + 1]].reshape(rows, cols)


@njit(cache=True)
def _node_block(node, left, right, c, kU, kV, off, dr, uh, v2, s_dr, s_uh, s_v2, D, D_off, U, U_off,
                V, V_off, R, R_off, W, W_off, B12, B12_off, B21, B21_off, A, Ut, Vt, T_ws):
    """The block of ``node`` the factorisation works on, written into A, Ut, Vt.

    A leaf gives its generators D, U, V. An inner node stacks what its
    children kept (slots ``s_dr``, ``s_uh``, ``s_v2`` of dr, uh, v2), couples
    them through B12 and B21, and maps R and W onto the kept rows. The
    symmetric factorisation passes kU as kV.

    A : (m, m), Ut : (m, kU[node]), Vt : (m, kV[node]) workspaces, overwritten;
    T_ws : scratch of at least max(c) * max(kV) entries. Nothing else is written.
    """
    ku = kU[node]
    kv = kV[node]
    a = left[node]
    if a < 0:
        m = A.shape[0]
        A[:, :] = _gen(D, D_off, node, m, m)
        Ut[:, :] = _gen(U, U_off, node, m, ku)
        Vt[:, :] = _gen(V, V_off, node, m, kv)
        return
    b = right[node]
    ca = c[a]
    cb = c[b]
    A[:ca, :ca] = _blk(dr, off, s_dr, a, ca, ca)
    A[ca:, ca:] = _blk(dr, off, s_dr, b, cb, cb)
    Uha = _blk(uh, off, s_uh, a, ca, kU[a])
    Uhb = _blk(uh, off, s_uh, b, cb, kU[b])
    V2a = _blk(v2, off, s_v2, a, ca, kV[a])
    V2b = _blk(v2, off, s_v2, b, cb, kV[b])
    T = T_ws[:ca * kV[b]].reshape(ca, kV[b])
    _mm(1.0, Uha, False, _gen(B12, B12_off, node, kU[a], kV[b]), False, 0.0, T)
    _mm(1.0, T, False, V2b, True, 0.0, A[:ca, ca:])
    T = T_ws[:cb * kV[a]].reshape(cb, kV[a])
    _mm(1.0, Uhb, False, _gen(B21, B21_off, node, kU[b], kV[a]), False, 0.0, T)
    _mm(1.0, T, False, V2a, True, 0.0, A[ca:, :ca])
    _mm(1.0, Uha, False, _gen(R, R_off, a, kU[a], ku), False, 0.0, Ut[:ca])
    _mm(1.0, Uhb, False, _gen(R, R_off, b, kU[b], ku), False, 0.0, Ut[ca:])
    _mm(1.0, V2a, False, _gen(W, W_off, a, kV[a], kv), False, 0.0, Vt[:ca])
    _mm(1.0, V2b, False, _gen(W, W_off, b, kV[b], kv), False, 0.0, Vt[ca:])


@njit(cache=True)
def factorize(tree, kU, kV, mt, r, c, off, D, D_off, U, U_off, V, V_off, R, R_off, W, W_off,
              B12, B12_off, B21, B21_off, tol_eps):
    """General ULV factorisation (see the module docstring).

    Parameters
    ----------
    tree : tuple ``(parent, left, right, start, stop, level_ptr)``
    kU, kV : (n_nodes,) int64 row and column ranks
    mt, r, c : (n_nodes,) int64
        Working size, eliminated and kept unknowns of every node.
    off : (N_KINDS, n_nodes + 1) int64
        Offsets of the factor buffers.
    D, U, V, R, W, B12, B21 : 1-D float64 generator buffers with offsets
    tol_eps : float
        A node fails when the rcond estimate of its L is below tol_eps * mt.

    Returns
    -------
    bufs : tuple of N_KINDS 1-D float64 arrays
    bad_node : int (-1 when every node succeeded)
    bad_rcond : float
    sign, logabs : float
        det A = sign * exp(logabs).
    """
    parent, left, right, start, stop, level_ptr = tree
    n_nodes = parent.shape[0]
    qv = np.zeros(off[QV, n_nodes])
    tq = np.zeros(off[TQ, n_nodes])
    lp = np.zeros(off[LP, n_nodes])
    tp = np.zeros(off[TP, n_nodes])
    cc = np.zeros(off[CC, n_nodes])
    uh = np.zeros(off[UH, n_nodes])
    v1 = np.zeros(off[V1, n_nodes])
    v2 = np.zeros(off[V2, n_nodes])
    dr = np.zeros(off[DR, n_nodes])
    mmax = max(1, mt.max())
    A_ws = np.empty(mmax * mmax)
    Ut_ws = np.empty(mmax * max(1, kU.max()))
    Vt_ws = np.empty(mmax * max(1, kV.max()))
    T_ws = np.empty(mmax * max(1, max(kU.max(), kV.max())))
    lws = (np.zeros(8, np.int32), np.zeros(2, np.uint8), np.zeros(mmax * WORK_PER_ROW))
    qws = np.empty((mmax + 1) * max(1, kU.max()))
    sign = 1.0
    logabs = 0.0
    bufs = (qv, tq, lp, tp, cc, uh, v1, v2, dr)
    for lvl in range(level_ptr.shape[0] - 2, -1, -1):
        for node in range(level_ptr[lvl], level_ptr[lvl + 1]):
            m = mt[node]
            ku = kU[node]
            kv = kV[node]
            rr = r[node]
            A = A_ws[:m * m].reshape(m, m)
            Ut = Ut_ws[:m * ku].reshape(m, ku)
            Vt = Vt_ws[:m * kv].reshape(m, kv)
            _node_block(node, left, right, c, kU, kV, off, dr, uh, v2, DR, UH, V2, D, D_off, U, U_off,
                        V, V_off, R, R_off, W, W_off, B12, B12_off, B21, B21_off, A, Ut, Vt, T_ws)
            n_refl = 0
            if rr > 0 and ku > 0:
                tQn = tq[off[TQ, node]:off[TQ, node + 1]]
                ql_columns(Ut, A, _blk(qv, off, QV, node, m, ku), tQn, False, lws, qws)
                for i in range(ku):
                    if tQn[i] != 0.0:
                        n_refl += 1
            cn = m - rr
            _blk(uh, off, UH, node, cn, ku)[:, :] = Ut[rr:]
            if rr > 0:
                tPn = tp[off[TP, node]:off[TP, node + 1]]
                lq_rows(A, rr, Vt, tPn, lws)
                for i in range(rr):
                    if tPn[i] != 0.0:
                        n_refl += 1
                L = A[:rr, :rr]
                rc = rcond_lower(L)
                if not (rc >= tol_eps * m):
                    return bufs, node, rc, 0.0, 0.0
                for i in range(rr):
                    d = L[i, i]
                    logabs += np.log(abs(d))
                    if d < 0.0:
                        sign = -sign
                _blk(lp, off, LP, node, rr, m)[:, :] = A[:rr]
                _blk(cc, off, CC, node, cn, rr)[:, :] = A[rr:, :rr]
                _blk(v1, off, V1, node, rr, kv)[:, :] = Vt[:rr]
            if n_refl % 2 == 1:
                sign = -sign
            _blk(dr, off, DR, node, cn, cn)[:, :] = A[rr:, rr:]
            _blk(v2, off, V2, node, cn, kv)[:, :] = Vt[rr:]
    return bufs, -1, 1.0, sign, logabs


@njit(cache=True)
def solve(tree, kU, kV, mt, r, c, off, qv, tq, lp, tp, cc, uh, v1,
          R, R_off, W, W_off, B12, B12_off, B21, B21_off, X):
    """X_out = A^-1 X for the factor of :func:`factorize`; X (n, s) float64 in tree order.

    Up: every node applies Q^T, solves for its local unknowns z1 = L^-1 b1,
    moves them to the right-hand side of its kept rows (C z1) and sends the
    known compressed solution V1^T z1 (+ W^T of its children's) to its parent,
    whose sibling couplings subtract it. Down: x = P^T [z1; z2] with z2 from
    the parent.
    """
    parent, left, right, start, stop, level_ptr = tree
    s = X.shape[1]
    c_off = _rank_offsets(c, s)
    r_off = _rank_offsets(r, s)
    k_off = _rank_offsets(kV, s)
    m_off = _rank_offsets(mt, s)
    bt2 = np.empty(c_off[-1])
    z1 = np.empty(r_off[-1])
    xk = np.empty(k_off[-1])
    y = np.empty(m_off[-1])
    bt_ws = np.empty(max(1, mt.max()) * s)
    T_ws = np.empty(max(1, kU.max()) * s)
    out = np.empty_like(X)
    for lvl in range(level_ptr.shape[0] - 2, -1, -1):
        for node in range(level_ptr[lvl], level_ptr[lvl + 1]):
            m = mt[node]
            rr = r[node]
            cn = c[node]
            kv = kV[node]
            bt = bt_ws[:m * s].reshape(m, s)
            a = left[node]
            if a < 0:
                bt[:, :] = X[start[node]:stop[node]]
            else:
                b = right[node]
                ca = c[a]
                cb = c[b]
                bt[:ca] = bt2[c_off[a]:c_off[a + 1]].reshape(ca, s)
                bt[ca:] = bt2[c_off[b]:c_off[b + 1]].reshape(cb, s)
                # known parts of the sibling's solution, seen through the coupling
                T = T_ws[:kU[a] * s].reshape(kU[a], s)
                _mm(1.0, _gen(B12, B12_off, node, kU[a], kV[b]), False,
                    xk[k_off[b]:k_off[b + 1]].reshape(kV[b], s), False, 0.0, T)
                _mm(-1.0, _blk(uh, off, UH, a, ca, kU[a]), False, T, False, 1.0, bt[:ca])
                T = T_ws[:kU[b] * s].reshape(kU[b], s)
                _mm(1.0, _gen(B21, B21_off, node, kU[b], kV[a]), False,
                    xk[k_off[a]:k_off[a + 1]].reshape(kV[a], s), False, 0.0, T)
                _mm(-1.0, _blk(uh, off, UH, b, cb, kU[b]), False, T, False, 1.0, bt[ca:])
            xkn = xk[k_off[node]:k_off[node + 1]].reshape(kv, s)
            if rr > 0:
                ku = kU[node]
                _apply_q(_blk(qv, off, QV, node, m, ku), tq[off[TQ, node]:off[TQ, node + 1]], m, bt, True)
                LPn = _blk(lp, off, LP, node, rr, m)
                zn = z1[r_off[node]:r_off[node + 1]].reshape(rr, s)
                zn[:, :] = bt[:rr]
                _lower_solve(LPn[:, :rr], zn, False)
                b2 = bt2[c_off[node]:c_off[node + 1]].reshape(cn, s)
                b2[:, :] = bt[rr:]
                _mm(-1.0, _blk(cc, off, CC, node, cn, rr), False, zn, False, 1.0, b2)
                _mm(1.0, _blk(v1, off, V1, node, rr, kv), True, zn, False, 0.0, xkn)
            else:
                bt2[c_off[node]:c_off[node + 1]].reshape(cn, s)[:, :] = bt
                xkn[:, :] = 0.0
            if a >= 0 and kv > 0:
                b = right[node]
                _mm(1.0, _gen(W, W_off, a, kV[a], kv), True,
                    xk[k_off[a]:k_off[a + 1]].reshape(kV[a], s), False, 1.0, xkn)
                _mm(1.0, _gen(W, W_off, b, kV[b], kv), True,
                    xk[k_off[b]:k_off[b + 1]].reshape(kV[b], s), False, 1.0, xkn)
    for lvl in range(level_ptr.shape[0] - 1):
        for node in range(level_ptr[lvl], level_ptr[lvl + 1]):
            m = mt[node]
            rr = r[node]
            yn = y[m_off[node]:m_off[node + 1]].reshape(m, s)
            # rows rr: were filled by the parent
            yn[:rr] = z1[r_off[node]:r_off[node + 1]].reshape(rr, s)
            if rr > 0:
                _apply_p(_blk(lp, off, LP, node, rr, m), tp[off[TP, node]:off[TP, node + 1]], yn, True)
            a = left[node]
            if a < 0:
                out[start[node]:stop[node]] = yn
            else:
                b = right[node]
                ca = c[a]
                y[m_off[a]:m_off[a + 1]].reshape(mt[a], s)[r[a]:] = yn[:ca]
                y[m_off[b]:m_off[b + 1]].reshape(mt[b], s)[r[b]:] = yn[ca:]
    return out


@njit(cache=True)
def solve_transposed(tree, kU, kV, mt, r, c, off, qv, tq, lp, tp, cc, uh, v1,
                     R, R_off, W, W_off, B12, B12_off, B21, B21_off, X):
    """X_out = A^-T X: the adjoint of every step of :func:`solve`, in reverse order."""
    parent, left, right, start, stop, level_ptr = tree
    s = X.shape[1]
    c_off = _rank_offsets(c, s)
    r_off = _rank_offsets(r, s)
    k_off = _rank_offsets(kV, s)
    m_off = _rank_offsets(mt, s)
    w1 = np.empty(r_off[-1])          # adjoint of z1 from the down sweep
    g2 = np.empty(c_off[-1])          # adjoint of the kept right-hand side
    gk = np.empty(k_off[-1])          # adjoint of the known compressed solution
    y = np.empty(m_off[-1])
    T_ws = np.empty(max(1, kU.max()) * s)
    out = np.empty_like(X)
    # adjoint of the down sweep, leaves to root: [w1; w2] = P y, y of a parent = [w2_a; w2_b]
    for lvl in range(level_ptr.shape[0] - 2, -1, -1):
        for node in range(level_ptr[lvl], level_ptr[lvl + 1]):
            m = mt[node]
            rr = r[node]
            yn = y[m_off[node]:m_off[node + 1]].reshape(m, s)
            a = left[node]
            if a < 0:
                yn[:, :] = X[start[node]:stop[node]]
            else:
                b = right[node]
                ca = c[a]
                yn[:ca] = y[m_off[a]:m_off[a + 1]].reshape(mt[a], s)[r[a]:]
                yn[ca:] = y[m_off[b]:m_off[b + 1]].reshape(mt[b], s)[r[b]:]
            if rr > 0:
                _apply_p(_blk(lp, off, LP, node, rr, m), tp[off[TP, node]:off[TP, node + 1]], yn, False)
                w1[r_off[node]:r_off[node + 1]] = yn[:rr].ravel()
    # adjoint of the up sweep, root to leaves
    for lvl in range(level_ptr.shape[0] - 1):
        for node in range(level_ptr[lvl], level_ptr[lvl + 1]):
            m = mt[node]
            rr = r[node]
            cn = c[node]
            kv = kV[node]
            gkn = gk[k_off[node]:k_off[node + 1]].reshape(kv, s)
            if node == 0:
                gkn[:, :] = 0.0
            g2n = g2[c_off[node]:c_off[node + 1]].reshape(cn, s)
            if node == 0:
                g2n[:, :] = 0.0
            bt = y[m_off[node]:m_off[node + 1]].reshape(m, s)   # reuse: y of this node is spent
            if rr > 0:
                ku = kU[node]
                zb = bt[:rr]
                zb[:, :] = w1[r_off[node]:r_off[node + 1]].reshape(rr, s)
                _mm(1.0, _blk(v1, off, V1, node, rr, kv), False, gkn, False, 1.0, zb)
                _mm(-1.0, _blk(cc, off, CC, node, cn, rr), True, g2n, False, 1.0, zb)
                _lower_solve(_blk(lp, off, LP, node, rr, m)[:, :rr], zb, True)
                bt[rr:] = g2n
                _apply_q(_blk(qv, off, QV, node, m, ku), tq[off[TQ, node]:off[TQ, node + 1]], m, bt, False)
            else:
                bt[:, :] = g2n
            a = left[node]
            if a < 0:
                out[start[node]:stop[node]] = bt
            else:
                b = right[node]
                ca = c[a]
                cb = c[b]
                g2[c_off[a]:c_off[a + 1]] = bt[:ca].ravel()
                g2[c_off[b]:c_off[b + 1]] = bt[ca:].ravel()
                gka = gk[k_off[a]:k_off[a + 1]].reshape(kV[a], s)
                gkb = gk[k_off[b]:k_off[b + 1]].reshape(kV[b], s)
                _mm(1.0, _gen(W, W_off, a, kV[a], kv), False, gkn, False, 0.0, gka)
                _mm(1.0, _gen(W, W_off, b, kV[b], kv), False, gkn, False, 0.0, gkb)
                T = T_ws[:kU[a] * s].reshape(kU[a], s)
                _mm(1.0, _blk(uh, off, UH, a, ca, kU[a]), True, bt[:ca], False, 0.0, T)
                _mm(-1.0, _gen(B12, B12_off, node, kU[a], kV[b]), True, T, False, 1.0, gkb)
                T = T_ws[:kU[b] * s].reshape(kU[b], s)
                _mm(1.0, _blk(uh, off, UH, b, cb, kU[b]), True, bt[ca:], False, 0.0, T)
                _mm(-1.0, _gen(B21, B21_off, node, kU[b], kV[a]), True, T, False, 1.0, gka)
    return out


# kinds of the Cholesky-ULV factor's buffers
S_QV, S_TQ, S_L, S_G, S_UH, S_DR, S_V2 = range(7)
N_SPD_KINDS = 7


@njit(cache=True)
def _cholesky_lower(A, r):
    """Cholesky of A[:r, :r] in place (lower triangle); returns the failing column or -1."""
    for j in range(r):
        d = A[j, j]
        for k in range(j):
            d -= A[j, k] * A[j, k]
        if not (d > 0.0):
            return j
        d = np.sqrt(d)
        A[j, j] = d
        for i in range(j + 1, r):
            acc = A[i, j]
            for k in range(j):
                acc -= A[i, k] * A[j, k]
            A[i, j] = acc / d
    return -1


@njit(cache=True)
def _fro(A):
    acc = 0.0
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            acc += A[i, j] * A[i, j]
    return np.sqrt(acc)


@njit(cache=True)
def _asym(X, Y):
    """||X - Y^T||_F for X (p x q), Y (q x p)."""
    acc = 0.0
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            d = X[i, j] - Y[j, i]
            acc += d * d
    return np.sqrt(acc)


@njit(cache=True)
def spd_factorize(tree, kU, mt, r, c, off, D, D_off, U, U_off, V, V_off, R, R_off, W, W_off,
                  B12, B12_off, B21, B21_off, tol_eps, sym_tol):
    """Cholesky-ULV factorisation of a symmetric positive definite HSS matrix.

    At every node Q^T A Q = [[S11, S12], [S21, S22]] with Q from the QL of the
    row basis U, S11 = L L^T, G = L^-1 S12, and the kept block is
    S22 - G^T G. The column basis V only has to span the same space as U
    (true for any symmetric matrix with minimal ranks, e.g. from_dense of a
    symmetric matrix, even when its R and W differ): Q^T V = [V1; V~] with
    V1 ~ 0 is assumed and V1 dropped; the largest ||V1|| / ||Q^T V|| and its
    node are returned for the caller to judge. The couplings
    A(a, b) = U_a B12 V_b^T, A(b, a)^T and the leaf blocks D are checked
    against their transposes and averaged with them, to the relative
    tolerance ``sym_tol`` (Frobenius norms).

    Returns
    -------
    bufs : tuple of N_SPD_KINDS 1-D float64 arrays
    bad_node : int (-1 when every node succeeded)
    code : int
        1 a non-positive pivot, 2 a pivot block singular to working precision
        (``value`` its rcond estimate), 3 an unsymmetric matrix (``value``
        the relative asymmetry found at the node).
    value : float
    logdet : float
    worst_node : int, worst : float
        The node whose dropped column-basis part V1 is largest, and
        ||V1|| / ||Q^T V`` there (-1 and 0.0 when nothing was dropped).
    """
    parent, left, right, start, stop, level_ptr = tree
    n_nodes = parent.shape[0]
    qv = np.zeros(off[S_QV, n_nodes])
    tq = np.zeros(off[S_TQ, n_nodes])
    lb = np.zeros(off[S_L, n_nodes])
    gb = np.zeros(off[S_G, n_nodes])
    uh = np.zeros(off[S_UH, n_nodes])
    dr = np.zeros(off[S_DR, n_nodes])
    v2 = np.zeros(off[S_V2, n_nodes])
    bufs = (qv, tq, lb, gb, uh, dr, v2)
    mmax = max(1, mt.max())
    kmax = max(1, kU.max())
    A_ws = np.empty(mmax * mmax)
    Ut_ws = np.empty(mmax * kmax)
    Vt_ws = np.empty(mmax * kmax)
    T_ws = np.empty(mmax * kmax)
    lws = (np.zeros(8, np.int32), np.zeros(2, np.uint8), np.zeros(mmax * WORK_PER_ROW))
    qws = np.empty((mmax + 1) * kmax)
    logdet = 0.0
    worst = 0.0
    worst_node = -1
    for lvl in range(level_ptr.shape[0] - 2, -1, -1):
        for node in range(level_ptr[lvl], level_ptr[lvl + 1]):
            m = mt[node]
            ku = kU[node]
            rr = r[node]
            cn = m - rr
            A = A_ws[:m * m].reshape(m, m)
            Ut = Ut_ws[:m * ku].reshape(m, ku)
            Vt = Vt_ws[:m * ku].reshape(m, ku)
            # symmetric: the column ranks are the row ranks (kU passed as kV)
            _node_block(node, left, right, c, kU, kU, off, dr, uh, v2, S_DR, S_UH, S_V2, D, D_off, U,
                        U_off, V, V_off, R, R_off, W, W_off, B12, B12_off, B21, B21_off, A, Ut, Vt, T_ws)
            a = left[node]
            if a < 0:
                asym = _asym(A, A)
            else:
                ca = c[a]
                asym = np.sqrt(2.0) * _asym(A[:ca, ca:], A[ca:, :ca])
            scale = _fro(A)
            if asym > sym_tol * scale:
                return bufs, node, 3, asym / scale, 0.0, worst_node, worst
            # the symmetric part of the node's block
            for i in range(m):
                for j in range(i + 1, m):
                    avg = 0.5 * (A[i, j] + A[j, i])
                    A[i, j] = avg
                    A[j, i] = avg
            if rr > 0 and ku > 0:
                Qn = _blk(qv, off, S_QV, node, m, ku)
                tQn = tq[off[S_TQ, node]:off[S_TQ, node + 1]]
                ql_columns(Ut, A, Qn, tQn, True, lws, qws)
                _apply_q(Qn, tQn, m, Vt, True)
                # the eliminated directions should not couple through the column basis either;
                # what is dropped here is reported, and judged by the caller
                lost = _fro(Vt[:rr])
                if lost > 0.0 and lost > worst * _fro(Vt):
                    worst = lost / _fro(Vt)
                    worst_node = node
            _blk(uh, off, S_UH, node, cn, ku)[:, :] = Ut[rr:]
            _blk(v2, off, S_V2, node, cn, ku)[:, :] = Vt[rr:]
            if rr > 0:
                j = _cholesky_lower(A, rr)
                if j >= 0:
                    return bufs, node, 1, 0.0, 0.0, worst_node, worst
                L = A[:rr, :rr]
                rc = rcond_lower(L)
                # rcond of L L^T is about rcond(L)^2
                if not (rc * rc >= tol_eps * m):
                    return bufs, node, 2, rc * rc, 0.0, worst_node, worst
                for i in range(rr):
                    logdet += 2.0 * np.log(L[i, i])
                Ln = _blk(lb, off, S_L, node, rr, rr)
                for i in range(rr):
                    for k in range(rr):
                        Ln[i, k] = L[i, k] if k <= i else 0.0
                G = _blk(gb, off, S_G, node, rr, cn)
                G[:, :] = A[:rr, rr:]
                _lower_solve(Ln, G, False)
                Dr = _blk(dr, off, S_DR, node, cn, cn)
                Dr[:, :] = A[rr:, rr:]
                _mm(-1.0, G, True, G, False, 1.0, Dr)
            else:
                _blk(dr, off, S_DR, node, cn, cn)[:, :] = A
    return bufs, -1, 0, 0.0, logdet, worst_node, worst


@njit(cache=True)
def spd_solve(tree, kU, mt, r, c, off, qv, tq, lb, gb, X):
    """X_out = A^-1 X for the factor of :func:`spd_factorize`; X (n, s) float64 in tree order.

    Up: b <- Q^T b, w = L^-1 b1, kept right-hand side b2 - G^T w. Down:
    z1 = L^-T (w - G z2), x = Q [z1; z2]. The eliminated unknowns never couple
    outside their node (U = V), so no coupling terms appear.
    """
    parent, left, right, start, stop, level_ptr = tree
    s = X.shape[1]
    c_off = _rank_offsets(c, s)
    r_off = _rank_offsets(r, s)
    m_off = _rank_offsets(mt, s)
    bt2 = np.empty(c_off[-1])
    w = np.empty(r_off[-1])
    y = np.empty(m_off[-1])
    out = np.empty_like(X)
    for lvl in range(level_ptr.shape[0] - 2, -1, -1):
        for node in range(level_ptr[lvl], level_ptr[lvl + 1]):
            m = mt[node]
            rr = r[node]
            cn = c[node]
            bt = y[m_off[node]:m_off[node + 1]].reshape(m, s)     # scratch until the down sweep
            a = left[node]
            if a < 0:
                bt[:, :] = X[start[node]:stop[node]]
            else:
                b = right[node]
                ca = c[a]
                bt[:ca] = bt2[c_off[a]:c_off[a + 1]].reshape(ca, s)
                bt[ca:] = bt2[c_off[b]:c_off[b + 1]].reshape(c[b], s)
            b2 = bt2[c_off[node]:c_off[node + 1]].reshape(cn, s)
            if rr > 0:
                ku = kU[node]
                _apply_q(_blk(qv, off, S_QV, node, m, ku), tq[off[S_TQ, node]:off[S_TQ, node + 1]], m, bt, True)
                wn = w[r_off[node]:r_off[node + 1]].reshape(rr, s)
                wn[:, :] = bt[:rr]
                _lower_solve(_blk(lb, off, S_L, node, rr, rr), wn, False)
                b2[:, :] = bt[rr:]
                _mm(-1.0, _blk(gb, off, S_G, node, rr, cn), True, wn, False, 1.0, b2)
            else:
                b2[:, :] = bt
    for lvl in range(level_ptr.shape[0] - 1):
        for node in range(level_ptr[lvl], level_ptr[lvl + 1]):
            m = mt[node]
            rr = r[node]
            cn = c[node]
            yn = y[m_off[node]:m_off[node + 1]].reshape(m, s)
            if rr > 0:
                ku = kU[node]
                z1 = yn[:rr]
                z1[:, :] = w[r_off[node]:r_off[node + 1]].reshape(rr, s)
                _mm(-1.0, _blk(gb, off, S_G, node, rr, cn), False, yn[rr:], False, 1.0, z1)
                _lower_solve(_blk(lb, off, S_L, node, rr, rr), z1, True)
                _apply_q(_blk(qv, off, S_QV, node, m, ku), tq[off[S_TQ, node]:off[S_TQ, node + 1]], m, yn, False)
            a = left[node]
            if a < 0:
                out[start[node]:stop[node]] = yn
            else:
                b = right[node]
                ca = c[a]
                y[m_off[a]:m_off[a + 1]].reshape(mt[a], s)[r[a]:] = yn[:ca]
                y[m_off[b]:m_off[b + 1]].reshape(mt[b], s)[r[b]:] = yn[ca:]
    return out
