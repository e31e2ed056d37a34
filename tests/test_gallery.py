"""Gallery matrices against their defining formulas (independent of the HSS code)."""

import numpy as np
import pytest

import hssalg as hs
from strategies import dense_from_generators


@pytest.mark.parametrize("n", [1, 2, 9, 100])
def test_poisson1d_green_inverts_second_difference(n):
    G = hs.gallery.poisson1d_green(n)
    h = 1.0 / (n + 1)
    L = (2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)) / h**2
    assert np.linalg.norm(L @ G - np.eye(n)) <= 1e-10 * np.sqrt(n)
    assert np.allclose(G, G.T)


@pytest.mark.parametrize("n, leaf", [(1, 4), (7, 2), (100, 8), (257, 16)])
def test_poisson1d_green_hss_equals_dense_formula(n, leaf):
    H = hs.gallery.poisson1d_green_hss(n, leaf_size=leaf)
    G = hs.gallery.poisson1d_green(n)
    assert np.abs(dense_from_generators(H) - G).max() <= 1e-15 * 4 * np.abs(G).max()
    assert H.max_rank == (2 if n > leaf else 0)


def test_poisson1d_green_hss_large_n_without_dense():
    n = 2**17
    H = hs.gallery.poisson1d_green_hss(n, leaf_size=64)
    # column j = 1 (1-based) of G is h^2 (n + 1 - i) / (n + 1) * 1
    e = np.zeros(n)
    e[0] = 1.0
    i = np.arange(1, n + 1)
    h = 1.0 / (n + 1)
    col = h * h * (n + 1 - i) / (n + 1)
    assert np.abs(H @ e - col).max() <= 1e-12 * col.max()
    assert H.nbytes < 2 * 8 * n * 70


def test_poisson1d_green_hss_rejects_permuted_tree():
    tree = hs.ClusterTree.from_points(np.random.default_rng(0).random(40), 4)
    with pytest.raises(ValueError, match="identity permutation"):
        hs.gallery.poisson1d_green_hss(40, tree=tree)


@pytest.mark.parametrize("b", [0, 1, 3])
def test_banded_inverse_is_inverse_of_banded(b):
    A = hs.gallery.banded_inverse(60, b, seed=1)
    M = np.linalg.inv(A)
    i, j = np.indices(M.shape)
    assert np.abs(M[np.abs(i - j) > b]).max() <= 1e-10 * np.abs(M).max()


def test_random_hss_ranks_and_symmetry():
    tree = hs.ClusterTree.balanced(300, 10)
    H = hs.gallery.random_hss(tree, 6, seed=0)
    assert H.max_rank == 6
    S = hs.gallery.random_hss(tree, 6, seed=0, symmetric=True)
    A = dense_from_generators(S)
    assert np.allclose(A, A.T, atol=1e-13)
    # leaves of size 2 cap the rank at 2; their parents at 4
    small = hs.gallery.random_hss(hs.ClusterTree.balanced(16, 2), 9, seed=0)
    assert small.ranks[small.tree.leaves].max() == 2
    assert hs.gallery.random_hss(tree, 6, seed=0, dtype=np.float32).dtype == np.float32
    assert hs.gallery.random_hss(500, 4).shape == (500, 500)


def test_toeplitz_and_gaussian_formulas():
    T = hs.gallery.toeplitz_inverse_distance(5)
    assert T[0, 4] == 1 / 5 and T[3, 1] == 1 / 3 and T[2, 2] == 1
    pts = np.random.default_rng(0).random((30, 3))
    K = hs.gallery.gaussian_kernel_matrix(pts, 0.4, shift=2.0)
    ref = np.array([[np.exp(-np.sum((p - q) ** 2) / (2 * 0.4**2)) for q in pts] for p in pts]) + 2 * np.eye(30)
    assert np.allclose(K, ref, rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="h must be > 0"):
        hs.gallery.gaussian_kernel_matrix(pts, 0.0)
    with pytest.raises(ValueError, match="b must be an integer >= 0"):
        hs.gallery.banded_inverse(10, -1)
