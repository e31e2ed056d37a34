"""from_matvec: black-box recovery from products with A and A^T only (fact P6)."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

import hssalg as hs
from hssalg._from_matvec import MatvecInfo, from_matvec
from conftest import NOJIT
from strategies import hss_matrices, random_split_tree

# n = 256 ... 8192 at a fixed leaf size, so the leaf blocks never change size
SIZES = [64, 128, 256, 512] if NOJIT else [256, 1024, 4096, 8192]
LEAF = 16 if NOJIT else 64
DENSE_MAX = 1024            # dense references up to here, probe vectors above
P = 10                      # the default oversampling
PROBES = 8                  # the default number of probe vectors


def _fixed_rank_products(m, k, p=P):
    """Sketch columns of the fixed-rank mode: max(m, 2k) + k + p (leaf size m, rank k)."""
    return max(m + k, 3 * k) + p


def _error(H, A, n, seed=99):
    """Relative error of H against the black box A: dense up to DENSE_MAX, probes above."""
    if n <= DENSE_MAX:
        return hs.testing.relative_error(H, A)
    X = np.random.default_rng(seed).standard_normal((n, 6))
    AX = A @ X
    return np.linalg.norm(H @ X - AX) / np.linalg.norm(AX)


def _forbidden(_X):
    raise AssertionError("rmatvec must not be called when symmetric=True")


@pytest.mark.parametrize("symmetric", [False, True])
def test_p6_random_hss_recovered_from_a_number_of_products_independent_of_n(symmetric):
    k = 6
    counts = set()
    for n in SIZES:
        A = hs.gallery.random_hss(hs.ClusterTree.balanced(n, LEAF), k, seed=n, symmetric=symmetric)
        H, info = from_matvec(A.matvec, _forbidden if symmetric else A.rmatvec, A.tree,
                              rank=k, symmetric=symmetric)
        # the sketch is exact for a rank-k matrix; rounding through a few levels of
        # well-conditioned Gaussian pseudo-inverses stays far below 1e-10
        assert _error(H, A, n) <= 1e-10, n
        assert H.max_rank <= k
        counts.add((info.n_matvecs, info.n_rmatvecs, info.n_samples))
    s = _fixed_rank_products(LEAF, k)
    # the same sketch for every n: nothing grows with n
    assert counts == {(s + PROBES, 0 if symmetric else s, s)}


@pytest.mark.parametrize("symmetric", [False, True])
def test_p6_poisson_green_recovered_at_rank_two(symmetric):
    counts = set()
    for n in SIZES:
        G = hs.gallery.poisson1d_green_hss(n, leaf_size=LEAF)
        H, info = from_matvec(G.matvec, G.rmatvec, G.tree, rank=2, symmetric=symmetric)
        assert _error(H, G, n) <= 1e-10, n
        if symmetric:
            assert np.array_equal(H.row_ranks, H.col_ranks)
        counts.add(info.n_matvecs + info.n_rmatvecs)
    assert len(counts) == 1


def test_symmetric_result_is_exactly_symmetric():
    A = hs.gallery.random_hss(hs.ClusterTree.balanced(200, 16), 4, seed=3, symmetric=True)
    H, _ = from_matvec(A.matvec, None, A.tree, rank=4, symmetric=True)
    D = H.todense()
    assert np.array_equal(D, D.T) or np.abs(D - D.T).max() <= 1e-15 * np.abs(D).max()


@given(hss_matrices(max_rank=5), st.integers(0, 3))
def test_p6_exact_recovery_on_any_tree(H, extra):
    # balanced, geometric (permuted) and randomly split trees: leaves on many levels,
    # leaf size 1, leaf size >= n; a rank above the true one is harmless
    A = H.todense()
    sym = bool(np.abs(A - A.T).max() <= 1e-13 * max(np.abs(A).max(), 1e-300))
    G, info = from_matvec(H.matvec, H.rmatvec, H.tree, rank=H.max_rank + extra, symmetric=sym)
    assert hs.testing.relative_error(G, A) <= 1e-10
    assert info.n_samples <= H.shape[0]


def test_unbalanced_tree_with_leaves_on_many_levels():
    n = 300 if not NOJIT else 120
    tree = random_split_tree(n, 9, seed=7)
    assert len(set(tree.level[tree.leaves])) > 2
    for sym in (False, True):
        A = hs.gallery.random_hss(tree, 4, seed=1, symmetric=sym)
        H, _ = from_matvec(A.matvec, A.rmatvec, tree, rank=4, symmetric=sym)
        assert hs.testing.relative_error(H, A) <= 1e-10


def test_caller_order_with_a_geometric_tree():
    rng = np.random.default_rng(0)
    n = 240
    tree = hs.ClusterTree.from_points(rng.random((n, 2)), leaf_size=20)
    assert not tree.has_identity_perm
    Ad = hs.gallery.random_hss(tree, 5, seed=2).todense()       # caller's order
    H, _ = from_matvec(lambda X: Ad @ X, lambda X: Ad.T @ X, tree, rank=5)
    assert hs.testing.relative_error(H, Ad) <= 1e-10


def test_rank_zero_is_block_diagonal():
    tree = hs.ClusterTree.balanced(256, 32)
    A = hs.gallery.random_hss(tree, 0, seed=4)
    H, info = from_matvec(A.matvec, A.rmatvec, tree, rank=0)
    assert H.max_rank == 0
    assert hs.testing.relative_error(H, A) <= 1e-12
    assert info.n_samples == 32 + P


def test_single_leaf_tree_needs_n_products():
    A = np.random.default_rng(1).standard_normal((12, 12))
    tree = hs.ClusterTree.balanced(12, 64)
    H, info = from_matvec(lambda X: A @ X, lambda X: A.T @ X, tree, rank=3)
    assert info.n_samples == 12
    assert hs.testing.relative_error(H, A) <= 1e-12


def test_max_rank_caps_the_fixed_rank():
    A = hs.gallery.random_hss(hs.ClusterTree.balanced(128, 16), 6, seed=5)
    H, _ = from_matvec(A.matvec, A.rmatvec, A.tree, rank=6, max_rank=3)
    assert H.max_rank == 3


def test_a_black_box_that_overwrites_its_input_does_no_harm():
    A = hs.gallery.random_hss(hs.ClusterTree.balanced(128, 16), 3, seed=6)

    def clobber(X):
        Y = A @ X
        X[:] = np.nan
        return Y
    H, _ = from_matvec(clobber, A.rmatvec, A.tree, rank=3)
    assert hs.testing.relative_error(H, A) <= 1e-10


# -- tolerance mode -----------------------------------------------------------------

@pytest.fixture(scope="module")
def toeplitz_box():
    n = 512 if NOJIT else 1024
    A = hs.gallery.toeplitz_inverse_distance(n)
    return A, hs.HSSMatrix.from_dense(A, leaf_size=LEAF, rtol=1e-12)


@pytest.mark.parametrize("rtol", [1e-5, 1e-9])
@pytest.mark.parametrize("symmetric", [False, True])
def test_tolerance_mode_meets_rtol(toeplitz_box, rtol, symmetric):
    A, B = toeplitz_box
    H, info = from_matvec(B.matvec, B.rmatvec, B.tree, rtol=rtol, symmetric=symmetric)
    err = hs.testing.relative_error(H, A)
    assert info.converged and info.error_estimate <= rtol
    assert err <= 10 * rtol
    # the estimate is a Frobenius-norm estimate from 8 probes: within a factor 10
    assert err / 10 <= info.error_estimate <= 10 * err
    assert info.n_matvecs >= info.n_samples and info.n_samples < A.shape[0] // 2
    assert info.n_rmatvecs == (0 if symmetric else info.n_samples)


def test_tolerance_mode_ranks_follow_the_tolerance(toeplitz_box):
    _, B = toeplitz_box
    loose, _ = from_matvec(B.matvec, B.rmatvec, B.tree, rtol=1e-4)
    tight, _ = from_matvec(B.matvec, B.rmatvec, B.tree, rtol=1e-10)
    assert loose.max_rank < tight.max_rank


def test_tolerance_mode_recovers_an_exact_hss_matrix():
    A = hs.gallery.random_hss(hs.ClusterTree.balanced(512, 32), 5, seed=8)
    H, info = from_matvec(A.matvec, A.rmatvec, A.tree, rtol=1e-10)
    assert hs.testing.relative_error(H, A) <= 1e-9
    assert H.max_rank <= 5 + 1


def test_tolerance_mode_warns_when_max_rank_is_too_small(toeplitz_box):
    A, B = toeplitz_box
    with pytest.warns(RuntimeWarning, match="max_rank"):
        H, info = from_matvec(B.matvec, B.rmatvec, B.tree, rtol=1e-12, max_rank=3)
    assert not info.converged and H.max_rank <= 3
    assert info.error_estimate > 1e-12


def test_tolerance_mode_warns_at_max_samples(toeplitz_box):
    A, B = toeplitz_box
    with pytest.warns(RuntimeWarning, match="max_samples"):
        _, info = from_matvec(B.matvec, B.rmatvec, B.tree, rtol=1e-13, max_samples=LEAF + 8)
    assert not info.converged and info.n_samples == LEAF + 8


def test_zero_matrix():
    tree = hs.ClusterTree.balanced(100, 10)
    zero = lambda X: np.zeros_like(X)   # noqa: E731
    H, info = from_matvec(zero, zero, tree, rtol=1e-8)
    assert H.max_rank == 0 and np.abs(H.todense()).max() == 0.0
    assert info.converged


def test_info_is_a_frozen_dataclass():
    A = hs.gallery.random_hss(hs.ClusterTree.balanced(64, 8), 2, seed=0)
    _, info = from_matvec(A.matvec, A.rmatvec, A.tree, rank=2, n_probes=0)
    assert isinstance(info, MatvecInfo) and info.error_estimate is None
    with pytest.raises(AttributeError):
        info.n_matvecs = 0


# -- errors -----------------------------------------------------------------------

@pytest.fixture
def box():
    A = hs.gallery.random_hss(hs.ClusterTree.balanced(64, 8), 2, seed=0)
    return A


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(matvec="A"), TypeError, "matvec must be a callable"),
    (dict(rmatvec=None), TypeError, "rmatvec is required"),
    (dict(rmatvec=3), TypeError, "rmatvec must be a callable"),
    (dict(tree=64), TypeError, "tree must be a hssalg.ClusterTree"),
    (dict(rank=-1), ValueError, "rank must be an integer >= 0"),
    (dict(rank=2.5), TypeError, "rank must be an integer"),
    (dict(rtol=2.0), ValueError, "rtol must lie in"),
    (dict(rtol=0.0), ValueError, r"rtol must lie in \(0, 1\]"),
    (dict(rtol=float("nan")), ValueError, "rtol must be finite"),
    (dict(max_rank=-2), ValueError, "max_rank"),
    (dict(oversampling=-1), ValueError, "oversampling"),
    (dict(n_probes=0), ValueError, "n_probes"),
    (dict(seed=1.5), TypeError, "seed"),
    (dict(symmetric="yes"), TypeError, "symmetric"),
])
def test_bad_arguments(box, kwargs, exc, match):
    args = dict(matvec=box.matvec, rmatvec=box.rmatvec, tree=box.tree)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        from_matvec(**args)


@pytest.mark.parametrize("which", ["matvec", "rmatvec"])
@pytest.mark.parametrize("bad, match", [
    (lambda Y: Y[:-1], "returned an array of shape"),
    (lambda Y: Y[:, :1], "returned an array of shape"),
    (lambda Y: np.where(Y > 0, np.nan, Y), "non-finite"),
    (lambda Y: Y + 1j, "complex"),
    (lambda Y: None, "numeric array"),
])
def test_a_bad_black_box_is_named(box, which, bad, match):
    good = {"matvec": box.matvec, "rmatvec": box.rmatvec}
    fns = dict(good)
    fns[which] = lambda X: bad(good[which](X))
    with pytest.raises((ValueError, TypeError), match=f"{which} .*{match}|{which} returned.*{match}"):
        from_matvec(fns["matvec"], fns["rmatvec"], box.tree, rank=2)


def test_symmetric_flag_on_an_unsymmetric_matrix(box):
    with pytest.raises(ValueError, match="symmetric=True but matvec is not symmetric"):
        from_matvec(box.matvec, None, box.tree, rank=2, symmetric=True)


def test_fixed_rank_is_an_upper_bound():
    # the Green's matrix has HSS rank 2; asking for 5 finds 2, exactly
    G = hs.gallery.poisson1d_green_hss(256, leaf_size=16)
    H, info = from_matvec(G.matvec, G.rmatvec, G.tree, rank=5)
    assert H.max_rank == 2
    assert hs.testing.relative_error(H, G) <= 1e-10
    assert info.n_samples == _fixed_rank_products(16, 5)


@pytest.mark.parametrize("n, m, k", [(256, 16, 4), (300, 10, 3), (512, 8, 6)])
def test_p6_symmetric_threshold_max_m_2k_plus_k_products_suffice(n, m, k):
    # without oversampling the sketch has exactly max(m, 2k) + k columns (fact P6);
    # the test blocks are then nearly square, so allow for their conditioning
    A = hs.gallery.random_hss(hs.ClusterTree.balanced(n, m), k, seed=1, symmetric=True)
    H, info = from_matvec(A.matvec, None, A.tree, rank=k, symmetric=True, oversampling=0, n_probes=0)
    assert info.n_matvecs == max(m, 2 * k) + k and info.n_rmatvecs == 0
    assert hs.testing.relative_error(H, A) <= 1e-7


def test_public_api_returns_the_matrix_with_its_record():
    tree = hs.ClusterTree.balanced(300, 32)
    G = hs.gallery.random_hss(tree, 5, seed=3)
    H = hs.HSSMatrix.from_matvec(G.matvec, G.rmatvec, tree, rank=5, seed=1)
    assert isinstance(H, hs.HSSMatrix) and isinstance(H.info, MatvecInfo)
    m = int(tree.sizes[tree.leaves].max())          # 19: 300 halved four times
    assert H.info.n_matvecs == _fixed_rank_products(m, 5) + PROBES
    assert hs.testing.relative_error(H, G) <= 1e-10
    # the record belongs to this build only
    assert H.T.info is None and hs.gallery.random_hss(tree, 2).info is None
