"""ULV and Cholesky-ULV factorisations (hssalg.ulv) against dense numpy / scipy references."""

import re

import numpy as np
import pytest
import scipy.sparse.linalg as spla
from hypothesis import assume, given, strategies as st

import hssalg as hs
from hssalg.ulv import ULVFactor, factorize
from conftest import NOJIT
from strategies import EPS32, EPS64, MAX_N, dense_from_generators, hss_matrices, trees

NODE_MSG = re.compile(r"node (\d+) \(level (\d+), rows (\d+):(\d+) in tree order\)")


def backward_tol(H, eps):
    # Householder eliminations of blocks of at most max(leaf size, 2 k) rows, repeated once per
    # level on the way up: the backward error grows like depth * (block size) * eps, with the
    # block size absorbed into Frobenius norms (||A||_F >= ||A||_2)
    return 20 * eps * (H.tree.depth + 2)


def assert_backward_stable(A, X, B, tol):
    """||A X - B|| <= tol (||A|| ||X|| + ||B||), Frobenius norms."""
    res = np.linalg.norm(A @ X - B)
    assert res <= tol * (np.linalg.norm(A) * np.linalg.norm(X) + np.linalg.norm(B)), res


def well_posed(A, eps=EPS64):
    # random generators occasionally give a nearly singular matrix, and a LinAlgError is then
    # right. The rule (rcond estimate of a pivot block L of mt <= n rows below mt * eps, the
    # estimate never below the true rcond) implies cond_2(A) >= cond_2(L) >= cond_1(L) / mt
    # > 1 / (n^2 eps): below that bound an error is a false alarm
    return np.linalg.cond(A) < 1.0 / (A.shape[0] ** 2 * eps)


@st.composite
def mixed_rank_hss(draw, max_n=MAX_N):
    """Random generators with independent row and column ranks per node (0..5, any size).

    Ranks may exceed what a node can hold (then its bases are rank deficient) and row and
    column ranks differ, which random_hss never produces.
    """
    tree = draw(trees(max_n=max_n))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    n_nodes = tree.n_nodes
    kU = rng.integers(0, 6, n_nodes)
    kV = rng.integers(0, 6, n_nodes)
    kU[0] = kV[0] = 0
    m = tree.sizes
    gen = {kind: [None] * n_nodes for kind in ("D", "U", "V", "R", "W", "B12", "B21")}
    for i in range(n_nodes):
        p = tree.parent[i]
        if tree.left[i] < 0:
            gen["D"][i] = rng.standard_normal((m[i], m[i])) + 2 * np.sqrt(m[i]) * np.eye(m[i])
            if p >= 0:
                gen["U"][i] = rng.standard_normal((m[i], kU[i]))
                gen["V"][i] = rng.standard_normal((m[i], kV[i]))
        else:
            a, b = tree.left[i], tree.right[i]
            gen["B12"][i] = rng.standard_normal((kU[a], kV[b])) / 4
            gen["B21"][i] = rng.standard_normal((kU[b], kV[a])) / 4
        if p > 0:
            gen["R"][i] = rng.standard_normal((kU[i], kU[p])) / 2
            gen["W"][i] = rng.standard_normal((kV[i], kV[p])) / 2
    return hs.HSSMatrix.from_generators(tree, **gen)


def shifted(H, sigma):
    """H + sigma I through its generators (independent of hssalg.arithmetic)."""
    g = H.generators()
    g["D"] = [None if d is None else d + sigma * np.eye(d.shape[0]) for d in g["D"]]
    return hs.HSSMatrix.from_generators(H.tree, **g, dtype=H.dtype)


def factor_or_singular(H, A, **kw):
    try:
        return factorize(H, **kw)
    except np.linalg.LinAlgError:
        # never a false alarm on a well-conditioned matrix
        assert not well_posed(A, np.finfo(H.dtype).eps)
        assume(False)


# -- general ULV ------------------------------------------------------------------------------

