"""HSS arithmetic and recompression against dense references (fact P5 and recompression laws)."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

import hssalg as hs
from hssalg import arithmetic
from strategies import EPS32, EPS64, MAX_N, dense_from_generators, hss_matrices, random_split_tree

# rtol values exercised by the recompression properties: none dropped, roundoff only, a real
# truncation, and a coarse one; singular values of random generators never sit near them
RTOLS = st.sampled_from([0.0, 1e-12, 1e-8, 1e-4, 1e-1])


@st.composite
def pairs(draw, max_n=MAX_N, max_rank=5):
    """Two random HSS matrices on one tree (independent ranks, seeds and symmetry)."""
    H = draw(hss_matrices(max_n=max_n, max_rank=max_rank))
    rank = draw(st.integers(0, max_rank))
    seed = draw(st.integers(0, 2**16))
    G = hs.gallery.random_hss(H.tree, rank, seed=seed, symmetric=draw(st.booleans()))
    return H, G


def nrm(A):
    return float(np.linalg.norm(A))


def gen_tol(H, scale, eps=EPS64):
    # entries of a result come out of products of O(depth) generator blocks (nested bases):
    # roundoff ~ depth * eps * (size of the terms)
    return 50 * eps * (H.tree.depth + 2) * scale


# -- sums, scalings, shifts ----------------------------------------------------------------

@given(pairs())
def test_add_subtract_equal_dense(HG):
    H, G = HG
    A, C = dense_from_generators(H), dense_from_generators(G)
    tol = gen_tol(H, nrm(A) + nrm(C))
    assert nrm(dense_from_generators(H + G) - (A + C)) <= tol
    assert nrm(dense_from_generators(H - G) - (A - C)) <= tol
    assert nrm(dense_from_generators(arithmetic.add(H, G)) - (A + C)) <= tol
    assert nrm(dense_from_generators(arithmetic.subtract(G, H)) - (C - A)) <= tol


@given(pairs())
def test_add_transposed_operands(HG):
    H, G = HG
    A, C = dense_from_generators(H), dense_from_generators(G)
    tol = gen_tol(H, nrm(A) + nrm(C))
    assert nrm(dense_from_generators(H.T + G) - (A.T + C)) <= tol
    assert nrm(dense_from_generators(H - G.T) - (A - C.T)) <= tol
    assert nrm(dense_from_generators(H.T + G.T) - (A + C).T) <= tol
    # the sum of transposes is a plain (non-transposed) matrix with the right products
    x = np.random.default_rng(0).standard_normal(H.shape[0])
    assert nrm((H.T + G) @ x - (A.T + C) @ x) <= tol * nrm(x)


@given(pairs())
def test_p5_sum_ranks_add(HG):
    H, G = HG
    S = H + G
    assert np.array_equal(S.row_ranks, H.row_ranks + G.row_ranks)
    assert np.array_equal(S.col_ranks, H.col_ranks + G.col_ranks)
    assert np.all(S.ranks <= H.ranks + G.ranks)


@given(hss_matrices(), st.floats(-1e3, 1e3, allow_nan=False).filter(lambda a: abs(a) > 1e-3))
def test_scale_negate_divide_equal_dense(H, alpha):
    A = dense_from_generators(H)
    # one rounding per scaled coupling / diagonal entry on top of the generator products
    tol = gen_tol(H, abs(alpha) * nrm(A))
    assert nrm(dense_from_generators(alpha * H) - alpha * A) <= tol
    assert nrm(dense_from_generators(H * alpha) - alpha * A) <= tol
    assert nrm(dense_from_generators(arithmetic.scale(H, alpha)) - alpha * A) <= tol
    assert nrm(dense_from_generators(H / alpha) - A / alpha) <= gen_tol(H, nrm(A) / abs(alpha))
    assert np.array_equal(dense_from_generators(-H), -dense_from_generators(H))
    assert np.array_equal((alpha * H).ranks, H.ranks)
    assert nrm(dense_from_generators(alpha * H.T) - alpha * A.T) <= tol


@given(hss_matrices(), st.floats(-1e3, 1e3, allow_nan=False))
def test_shift_equal_dense(H, sigma):
    A = dense_from_generators(H)
    n = H.shape[0]
    # only the diagonal changes, by one rounded addition per entry
    tol = gen_tol(H, nrm(A) + abs(sigma) * np.sqrt(n))
    S = H.shift(sigma)
    assert nrm(dense_from_generators(S) - (A + sigma * np.eye(n))) <= tol
    assert np.array_equal(S.ranks, H.ranks) and S.dtype == H.dtype
    assert nrm(dense_from_generators(H.T.shift(sigma)) - (A.T + sigma * np.eye(n))) <= tol


def test_mixed_dtypes_give_float64():
    tree = hs.ClusterTree.balanced(70, 9)
    H32 = hs.gallery.random_hss(tree, 3, seed=1, dtype=np.float32)
    G = hs.gallery.random_hss(tree, 4, seed=2)
    A, C = dense_from_generators(H32), dense_from_generators(G)
    for S, ref in ((H32 + G, A + C), (G - H32, C - A), (H32 @ G, A @ C), (G @ H32.T, C @ A.T)):
        assert S.dtype == np.float64
        # float32 generators are exact in float64: float64 roundoff only
        assert nrm(dense_from_generators(S) - ref) <= gen_tol(S, nrm(A) * nrm(C) + nrm(A) + nrm(C))
    S32 = H32 + H32
    assert S32.dtype == np.float32
    assert nrm(dense_from_generators(S32) - 2 * A) <= gen_tol(S32, nrm(A), EPS32)
    P32 = H32 @ H32.T
    assert P32.dtype == np.float32
    assert nrm(dense_from_generators(P32) - A @ A.T) <= 2 * gen_tol(P32, nrm(A) ** 2, EPS32)
    assert (2.0 * H32).dtype == np.float32 and H32.shift(1.0).dtype == np.float32


# -- product ---------------------------------------------------------------------------

@given(pairs())
def test_multiply_equals_dense(HG):
    H, G = HG
    A, C = dense_from_generators(H), dense_from_generators(G)
    # products of generator blocks along two tree paths: roundoff ~ depth * eps * ||A|| ||C||
    tol = 2 * gen_tol(H, nrm(A) * nrm(C))
    assert nrm(dense_from_generators(H @ G) - A @ C) <= tol
    assert nrm(dense_from_generators(arithmetic.multiply(G, H)) - C @ A) <= tol


@given(pairs())
def test_multiply_transposed_operands(HG):
    H, G = HG
    A, C = dense_from_generators(H), dense_from_generators(G)
    tol = 2 * gen_tol(H, nrm(A) * nrm(C))
    assert nrm(dense_from_generators(H.T @ G) - A.T @ C) <= tol
    assert nrm(dense_from_generators(H @ G.T) - A @ C.T) <= tol
    assert nrm(dense_from_generators(H.T @ G.T) - (C @ A).T) <= tol
    assert nrm(dense_from_generators(H @ H.T) - A @ A.T) <= 2 * gen_tol(H, nrm(A) ** 2)


@given(pairs())
def test_p5_product_ranks_add(HG):
    H, G = HG
    P = H @ G
    assert np.array_equal(P.row_ranks, H.row_ranks + G.row_ranks)
    assert np.array_equal(P.col_ranks, H.col_ranks + G.col_ranks)
    assert np.all(P.ranks <= H.ranks + G.ranks)


def test_product_of_green_matrices_is_green_of_squared_operator():
    # G = T^-1 with T tridiagonal, so G @ G = (T^2)^-1, T^2 pentadiagonal: HSS rank <= 4 (P2)
    n = 300
    G = hs.gallery.poisson1d_green_hss(n, leaf_size=16)
    A = hs.gallery.poisson1d_green(n)
    P = G @ G
    assert P.max_rank <= 4
    assert nrm(P.todense() - A @ A) <= 1e3 * EPS64 * nrm(A) ** 2
    Pr = P.recompress(rtol=1e-12)
    assert Pr.max_rank <= 4
    assert nrm(Pr.todense() - A @ A) <= 1e-10 * nrm(A @ A)


def test_single_leaf_tree():
    tree = hs.ClusterTree.balanced(6, 8)
    H = hs.gallery.random_hss(tree, 3, seed=0)
    G = hs.gallery.random_hss(tree, 3, seed=1)
    A, C = H.todense(), G.todense()
    assert np.allclose((H @ G).todense(), A @ C, rtol=1e-14, atol=1e-14 * nrm(A) * nrm(C))
    assert np.allclose((H - G).todense(), A - C, rtol=0, atol=1e-15 * (nrm(A) + nrm(C)))
    R = (H + G).recompress()
    assert R.max_rank == 0 and np.allclose(R.todense(), A + C, rtol=0, atol=1e-15 * (nrm(A) + nrm(C)))


# -- recompression ------------------------------------------------------------------------

def recompress_bound(M, rtol, A, size=None):
    # module docstring: ||M - M'||_F <= 2 L sqrt(k) rtol ||M||_F to first order; twice that,
    # plus roundoff of the orthogonalisation (QR of bases whose conditioning random
    # generators keep moderate: a few hundred eps per level) relative to the size of the
    # terms M was made of (``size``; larger than ||M|| when a sum cancels)
    L = M.tree.depth + 1
    k = max(M.max_rank, 1)
    size = nrm(A) if size is None else size
    return 4 * L * np.sqrt(k) * rtol * nrm(A) + 500 * EPS64 * L * size


@given(pairs(), RTOLS)
def test_recompress_never_raises_a_rank_and_keeps_the_error_bound(HG, rtol):
    H, G = HG
    a, c = nrm(dense_from_generators(H)), nrm(dense_from_generators(G))
    for M, size in ((H, a), (H + G, a + c), (H @ G, a * c), (H.T - G, a + c)):
        A = dense_from_generators(M)
        R = M.recompress(rtol=rtol)
        assert np.all(R.row_ranks <= M.row_ranks) and np.all(R.col_ranks <= M.col_ranks)
        assert nrm(dense_from_generators(R) - A) <= recompress_bound(M, rtol, A, size)


@given(pairs(max_rank=8), st.sampled_from([1e-12, 1e-8, 1e-4, 1e-2, 1e-1]))
def test_recompress_is_idempotent(HG, rtol):
    # rtol 1e-2 and 1e-1 truncate products of random generators inside their continuous
    # spectra: the case where a single orthonormalise-and-truncate pass is not idempotent
    H, G = HG
    for M, kwargs in ((H + G, dict(rtol=rtol)), (H @ G, dict(rtol=rtol)),
                      (H @ G, dict(rtol=0.0, max_rank=2))):
        R1 = M.recompress(**kwargs)
        R2 = R1.recompress(**kwargs)
        assert np.array_equal(R2.row_ranks, R1.row_ranks)
        assert np.array_equal(R2.col_ranks, R1.col_ranks)
        A1 = dense_from_generators(R1)
        # orthonormal bases in, orthonormal bases out: QR and SVD roundoff only
        assert nrm(dense_from_generators(R2) - A1) <= gen_tol(R1, nrm(A1))


def orthonormality_defect(H):
    """Largest ||Q^T Q - I|| over leaf bases and stacked transfers [R_a; R_b], [W_a; W_b]."""
    g, t = H.generators(), H.tree
    worst = 0.0
    for i in range(1, t.n_nodes):
        if t.is_leaf[i]:
            blocks = [g["U"][i], g["V"][i]]
        else:
            a, b = t.left[i], t.right[i]
            blocks = [np.vstack([g["R"][a], g["R"][b]]), np.vstack([g["W"][a], g["W"][b]])]
        for Q in blocks:
            worst = max(worst, nrm(Q.T @ Q - np.eye(Q.shape[1])))
    return worst


@given(pairs(max_rank=8), st.sampled_from([1e-12, 1e-2]))
def test_recompress_gives_orthonormal_bases(HG, rtol):
    H, G = HG
    R = (H @ G + H).recompress(rtol=rtol)
    # Householder QR and SVD keep orthonormality to a small multiple of eps per level
    assert orthonormality_defect(R) <= 100 * EPS64 * (R.tree.depth + 2)


@given(hss_matrices())
def test_recompress_sum_with_itself_has_the_ranks_of_the_matrix(H):
    R = H.recompress(rtol=1e-10)
    S = (H + H).recompress(rtol=1e-10)
    assert np.array_equal(S.row_ranks, R.row_ranks) and np.array_equal(S.col_ranks, R.col_ranks)
    A = dense_from_generators(H)
    assert nrm(dense_from_generators(S) - 2 * A) <= recompress_bound(H, 1e-10, 2 * A)


def test_random_hss_sum_with_itself_compresses_to_its_own_ranks():
    tree = hs.ClusterTree.balanced(512, 32)
    H = hs.gallery.random_hss(tree, 8, seed=4)
    S = H + H
    assert S.max_rank == 16
    R = S.recompress()
    assert np.array_equal(R.ranks, H.ranks) and R.max_rank == 8
    A = H.todense()
    assert nrm(R.todense() - 2 * A) <= 1e-12 * nrm(A)
    # a difference of equal matrices is block diagonal with zero blocks
    Z = (H - H).recompress(rtol=0.0, atol=1e-12)
    assert Z.max_rank == 0 and nrm(Z.todense()) == 0.0


def test_green_sum_recompresses_to_rank_two():
    G = hs.gallery.poisson1d_green_hss(257, leaf_size=8)
    S = (G + 2.0 * G).recompress(rtol=1e-12)
    assert (G + 2.0 * G).max_rank == 4 and S.max_rank == 2
    A = hs.gallery.poisson1d_green(257)
    assert nrm(S.todense() - 3 * A) <= 1e-11 * nrm(A)


def test_shifted_zero_matrix_recompresses_to_the_identity():
    H = hs.gallery.random_hss(random_split_tree(90, 6, seed=5), 4, seed=0)
    eye = (0.0 * H).shift(1.0).recompress()
    assert eye.max_rank == 0
    assert np.array_equal(eye.todense(), np.eye(90))


@pytest.mark.parametrize("kwargs", [dict(rtol=1.0), dict(max_rank=0), dict(rtol=0.0, atol=1e300)])
def test_recompress_to_rank_zero_keeps_the_leaf_blocks(kwargs):
    tree = hs.ClusterTree.from_points(np.random.default_rng(0).random((80, 2)), 7)
    H = hs.gallery.random_hss(tree, 4, seed=1)
    R = H.recompress(**kwargs)
    assert R.max_rank == 0
    A = H.todense()
    blockdiag = np.zeros_like(A)
    for i in tree.leaves:
        idx = tree.perm[tree.start[i]:tree.stop[i]]
        blockdiag[np.ix_(idx, idx)] = A[np.ix_(idx, idx)]
    assert np.allclose(R.todense(), blockdiag, rtol=0, atol=1e-14 * nrm(A))


def test_recompress_max_rank_caps_every_node():
    tree = hs.ClusterTree.balanced(256, 16)
    H = hs.gallery.random_hss(tree, 6, seed=2) + hs.gallery.random_hss(tree, 6, seed=3)
    for r in (1, 3, 7):
        R = H.recompress(rtol=0.0, max_rank=r)
        assert R.max_rank == r and np.all(R.ranks <= r)
    # more than the ranks allow changes nothing
    R = H.recompress(rtol=0.0, max_rank=100)
    assert np.array_equal(R.ranks, H.ranks)


def test_recompress_float32_and_transposed():
    tree = hs.ClusterTree.balanced(128, 8)
    H = hs.gallery.random_hss(tree, 3, seed=6, dtype=np.float32)
    S = H.T + H.T
    R = S.recompress(rtol=1e-5)
    assert R.dtype == np.float32 and R.max_rank == 3
    A = dense_from_generators(H).T
    # the result is rounded to float32 once more: float32 roundoff of the generators
    assert nrm(dense_from_generators(R) - 2 * A) <= gen_tol(R, nrm(2 * A), EPS32)


def test_recompress_matches_from_dense_ranks():
    # same truncation rule as from_dense: a matrix compressed at rtol recompresses to ranks
    # no larger than from_dense finds for its dense form at that rtol (plus a margin of one
    # for singular values within roundoff of the threshold)
    A = hs.gallery.toeplitz_inverse_distance(512)
    H = hs.HSSMatrix.from_dense(A, leaf_size=32, rtol=1e-12)
    for rtol in (1e-4, 1e-8):
        R = H.recompress(rtol=rtol)
        F = hs.HSSMatrix.from_dense(A, leaf_size=32, rtol=rtol)
        assert np.all(R.ranks <= F.ranks + 1)
        assert nrm(R.todense() - A) <= 4 * (H.tree.depth + 1) * np.sqrt(H.max_rank) * rtol * nrm(A)


# -- errors -----------------------------------------------------------------------------

def test_different_trees_are_refused():
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(64, 8), 3)
    G = hs.gallery.random_hss(hs.ClusterTree.balanced(64, 16), 3)
    K = hs.gallery.random_hss(hs.ClusterTree.balanced(65, 8), 3)
    for op in (lambda: H + G, lambda: H - G, lambda: H @ G, lambda: H @ K.T,
               lambda: arithmetic.add(H, K), lambda: arithmetic.multiply(K, H)):
        with pytest.raises(ValueError, match="H and G are on different cluster trees"):
            op()


def test_wrong_types_are_refused():
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(64, 8), 3)
    A = np.eye(64)
    with pytest.raises(TypeError, match="G must be a hssalg.HSSMatrix, got ndarray"):
        arithmetic.add(H, A)
    with pytest.raises(TypeError, match="H must be a hssalg.HSSMatrix, got ndarray"):
        arithmetic.multiply(A, H)
    with pytest.raises(TypeError, match="H must be a hssalg.HSSMatrix"):
        arithmetic.recompress(A)
    with pytest.raises(TypeError, match="H must be a hssalg.HSSMatrix"):
        arithmetic.scale("H", 2.0)
    with pytest.raises(TypeError):
        H + 1.0
    with pytest.raises(TypeError):
        H * "2"
    with pytest.raises(TypeError, match="alpha must be a real number"):
        arithmetic.scale(H, 1j)
    with pytest.raises(TypeError, match="sigma must be a real number"):
        H.shift(None)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_scalars_are_refused(value):
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(32, 8), 2)
    with pytest.raises(ValueError, match="alpha must be finite"):
        value * H
    with pytest.raises(ValueError, match="sigma must be finite"):
        H.shift(value)
    with pytest.raises(ZeroDivisionError):
        H / 0.0


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(rtol=-0.1), ValueError, r"rtol must lie in \[0, 1\]"),
    (dict(rtol=1.5), ValueError, r"rtol must lie in \[0, 1\]"),
    (dict(rtol=np.nan), ValueError, "rtol must be finite"),
    (dict(rtol="1e-8"), TypeError, "rtol must be a real number"),
    (dict(atol=-1.0), ValueError, "atol must be a finite number >= 0"),
    (dict(atol=np.inf), ValueError, "atol must be a finite number >= 0"),
    (dict(max_rank=-1), ValueError, "max_rank must be an integer >= 0"),
    (dict(max_rank=2.5), TypeError, "max_rank must be an integer"),
])
def test_bad_tolerances_are_refused(kwargs, exc, msg):
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(32, 8), 2)
    with pytest.raises(exc, match=msg):
        H.recompress(**kwargs)


def test_scale_overflow_is_refused():
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(32, 8), 2, dtype=np.float32)
    with pytest.raises(OverflowError, match="overflows float32"):
        1e37 * H.shift(100.0)   # the diagonal reaches 1e39 > float32 max
