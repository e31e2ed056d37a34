"""from_dense: exact recovery (P1), Green's functions (P2), tolerances, errors."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

import hssalg as hs
from conftest import NOJIT
from strategies import EPS64, block_row_rank, dense_from_generators, hss_matrices, trees

GREEN_SIZES = [1, 2, 17, 64, 200] if NOJIT else [1, 2, 17, 64, 200, 513, 1024]


@given(hss_matrices(max_rank=5))
def test_p1_recompressing_the_dense_form_recovers_the_matrix(H):
    A = dense_from_generators(H)
    G = hs.HSSMatrix.from_dense(A, tree=H.tree, rtol=1e-12)
    # ranks never exceed the generating ones: the SVD finds the true block ranks
    assert np.all(G.row_ranks <= H.row_ranks) and np.all(G.col_ranks <= H.col_ranks)
    # dropped singular values are <= 1e-12 of their block; a few levels of them
    hs.testing.assert_hss_allclose(G, A, rtol=1e-12 * 10 * (H.tree.depth + 1) + 100 * EPS64 * H.tree.depth)


@given(hss_matrices(max_n=70, max_rank=4))
def test_p1_off_diagonal_block_rows_have_rank_at_most_k(H):
    A = dense_from_generators(H)
    tol = 1e-10 * max(np.linalg.norm(A, 2), 1e-300)
    for i in range(1, H.tree.n_nodes):
        r, c = block_row_rank(A, H.tree, i, tol)
        assert r <= H.row_ranks[i] and c <= H.col_ranks[i]


@pytest.mark.parametrize("n", GREEN_SIZES)
@pytest.mark.parametrize("leaf_size", [1, 8, 64])
def test_p2_poisson_green_is_rank_two(n, leaf_size):
    G = hs.gallery.poisson1d_green(n)
    H = hs.HSSMatrix.from_dense(G, leaf_size=leaf_size, rtol=1e-12)
    assert H.max_rank <= 2
    assert hs.testing.relative_error(H, G) <= 1e-12


@pytest.mark.parametrize("b", [0, 1, 2, 4])
@pytest.mark.parametrize("tree_kind", ["balanced", "random"])
def test_p2_banded_inverse_has_rank_at_most_2b(b, tree_kind):
    n = 150 if NOJIT else 400
    A = hs.gallery.banded_inverse(n, b, seed=b)
    if tree_kind == "balanced":
        tree = hs.ClusterTree.balanced(n, 16)
    else:
        from strategies import random_split_tree
        tree = random_split_tree(n, 10, seed=b)
        # P2 holds for contiguous index ranges; the random tree's permutation is dropped
        tree = hs.ClusterTree(tree.parent, tree.left, tree.right, tree.start, tree.stop,
                              tree.level_ptr, np.arange(n))
    H = hs.HSSMatrix.from_dense(A, tree=tree, rtol=1e-12)
    assert H.max_rank <= 2 * b
    assert hs.testing.relative_error(H, A) <= 1e-11


def test_error_follows_rtol():
    n = 600
    A = hs.gallery.toeplitz_inverse_distance(n)
    errs, ranks = [], []
    for rtol in [1e-2, 1e-4, 1e-6, 1e-8, 1e-10]:
        H = hs.HSSMatrix.from_dense(A, leaf_size=32, rtol=rtol)
        err = np.linalg.norm(H.todense() - A, 2) / np.linalg.norm(A, 2)
        # each level truncates at rtol of its blocks: allow a factor of the depth
        assert err <= 2 * (H.tree.depth + 1) * rtol
        errs.append(err)
        ranks.append(H.max_rank)
    assert ranks == sorted(ranks) and ranks[0] < ranks[-1]
    assert errs[-1] < errs[0]


def test_max_rank_and_atol():
    A = hs.gallery.toeplitz_inverse_distance(300)
    H = hs.HSSMatrix.from_dense(A, leaf_size=20, rtol=0.0, max_rank=3)
    assert H.max_rank == 3
    H0 = hs.HSSMatrix.from_dense(A, leaf_size=20, rtol=0.0, max_rank=0)
    assert H0.max_rank == 0
    big_atol = hs.HSSMatrix.from_dense(A, leaf_size=20, rtol=0.0, atol=10.0)
    assert big_atol.max_rank == 0
    # rtol = 1 keeps only directions tied with the largest singular value
    assert hs.HSSMatrix.from_dense(A, leaf_size=20, rtol=1.0).max_rank <= 1


@given(trees(max_n=120), st.integers(0, 100))
def test_geometric_tree_products_in_caller_order(tree, seed):
    rng = np.random.default_rng(seed)
    pts = rng.random((tree.n, 2))
    K = hs.gallery.gaussian_kernel_matrix(pts, 0.3, shift=1.0)
    H = hs.HSSMatrix.from_dense(K, tree=tree, rtol=1e-10)
    x = rng.standard_normal(tree.n)
    assert np.linalg.norm(H @ x - K @ x) <= 1e-8 * np.linalg.norm(K) * np.linalg.norm(x)


def test_float32_input_gives_float32_matrix():
    A = hs.gallery.toeplitz_inverse_distance(200).astype(np.float32)
    H = hs.HSSMatrix.from_dense(A, leaf_size=16, rtol=1e-5)
    assert H.dtype == np.float32
    assert hs.testing.relative_error(H, A) <= 1e-4


def test_progress_line(capsys):
    A = hs.gallery.toeplitz_inverse_distance(128)
    hs.HSSMatrix.from_dense(A, leaf_size=16, progress=True)
    err = capsys.readouterr().err
    assert "from_dense" in err and f"{hs.ClusterTree.balanced(128, 16).n_nodes}/" in err


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(rtol=-1e-3), ValueError, r"rtol must lie in \[0, 1\], got -0.001"),
    (dict(rtol=2.0), ValueError, "rtol must lie in"),
    (dict(rtol=float("nan")), ValueError, "rtol must be finite"),
    (dict(rtol="1e-3"), TypeError, "rtol must be a real number"),
    (dict(atol=-1.0), ValueError, "atol must be a finite number >= 0"),
    (dict(max_rank=-1), ValueError, "max_rank must be an integer >= 0"),
    (dict(leaf_size=0), ValueError, "leaf_size must be an integer >= 1"),
    (dict(tree=hs.ClusterTree.balanced(50, 8)), ValueError, "tree has 50 indices but A has 40 rows"),
    (dict(tree="balanced"), TypeError, "tree must be a hssalg.ClusterTree"),
])
def test_from_dense_rejects_bad_arguments(kwargs, exc, msg):
    A = hs.gallery.toeplitz_inverse_distance(40)
    with pytest.raises(exc, match=msg):
        hs.HSSMatrix.from_dense(A, **kwargs)


@pytest.mark.parametrize("A, msg", [
    (np.ones((3, 4)), r"A must be square, got shape \(3, 4\)"),
    (np.ones(5), r"A must be a 2-D array, got shape \(5,\)"),
    (np.array([[1.0, np.nan], [0.0, 1.0]]), "A contains 1 non-finite entry"),
    (np.zeros((0, 0)), "at least one row"),
])
def test_from_dense_rejects_bad_matrices(A, msg):
    with pytest.raises(ValueError, match=msg):
        hs.HSSMatrix.from_dense(A)