@given(st.one_of(hss_matrices(), mixed_rank_hss()), st.integers(1, 3), st.integers(0, 1000))
def test_solve_is_backward_stable(H, s, seed):
    A = dense_from_generators(H)
    F = factor_or_singular(H, A)
    B = np.random.default_rng(seed).standard_normal((H.shape[0], s))
    X = F.solve(B)
    assert X.shape == B.shape
    assert_backward_stable(A, X, B, backward_tol(H, EPS64))
    x = F.solve(B[:, 0])
    assert x.shape == (H.shape[0],)
    assert_backward_stable(A, x, B[:, 0], backward_tol(H, EPS64))


@given(st.one_of(hss_matrices(), mixed_rank_hss()), st.integers(1, 3), st.integers(0, 1000))
def test_solve_recovers_x_from_h_at_x(H, s, seed):
    # F.solve(H @ x) ~ x, judged by its backward error: the forward error may be cond(A) larger
    A = dense_from_generators(H)
    F = factor_or_singular(H, A)
    Xtrue = np.random.default_rng(seed).standard_normal((H.shape[0], s))
    B = H @ Xtrue
    assert_backward_stable(A, F.solve(B), B, backward_tol(H, EPS64))


@given(st.one_of(hss_matrices(), mixed_rank_hss()), st.integers(1, 3), st.integers(0, 1000))
def test_transposed_solve(H, s, seed):
    A = dense_from_generators(H)
    F = factor_or_singular(H, A)
    B = np.random.default_rng(seed).standard_normal((H.shape[0], s))
    tol = backward_tol(H, EPS64)
    assert_backward_stable(A.T, F.solve(B, transpose=True), B, tol)
    # the transposed matrix has its own factorisation; both solve A^T x = b
    FT = factor_or_singular(H.T, A.T)
    assert_backward_stable(A.T, FT.solve(B), B, tol)
    assert_backward_stable(A, FT.solve(B, transpose=True), B, tol)


@given(st.one_of(hss_matrices(), mixed_rank_hss()))
def test_logdet_equals_slogdet(H):
    A = dense_from_generators(H)
    F = factor_or_singular(H, A)
    sign, logabs = F.logdet()
    ref_sign, ref_logabs = np.linalg.slogdet(A)
    assert sign == ref_sign
    # a backward error E of relative size ~ depth * eps moves log|det| by at most
    # n ||A^-1|| ||E||: relative tolerance on logabsdet plus that perturbation bound
    n = H.shape[0]
    bound = backward_tol(H, EPS64) * n * np.linalg.cond(A)
    assert abs(logabs - ref_logabs) <= 1e-12 * abs(ref_logabs) + bound
    assert factorize(H.T).logdet()[0] == sign


@given(hss_matrices(dtype=np.float32, max_n=80), st.integers(0, 1000))
def test_float32_solve(H, seed):
    A = dense_from_generators(H)
    F = factor_or_singular(H, A)
    assert F.dtype == np.float32
    b = np.random.default_rng(seed).standard_normal(H.shape[0])
    x = F.solve(b)
    assert x.dtype == np.float32
    # the factor is float64; the answer is rounded to float32 (relative eps32 per entry)
    assert_backward_stable(A, x.astype(np.float64), b, backward_tol(H, EPS32))


def test_single_leaf_is_dense_lu(rng):
    A = rng.standard_normal((30, 30))
    H = hs.HSSMatrix.from_dense(A, leaf_size=64)
    assert H.tree.n_nodes == 1
    F = factorize(H)
    b = rng.standard_normal(30)
    np.testing.assert_allclose(F.solve(b), np.linalg.solve(A, b), rtol=1e-10 * np.linalg.cond(A))
    np.testing.assert_allclose(F.logdet(), np.linalg.slogdet(A), rtol=1e-12)
    H1 = hs.HSSMatrix.from_dense(np.array([[-4.0]]))
    assert factorize(H1).solve(np.array([2.0])) == pytest.approx([-0.5])
    assert factorize(H1).logdet() == pytest.approx((-1.0, np.log(4.0)))


