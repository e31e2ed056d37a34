"""Exact recovery of a linear HSS operator from input/output pairs, without gradient descent.

Fact P6 of HSS_PRIMER.md says that a symmetric HSS matrix of rank k on a tree
with leaf size m is determined by N >= max(m, 2k) + k generic samples
(x_i, A x_i), however large n is. The proof is constructive: the
Levitt-Martinsson black-box compression (``hssalg.HSSMatrix.from_matvec``)
only ever looks at one sketch Y = A Omega with one test block Omega, and in
the symmetric case the same pair serves for A^T. Training data *are* such a
sketch: stack the inputs as the columns of Omega = X^T and the outputs as
Y^T = A X^T. :func:`fit_linear_exact` runs that compression on the data, so
"learning" the operator costs O(n N^2) flops of QR and SVD on small blocks.

For an unsymmetric A forward data alone do not suffice (fact P6, negative
part: A* = D + u v^T and A' = D + u (v + w)^T with X w = 0 agree on every
sample); the scheme then also needs pairs (psi_j, A^T psi_j), the "adjoint
data" ``X_adj``, ``Y_adj``.
"""

import numbers

import numpy as np

import hssalg
from hssalg import _from_matvec as _lm
from hssalg._validation import as_finite_array

__all__ = ["fit_linear_exact", "min_samples_exact"]


def _check_tree(tree):
    if not isinstance(tree, hssalg.ClusterTree):
        raise TypeError(f"tree must be a hssalg.ClusterTree, got {type(tree).__name__}")
    return tree


def _check_rank(rank):
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral):
        raise TypeError(f"rank must be an integer >= 0, got {type(rank).__name__} {rank!r}")
    if rank < 0:
        raise ValueError(f"rank must be an integer >= 0, got {rank}")
    return int(rank)


def min_samples_exact(tree, rank):
    """Fewest samples N with which :func:`fit_linear_exact` recovers a rank-``rank`` operator.

    ``max_i (r_i + k_i)`` over the nodes i of the tree, where r_i is the leaf
    size for a leaf and ``k_a + k_b`` (the children's ranks) above, and
    ``k_i = min(rank, r_i, n - m_i)``; for a balanced tree with leaf size m this
    is ``max(m, 2 rank) + rank`` (capped at n). It does not grow with n.

    Parameters
    ----------
    tree : hssalg.ClusterTree
    rank : int >= 0

    Returns
    -------
    int
    """
    return _lm._fixed_sample_size(_check_tree(tree), _check_rank(rank), 0)


def _as_pairs(X, Y, n, names):
    """Validate a pair of sample blocks (N, n) and return them as float64 arrays."""
    nx, ny = names
    out = []
    for name, a in ((nx, X), (ny, Y)):
        shape = np.shape(a)
        if len(shape) != 2:
            raise ValueError(f"{name} must be a 2-D array (N samples, n), got shape {shape}")
        if shape[1] != n:
            raise ValueError(f"{name} has {shape[1]} columns but the tree has n = {n} indices; "
                             f"{name} must have shape (N, {n}), one sample per row")
        out.append(as_finite_array(a, name, dtype=np.float64))
    if out[0].shape[0] != out[1].shape[0]:
        raise ValueError(f"{nx} has {out[0].shape[0]} samples (rows) but {ny} has {out[1].shape[0]}")
    return out


