"""HSSMatrix: fast products against a dense reference built independently (fact P1)."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

import hssalg as hs
from strategies import EPS32, EPS64, dense_from_generators, hss_matrices


def product_tol(H, X, eps):
    # a product through O(depth) small factors: error ~ depth * eps * ||A|| ||X||
    A = dense_from_generators(H)
    return 50 * eps * (H.tree.depth + 2) * np.linalg.norm(A) * np.linalg.norm(X), A


@given(hss_matrices(), st.integers(1, 4), st.integers(0, 1000))
def test_p1_matvec_equals_dense(H, s, seed):
    X = np.random.default_rng(seed).standard_normal((H.shape[1], s))
    tol, A = product_tol(H, X, EPS64)
    assert np.linalg.norm(H @ X - A @ X) <= tol
    assert np.linalg.norm(H.matvec(X[:, 0]) - A @ X[:, 0]) <= tol


@given(hss_matrices(), st.integers(1, 3), st.integers(0, 1000))
def test_rmatvec_and_transpose_equal_dense_transpose(H, s, seed):
    X = np.random.default_rng(seed).standard_normal((H.shape[0], s))
    tol, A = product_tol(H, X, EPS64)
    assert np.linalg.norm(H.rmatvec(X) - A.T @ X) <= tol
    assert np.linalg.norm(H.T @ X - A.T @ X) <= tol
    assert np.linalg.norm(H.T.T @ X - A @ X) <= tol
    assert np.linalg.norm(X.T @ H - X.T @ A) <= tol


@given(hss_matrices())
def test_adjoint_dot_test(H):
    hs.testing.adjoint_test(H)
    hs.testing.adjoint_test(H.T)


@given(hss_matrices(max_n=80))
def test_todense_and_diagonal(H):
    A = dense_from_generators(H)
    tol = 50 * EPS64 * (H.tree.depth + 2) * max(np.linalg.norm(A), 1.0)
    assert np.linalg.norm(H.todense() - A) <= tol * np.sqrt(H.shape[0])
    assert np.array_equal(H.diagonal(), np.diag(A))
    assert np.linalg.norm(H.T.todense() - A.T) <= tol * np.sqrt(H.shape[0])


@given(hss_matrices(dtype=np.float32), st.integers(0, 100))
def test_float32_products(H, seed):
    X = np.random.default_rng(seed).standard_normal((H.shape[0], 2))
    tol, A = product_tol(H, X, EPS32)
    Y = H @ X
    assert Y.dtype == np.float32
    assert np.linalg.norm(Y - A @ X) <= tol


@given(hss_matrices(symmetric=True))
def test_symmetric_generators_give_symmetric_matrix(H):
    A = dense_from_generators(H)
    assert np.allclose(A, A.T, rtol=0, atol=1e-13 * max(np.abs(A).max(), 1))


def test_rank_zero_is_block_diagonal():
    tree = hs.ClusterTree.balanced(50, 7)
    H = hs.gallery.random_hss(tree, 0, seed=3)
    assert H.max_rank == 0
    A = H.todense()
    for i in tree.leaves:
        A[tree.start[i]:tree.stop[i], tree.start[i]:tree.stop[i]] = 0
    assert not A.any()


def test_n_equal_one():
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(1, 1), 3, seed=0)
    assert H.shape == (1, 1) and H.max_rank == 0
    d = H.todense()[0, 0]
    assert np.allclose(H @ np.array([2.0]), [2 * d])


def test_attributes():
    tree = hs.ClusterTree.balanced(256, 16)
    H = hs.gallery.random_hss(tree, 5, seed=1)
    assert H.shape == (256, 256) and H.dtype == np.float64 and H.tree is tree
    assert H.ranks.shape == (tree.n_nodes,) and H.ranks[0] == 0 and H.max_rank == 5
    n_leaf = tree.leaves.size
    inner_nonroot = tree.n_nodes - n_leaf - 1
    expected = 8 * (256 * 16 + 2 * 256 * 5 + 2 * 25 * (tree.n_nodes - 3) + 2 * 25 * (tree.n_nodes - n_leaf))
    assert H.nbytes == expected, (H.nbytes, expected, inner_nonroot)
    assert "max_rank=5" in repr(H)
    assert "storage=explicit" in repr(H) and "storage=interpolative" in repr(H.to_interpolative())


def test_from_generators_round_trip_and_checks():
    tree = hs.ClusterTree.from_points(np.random.default_rng(0).random((90, 2)), 10)
    H = hs.gallery.random_hss(tree, 4, seed=2)
    g = H.generators()
    G = hs.HSSMatrix.from_generators(tree, **g)
    X = np.random.default_rng(1).standard_normal((90, 2))
    assert np.array_equal(G @ X, H @ X)
    # generators of a transposed matrix build the transpose
    GT = hs.HSSMatrix.from_generators(tree, **H.T.generators())
    assert np.allclose(GT @ X, H.T @ X, rtol=1e-14, atol=1e-14)

    leaf = int(tree.leaves[0])
    bad = dict(g)
    bad["U"] = list(g["U"])
    bad["U"][leaf] = np.ones((3, 4))
    with pytest.raises(ValueError, match=rf"U\[{leaf}\] must have shape"):
        hs.HSSMatrix.from_generators(tree, **bad)
    missing = dict(g)
    missing["D"] = list(g["D"])
    missing["D"][leaf] = None
    with pytest.raises(ValueError, match=rf"D\[{leaf}\] is missing"):
        hs.HSSMatrix.from_generators(tree, **missing)
    nan = dict(g)
    nan["B12"] = list(g["B12"])
    nan["B12"][0] = np.full(g["B12"][0].shape, np.nan)
    with pytest.raises(ValueError, match=r"B12\[0\] contains"):
        hs.HSSMatrix.from_generators(tree, **nan)
    with pytest.raises(ValueError, match="one entry per tree node"):
        hs.HSSMatrix.from_generators(tree, **{**g, "R": g["R"][:-1]})
    with pytest.raises(TypeError, match="tree must be a hssalg.ClusterTree"):
        hs.HSSMatrix.from_generators("tree", **g)


@pytest.mark.parametrize("x, exc, msg", [
    (np.ones(63), ValueError, "x has 63 rows but the matrix has 64 columns"),
    (np.ones((64, 2, 2)), ValueError, r"x must be a vector \(n,\) or a block \(n, s\), got shape \(64, 2, 2\)"),
    (np.r_[np.ones(63), np.nan], ValueError, "x contains 1 non-finite entry"),
    (np.r_[np.ones(63), np.inf], ValueError, "non-finite"),
    (np.ones(64, dtype=complex), TypeError, "x must be real"),
    (np.array(["a"] * 64), TypeError, "numeric"),
])
def test_products_reject_bad_input(x, exc, msg):
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(64, 8), 3)
    with pytest.raises(exc, match=msg):
        H @ x
    with pytest.raises(exc, match=msg):
        H.rmatvec(x)


def test_left_product_shape_error_and_hss_matmul_not_dense():
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(64, 8), 3)
    with pytest.raises(ValueError, match="the left factor has 10 columns but the matrix has 64 rows"):
        np.ones((2, 10)) @ H
    with pytest.raises(ValueError, match="X must be a 2-D block"):
        H.matmat(np.ones(64))


def test_matrix_is_immutable():
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(64, 8), 3)
    with pytest.raises(AttributeError):
        H.foo = 1
    D0 = H.generators()["D"][H.tree.leaves[0]]
    with pytest.raises(ValueError):
        D0[0, 0] = 1.0


def test_aslinearoperator_matches_products():
    from scipy.sparse.linalg import LinearOperator, gmres
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(120, 10), 4, seed=5).shift(30.0)
    L = H.aslinearoperator()
    assert isinstance(L, LinearOperator) and L.shape == H.shape and L.dtype == H.dtype
    X = np.random.default_rng(0).standard_normal((120, 3))
    assert np.array_equal(L @ X[:, 0], H @ X[:, 0])
    assert np.array_equal(L.matmat(X), H @ X)
    assert np.array_equal(L.rmatvec(X[:, 1]), H.rmatvec(X[:, 1]))
    # scipy's Krylov solvers accept it: a diagonally dominated system converges
    x, info = gmres(L, X[:, 2], rtol=1e-10, atol=0.0)
    assert info == 0
    assert np.linalg.norm(H @ x - X[:, 2]) <= 1e-8 * np.linalg.norm(X[:, 2])