def test_rank_zero_is_block_diagonal(rng):
    tree = hs.ClusterTree.balanced(50, 8)
    H = hs.gallery.random_hss(tree, 0, seed=1)
    A = H.todense()
    b = rng.standard_normal(50)
    assert_backward_stable(A, factorize(H).solve(b), b, backward_tol(H, EPS64))


def test_nonsymmetric_from_dense_with_permutation(rng):
    n = 80 if NOJIT else 300
    pts = rng.random((n, 2))
    K = hs.gallery.gaussian_kernel_matrix(pts, 0.3) + np.diag(rng.uniform(1, 2, n))
    K[:, :5] += rng.standard_normal((n, 5)) * 1e-2       # not symmetric
    H = hs.HSSMatrix.from_dense(K, tree=hs.ClusterTree.from_points(pts, 10), rtol=1e-12)
    A = H.todense()
    F = factorize(H)
    B = rng.standard_normal((n, 4))
    assert_backward_stable(A, F.solve(B), B, backward_tol(H, EPS64))
    assert_backward_stable(A.T, F.solve(B, transpose=True), B, backward_tol(H, EPS64))


def test_factor_reuse(rng):
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(200, 16), 5, seed=4)
    A = H.todense()
    F = factorize(H)
    assert isinstance(F, ULVFactor)
    assert F.shape == (200, 200) and F.dtype == np.float64 and not F.spd
    assert F.nbytes > 0 and "ULV" in repr(F)
    B = rng.standard_normal((200, 5))
    X = F.solve(B)
    for j in range(5):                    # one factor, many solves, same answers
        np.testing.assert_array_equal(F.solve(B[:, j]), X[:, j])
    assert_backward_stable(A, X, B, backward_tol(H, EPS64))
    assert not np.shares_memory(X, B)


def test_hssmatrix_factorize_and_solve_methods(rng):
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(200, 16), 5, seed=4)
    F = factorize(H)
    B = rng.standard_normal((200, 3))
    X = F.solve(B)
    assert isinstance(H.factorize(), ULVFactor)
    np.testing.assert_allclose(H.solve(B), X, rtol=0, atol=1e-12 * np.abs(X).max())
    np.testing.assert_allclose(H.solve(B, transpose=True), F.solve(B, transpose=True),
                               rtol=0, atol=1e-12 * np.abs(X).max())
    G = hs.gallery.poisson1d_green_hss(200, leaf_size=16)
    assert H.factorize(spd=False).spd is False and G.factorize(spd=True).spd is True
    np.testing.assert_allclose(G.solve(B, spd=True), factorize(G).solve(B), rtol=1e-8)


def test_aslinearoperator_applies_the_inverse(rng):
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(150, 16), 4, seed=2)
    F = factorize(H)
    M = F.aslinearoperator()
    assert isinstance(M, spla.LinearOperator) and M.shape == (150, 150) and M.dtype == np.float64
    b = rng.standard_normal(150)
    B = rng.standard_normal((150, 3))
    np.testing.assert_array_equal(M.matvec(b), F.solve(b))
    np.testing.assert_array_equal(M.rmatvec(b), F.solve(b, transpose=True))
    np.testing.assert_array_equal(M.matmat(B), F.solve(B))
    # as a preconditioner of the very same matrix GMRES converges at once
    x, info = spla.gmres(H.aslinearoperator(), b, M=M, rtol=1e-10, atol=0.0)
    assert info == 0
    assert np.linalg.norm(H @ x - b) <= 1e-8 * np.linalg.norm(b)