def fit_linear_exact(X, Y, tree, rank, symmetric=True, X_adj=None, Y_adj=None, sym_tol=1e-6, rcond=0.0):
    """Recover a linear HSS operator from input/output pairs by linear algebra.

    Given samples ``y_i = A x_i`` (rows of X and Y), build the HSS matrix of
    rank <= ``rank`` on ``tree`` that the Levitt-Martinsson black-box scheme
    (see :func:`hssalg.HSSMatrix.from_matvec`) computes when its test block is
    the data, ``Omega = X^T``, and its sample is ``A Omega = Y^T``. No gradient
    descent, no random numbers: the result is a deterministic function of the
    data.

    Parameters
    ----------
    X : (N, n) array_like
        Inputs, one sample per row, in the caller's index order.
    Y : (N, n) array_like
        Outputs ``Y = X A^T`` (row i is ``A x_i``).
    tree : hssalg.ClusterTree
        Tree on the indices 0..n-1 (its permutation is applied inside).
    rank : int >= 0
        HSS rank k of the target (an upper bound; nodes whose true rank is
        lower get their true rank).
    symmetric : bool
        True (default): the target is symmetric, A in H_s(T, k); the data serve
        as both sketches (Psi = Omega, Z = Y) and the result is exactly
        symmetric. False: the adjoint pairs ``X_adj``, ``Y_adj`` are required.
    X_adj, Y_adj : (N', n) array_like, optional
        Adjoint data for ``symmetric=False``: rows ``psi_j`` and ``A^T psi_j``.
    sym_tol : float
        With ``symmetric=True``, the data must show a symmetric operator:
        ``X Y^T = X A^T X^T`` has to be symmetric up to ``sym_tol`` relative
        (else a ValueError); set to ``np.inf`` to skip the check (noisy data).
    rcond : float in [0, 1)
        0 (default): the exact scheme. Above 0, a regularisation for data
        that are not exactly HSS of rank k: at every node, singular values of
        the test block below ``rcond`` times its largest are treated as zero
        (a truncated pseudo-inverse; those directions join the null space).
        Smooth inputs such as random fields are strongly correlated inside a
        leaf, so their test blocks are ill-conditioned and amplify the part of
        the data beyond rank k; 1e-2 to 1e-1 tames that (measured on 2-D
        Poisson with 10 samples: test error 0.19 -> 0.10 at k = 3). Choose it,
        like the rank, on held-out data.

    Returns
    -------
    H : hssalg.HSSMatrix
        float64, on ``tree``, ranks <= ``rank``.

    Raises
    ------
    ValueError
        Shapes that do not match the tree; fewer samples than
        :func:`min_samples_exact` (``max(m, 2k) + k`` for a balanced tree of
        leaf size m); data of an unsymmetric operator with ``symmetric=True``.
    TypeError
        ``symmetric=False`` without adjoint data, or wrong argument types.

    Notes
    -----
    *Why it works (fact P6).* Each node cancels its unknown diagonal block
    with the null space of its test block, which needs more samples than the
    block has rows: ``m`` for a leaf, ``2k`` above, plus the ``k`` directions
    of the basis it extracts. With ``N >= max(m, 2k) + k`` generic samples
    (Gaussian inputs, say) a target in H_s(T, k) is recovered exactly up to
    rounding, for every n. More samples are used too (the null spaces grow);
    they make the fit more robust to noise but are not needed.

    *Unsymmetric targets.* From forward data alone the operator is not
    identifiable when N < n: ``D + u v^T`` and ``D + u (v + w)^T`` with
    ``X w = 0`` are both of HSS rank 1 and agree on every sample. Hence
    ``symmetric=False`` needs adjoint samples (at least as many as forward
    ones by the same count); without them a TypeError says so.

    *Data that are not exactly HSS* (noise, a higher true rank) give the
    rank-k matrix this sketch-based scheme computes, not a least-squares
    optimum; check the residual ``||X H^T - Y|| / ||Y||`` on held-out data.

    Cost: O(n N^2) for the per-node QR and SVD of the sample blocks, memory
    O(n N); no n x n matrix is formed.
    """
    tree = _check_tree(tree)
    rank = _check_rank(rank)
    if not (isinstance(rcond, numbers.Real) and 0.0 <= rcond < 1.0):
        raise ValueError(f"rcond must be a number in [0, 1), got {rcond!r}")
    if not isinstance(symmetric, (bool, np.bool_)):
        raise TypeError(f"symmetric must be True or False, got {type(symmetric).__name__} {symmetric!r}")
    symmetric = bool(symmetric)
    n = tree.n
    X, Y = _as_pairs(X, Y, n, ("X", "Y"))
    need = min_samples_exact(tree, rank)
    N = X.shape[0]
    if N < need:
        raise ValueError(
            f"fit_linear_exact needs at least {need} samples for rank {rank} on this tree "
            f"(max(m, 2k) + k with leaf size m = {tree.leaf_size}, k = {rank}, capped at n = {n}), "
            f"got N = {N}")
    perm = tree.perm
    Om = np.ascontiguousarray(X.T[perm])          # tree order, n x N
    Ys = np.ascontiguousarray(Y.T[perm])
    if symmetric:
        if X_adj is not None or Y_adj is not None:
            raise TypeError("X_adj and Y_adj are only used with symmetric=False; the symmetric "
                            "scheme takes the forward data as its adjoint sketch")
        if not (isinstance(sym_tol, numbers.Real) and sym_tol >= 0):
            raise ValueError(f"sym_tol must be a number >= 0, got {sym_tol!r}")
        if np.isfinite(sym_tol):
            G = Om.T @ Ys                             # X A^T X^T: symmetric for symmetric A
            scale, asym = np.linalg.norm(G), np.linalg.norm(G - G.T)
            if scale > 0 and asym > sym_tol * scale:
                raise ValueError(
                    f"symmetric=True but the data are not those of a symmetric operator: X Y^T has a "
                    f"relative antisymmetric part {asym / scale:.2e} > sym_tol = {sym_tol:.1e}; pass "
                    "symmetric=False with adjoint data X_adj, Y_adj (A^T samples)")
        Ps, Z = Om, Ys
    else:
        if X_adj is None or Y_adj is None:
            raise TypeError(
                "symmetric=False needs adjoint data X_adj, Y_adj (rows psi_j and A^T psi_j): an "
                "unsymmetric HSS operator is not determined by forward samples alone when N < n "
                "(D + u v^T and D + u (v + w)^T with X w = 0 fit the same data; fact P6)")
        Xa, Ya = _as_pairs(X_adj, Y_adj, n, ("X_adj", "Y_adj"))
        if Xa.shape[0] < need:
            raise ValueError(f"fit_linear_exact needs at least {need} adjoint samples for rank {rank} "
                             f"on this tree, got {Xa.shape[0]}")
        if Xa.shape[0] != N:
            raise ValueError(f"X_adj has {Xa.shape[0]} samples but X has {N}; the scheme pairs them, "
                             "give as many adjoint samples as forward ones")
        Ps = np.ascontiguousarray(Xa.T[perm])
        Z = np.ascontiguousarray(Ya.T[perm])
    # directions below a few ulps of ||A||_F carry nothing; in the sketch's own scale (the
    # singular values of Y P grow with the size of the inputs) that is ||Y||_F / sqrt(N),
    # as in from_matvec
    norm_a = np.linalg.norm(Ys) / np.sqrt(N)
    rule = _lm._RankRule(rank, None, 0, 16 * np.finfo(np.float64).eps * norm_a)
    return _lm._compress(tree, Om, Ys, Ps, Z, symmetric, rule, rcond=float(rcond))