def test_bad_right_hand_sides(rng):
    F = factorize(hs.gallery.random_hss(hs.ClusterTree.balanced(40, 8), 3, seed=0))
    with pytest.raises(ValueError, match="b has 39 rows but the matrix has 40 columns"):
        F.solve(np.ones(39))
    with pytest.raises(ValueError, match="b must be a vector"):
        F.solve(np.ones((40, 2, 2)))
    bad = np.ones(40)
    bad[3] = np.nan
    with pytest.raises(ValueError, match="b contains 1 non-finite entry"):
        F.solve(bad)
    with pytest.raises(ValueError, match="b contains"):
        F.solve(np.full((40, 2), np.inf), transpose=True)
    with pytest.raises(TypeError, match="H must be a hssalg.HSSMatrix"):
        factorize(np.eye(3))


def test_overflowing_solution_raises():
    H = hs.HSSMatrix.from_dense(1e-10 * np.eye(4))
    with pytest.raises(FloatingPointError, match="ULV solve: the solution overflowed"):
        factorize(H).solve(np.full(4, 1e300))


def _singular_leaf_matrix():
    """Block-diagonal (rank 0) matrix whose third leaf block has two equal rows."""
    tree = hs.ClusterTree.balanced(40, 8)
    g = hs.gallery.random_hss(tree, 0, seed=2).generators()
    leaf = int(tree.leaves[2])
    D = list(g["D"])
    Dl = D[leaf].copy()
    Dl[3] = Dl[1]
    D[leaf] = Dl
    g["D"] = D
    return hs.HSSMatrix.from_generators(tree, **g), leaf


def test_singular_block_raises_naming_the_node():
    H, leaf = _singular_leaf_matrix()
    with pytest.raises(np.linalg.LinAlgError, match=r"ULV factorisation: the reduced diagonal block "
                       r"of node \d+ .* is singular to working precision \(rcond ") as err:
        factorize(H)
    node, level, lo, hi = map(int, NODE_MSG.search(str(err.value)).groups())
    tree = H.tree
    assert node == leaf and level == tree.level[leaf]
    assert (lo, hi) == (tree.start[leaf], tree.stop[leaf])
    with pytest.raises(np.linalg.LinAlgError, match="singular"):
        factorize(H).solve(np.ones(40))


def test_numerically_singular_matrix_raises_no_nans(rng):
    # exactly singular in exact arithmetic but not at a leaf: it shows at an upper node
    A = hs.gallery.banded_inverse(64, 2, seed=1)
    A[:, 40] = A[:, 3]
    H = hs.HSSMatrix.from_dense(A, leaf_size=8, rtol=1e-14)
    with pytest.raises(np.linalg.LinAlgError, match=NODE_MSG.pattern):
        factorize(H)


# -- Cholesky-ULV ------------------------------------------------------------------------------

def check_spd(H, seed=0):
    A = dense_from_generators(H)
    F = factorize(H, spd=True)
    assert F.spd and "Cholesky-ULV" in repr(F)
    B = np.random.default_rng(seed).standard_normal((H.shape[0], 2))
    tol = backward_tol(H, EPS64)
    assert_backward_stable(A, F.solve(B), B, tol)
    assert_backward_stable(A, F.solve(B[:, 0], transpose=True), B[:, 0], tol)
    sign, logdet = F.logdet()
    ref = np.linalg.slogdet(A)
    assert sign == 1.0 and ref[0] == 1.0
    bound = tol * H.shape[0] * np.linalg.cond(A)
    assert abs(logdet - ref[1]) <= 1e-12 * abs(ref[1]) + bound
    # the general factorisation agrees
    assert abs(factorize(H).logdet()[1] - logdet) <= 1e-12 * abs(logdet) + bound
    return F


@given(st.integers(1, MAX_N), st.integers(1, 20))
def test_spd_poisson_green(n, leaf_size):
    check_spd(hs.gallery.poisson1d_green_hss(n, leaf_size=leaf_size))


@given(trees(), st.integers(0, 6), st.integers(0, 2**16))
def test_spd_shifted_random_symmetric(tree, rank, seed):
    H = hs.gallery.random_hss(tree, rank, seed=seed, symmetric=True)
    A = dense_from_generators(H)
    lam_min = np.linalg.eigvalsh(A)[0]
    check_spd(shifted(H, 1.0 - lam_min), seed)


@pytest.mark.parametrize("rtol", [1e-12, 1e-4])
def test_spd_gaussian_kernel_from_dense(rng, rtol):
    n = 60 if NOJIT else 400
    pts = rng.random((n, 2))
    K = hs.gallery.gaussian_kernel_matrix(pts, 0.2, shift=1e-2)
    H = hs.HSSMatrix.from_dense(K, tree=hs.ClusterTree.from_points(pts, 16), rtol=rtol)
    # from_dense of a symmetric matrix: U = V but R and W need not agree, only their spans
    F = check_spd(H)
    b = rng.standard_normal(n)
    assert np.linalg.norm(F.solve(b) - np.linalg.solve(K, b)) <= 1e3 * rtol * np.linalg.cond(K) * np.linalg.norm(
        np.linalg.solve(K, b))


def test_spd_fails_on_indefinite_naming_the_node():
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(100, 10), 4, seed=1, symmetric=True)
    assert np.linalg.eigvalsh(H.todense())[0] < 0
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite") as err:
        factorize(H, spd=True)
    assert NODE_MSG.search(str(err.value))
    # the general factorisation handles the same (nonsingular) matrix
    b = np.ones(100)
    assert_backward_stable(H.todense(), factorize(H).solve(b), b, backward_tol(H, EPS64))
    # negative definite: the very first leaf fails
    A = H.todense()
    Hneg = shifted(H, -1.0 - np.linalg.eigvalsh(A)[-1])
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite") as err:
        factorize(Hneg, spd=True)
    node, level, lo, hi = map(int, NODE_MSG.search(str(err.value)).groups())
    assert Hneg.tree.left[node] < 0 and lo == 0


def test_spd_singular_semidefinite_raises():
    tree = hs.ClusterTree.balanced(32, 8)
    g = hs.gallery.random_hss(tree, 0, seed=0, symmetric=True).generators()
    leaf = int(tree.leaves[1])
    v = np.arange(1.0, 9.0)
    D = list(g["D"])
    D = [None if d is None else d @ d.T + np.eye(8) for d in D]
    D[leaf] = np.outer(v, v)                                  # rank 1: semidefinite
    g["D"] = D
    H = hs.HSSMatrix.from_generators(tree, **g)
    with pytest.raises(np.linalg.LinAlgError, match=r"Cholesky-ULV factorisation: .*node (\d+)") as err:
        factorize(H, spd=True)
    assert int(NODE_MSG.search(str(err.value)).group(1)) == leaf


def test_spd_refuses_unsymmetric():
    H = shifted(hs.gallery.random_hss(hs.ClusterTree.balanced(64, 8), 3, seed=3), 20.0)
    with pytest.raises(ValueError, match=r"spd=True needs a symmetric matrix, but at node \d+"):
        factorize(H, spd=True)
    G = dense_from_generators(hs.gallery.random_hss(hs.ClusterTree.balanced(64, 8), 3, seed=3))
    Hk = hs.HSSMatrix.from_dense(G + G.T + 30 * np.eye(64) + np.triu(np.ones((64, 64))) * 1e-3,
                                 leaf_size=8, rtol=1e-12)
    with pytest.raises(ValueError, match="spd=True needs a symmetric matrix"):
        factorize(Hk, spd=True)
    with pytest.raises(TypeError, match="spd must be True or False"):
        factorize(H, spd="yes")


def test_spd_float32(rng):
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(120, 10), 4, seed=5, symmetric=True,
                              dtype=np.float32)
    A = dense_from_generators(H)
    H = shifted(H, 1.0 - np.linalg.eigvalsh(A)[0])
    A = dense_from_generators(H)
    F = factorize(H, spd=True)
    b = rng.standard_normal(120)
    x = F.solve(b)
    assert x.dtype == np.float32
    assert_backward_stable(A, x.astype(np.float64), b, backward_tol(H, EPS32))
    assert F.logdet()[1] == pytest.approx(np.linalg.slogdet(A)[1], rel=1e-5)
