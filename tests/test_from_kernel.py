"""Kernel evaluators (hssalg.kernels) and from_kernel against dense kernel matrices."""

import numpy as np
import pytest

from hssalg import kernels
from hssalg._from_kernel import KernelInfo, from_kernel
from hssalg.gallery import gaussian_kernel_matrix
from hssalg.testing import relative_error

from conftest import NOJIT

# interpreted kernels are ~1000x slower: small problems under NUMBA_DISABLE_JIT
N = 160 if NOJIT else 1200
LEAF = 16 if NOJIT else 64

ALL_KERNELS = {
    "gaussian": kernels.Gaussian(0.1, shift=1.0),
    "exponential": kernels.Exponential(0.3),
    "matern32": kernels.Matern(1.5, 0.3),
    "matern52": kernels.Matern(2.5, 0.2),
    "imq": kernels.InverseMultiquadric(0.1),
    "laplace": kernels.Laplace(),
}


def _check(H, info, A, rtol, factor=10.0):
    """True error <= factor * rtol and the estimate within `factor` of the true error.

    The norm is Frobenius (relative_error). Errors of exactly-low-rank cases sit
    at rounding level, where the estimate is compared with max(error, 1e-13).
    """
    err = relative_error(H, A)
    assert err <= factor * rtol, f"relative error {err:.2e} exceeds {factor} x rtol = {factor * rtol:.1e}"
    floor = 1e-13
    est = info.error_estimate
    assert max(est, floor) <= factor * max(err, floor), f"estimate {est:.2e} > {factor} x error {err:.2e}"
    assert max(err, floor) <= factor * max(est, floor), f"estimate {est:.2e} < error {err:.2e} / {factor}"
    return err


# -- kernels ----------------------------------------------------------------------------

def _reference(name, pts):
    r = np.sqrt(np.sum((pts[:, None, :] - pts[None, :, :]) ** 2, axis=2))
    d = pts.shape[1]
    with np.errstate(divide="ignore"):
        ref = {
            "gaussian": np.exp(-r**2 / (2 * 0.1**2)) + np.eye(len(pts)),
            "exponential": np.exp(-r / 0.3),
            "matern32": (1 + np.sqrt(3) * r / 0.3) * np.exp(-np.sqrt(3) * r / 0.3),
            "matern52": (1 + np.sqrt(5) * r / 0.2 + 5 * r**2 / (3 * 0.2**2)) * np.exp(-np.sqrt(5) * r / 0.2),
            "imq": 1 / np.sqrt(r**2 + 0.01),
            "laplace": {1: -r, 2: -np.log(r), 3: 1 / r}[d],
        }[name]
    if name == "laplace":
        ref[r == 0] = 0.0
    return ref


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(ALL_KERNELS))
def test_kernel_matrix_matches_formula(name, d, rng):
    pts = rng.random((40, d))
    K = ALL_KERNELS[name].matrix(pts)
    np.testing.assert_allclose(K, _reference(name, pts), rtol=1e-12, atol=1e-12)


def test_block_is_a_submatrix_with_shift_on_the_diagonal_only(rng):
    pts = rng.random((50, 2))
    pts[7] = pts[3]                                  # a duplicate point: no shift there
    k = kernels.Gaussian(0.2, shift=2.5)
    A = k.matrix(pts)
    I = np.array([3, 7, 11, 3])
    J = np.array([7, 3, 40])
    np.testing.assert_array_equal(k.block(pts, I, J), A[np.ix_(I, J)])
    assert A[3, 7] == 1.0 and A[3, 3] == 3.5
    np.testing.assert_allclose(A, gaussian_kernel_matrix(pts, 0.2, shift=2.5), rtol=1e-13, atol=1e-14)
    # the kernel function itself has no shift (no indices)
    np.testing.assert_allclose(k(pts[:5], pts[:5]), A[:5, :5] - 2.5 * np.eye(5), rtol=1e-14, atol=1e-15)
    assert k.block(pts, [], J).shape == (0, 3)
    assert k.block(pts, [-1], [49])[0, 0] == A[49, 49]


def test_laplace_self_value_on_diagonal_and_duplicates(rng):
    pts = rng.random((10, 3))
    pts[4] = pts[2]
    A = kernels.Laplace(self_value=7.0, shift=1.0).matrix(pts)
    assert A[0, 0] == 8.0 and A[2, 4] == 7.0 and A[4, 2] == 7.0
    assert np.all(np.isfinite(A))


def test_kernel_parameter_errors():
    with pytest.raises(ValueError, match="h must be a finite number > 0"):
        kernels.Gaussian(0.0)
    with pytest.raises(ValueError, match="h must be"):
        kernels.Gaussian(-1.0)
    with pytest.raises(TypeError, match="h must be a real number"):
        kernels.Gaussian("wide")
    with pytest.raises(ValueError, match="length must be"):
        kernels.Exponential(np.inf)
    with pytest.raises(ValueError, match="nu must be 1.5 or 2.5"):
        kernels.Matern(2.0, 1.0)
    with pytest.raises(ValueError, match="c must be"):
        kernels.InverseMultiquadric(0.0)
    with pytest.raises(ValueError, match="shift must be finite"):
        kernels.Laplace(shift=np.nan)
    with pytest.raises(TypeError, match="fn must be callable"):
        kernels.CallableKernel(3.0)
    with pytest.raises(TypeError, match="kernel must be"):
        kernels.as_kernel("gaussian")


def test_kernel_argument_errors(rng):
    k = kernels.Gaussian(0.5)
    pts = rng.random((10, 2))
    with pytest.raises(ValueError, match="X has points in 2 dimensions but Y in 3"):
        k(pts, rng.random((4, 3)))
    with pytest.raises(IndexError, match="I has indices outside 0..9"):
        k.block(pts, [10], [0])
    with pytest.raises(ValueError, match="J must be a 1-D array of integer indices"):
        k.block(pts, [0], [[0, 1]])
    with pytest.raises(ValueError, match="1, 2 or 3 dimensions"):
        k.matrix(rng.random((5, 4)))


def test_callable_kernel_checks_its_blocks(rng):
    pts = rng.random((8, 2))
    bad_shape = kernels.CallableKernel(lambda X, Y: np.zeros((X.shape[0], 1)))
    with pytest.raises(ValueError, match="returned a block of shape"):
        bad_shape.matrix(pts)
    bad_value = kernels.CallableKernel(lambda X, Y: np.full((X.shape[0], Y.shape[0]), np.nan))
    with pytest.raises(ValueError, match="non-finite"):
        bad_value.matrix(pts)


# -- from_kernel: accuracy and the error estimate -----------------------------------

@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(ALL_KERNELS))
def test_from_kernel_every_kernel_and_dimension(name, d):
    pts = np.random.default_rng(d).random((N, d))
    k = ALL_KERNELS[name]
    rtol = 1e-6
    H, info = from_kernel(k, pts, leaf_size=LEAF, rtol=rtol)
    assert isinstance(info, KernelInfo)
    assert H.shape == (N, N) and H.dtype == np.float64
    _check(H, info, k.matrix(pts), rtol)


@pytest.mark.parametrize("rtol", [1e-3, 1e-9])
def test_from_kernel_tolerances(rtol):
    pts = np.random.default_rng(7).random((N, 2))
    k = kernels.Matern(2.5, 0.2, shift=0.5)
    H, info = from_kernel(k, pts, leaf_size=LEAF, rtol=rtol)
    _check(H, info, k.matrix(pts), rtol)


def test_lower_tolerance_gives_higher_ranks_and_smaller_errors():
    pts = np.random.default_rng(3).random((N, 2))
    k = kernels.Gaussian(0.1)
    A = k.matrix(pts)
    H1, _ = from_kernel(k, pts, leaf_size=LEAF, rtol=1e-3)
    H2, _ = from_kernel(k, pts, leaf_size=LEAF, rtol=1e-8)
    assert H1.max_rank <= H2.max_rank
    assert relative_error(H2, A) < relative_error(H1, A)


def test_products_in_the_callers_order(rng):
    pts = rng.random((N, 2))
    k = kernels.InverseMultiquadric(0.2)
    H, _ = from_kernel(k, pts, leaf_size=LEAF, rtol=1e-10)
    assert not H.tree.has_identity_perm
    x = rng.standard_normal(N)
    A = k.matrix(pts)
    np.testing.assert_allclose(H @ x, A @ x, rtol=0, atol=1e-8 * np.linalg.norm(A) * np.linalg.norm(x))
    np.testing.assert_allclose(H.diagonal(), np.diag(A), rtol=1e-14)


def test_orthonormal_option_gives_orthonormal_bases():
    pts = np.random.default_rng(5).random((N, 2))
    H, _ = from_kernel(kernels.Gaussian(0.1), pts, leaf_size=LEAF, rtol=1e-6, basis="orthonormal")
    assert H.storage == "explicit"
    g = H.generators()
    tree = H.tree
    for i in tree.leaves:
        for U in (g["U"][i], g["V"][i]):
            np.testing.assert_allclose(U.T @ U, np.eye(U.shape[1]), atol=1e-12)
    for i in np.flatnonzero((tree.left >= 0) & (tree.parent > 0)):
        a, b = tree.left[i], tree.right[i]
        S = np.vstack([g["R"][a], g["R"][b]])
        np.testing.assert_allclose(S.T @ S, np.eye(S.shape[1]), atol=1e-12)


def test_estimate_on_a_row_subset():
    pts = np.random.default_rng(11).random((N, 2))
    k = kernels.Exponential(0.2, shift=1.0)
    H, info = from_kernel(k, pts, leaf_size=LEAF, rtol=1e-5, max_error_rows=N // 4)
    assert info.error_rows == N // 4
    _check(H, info, k.matrix(pts), 1e-5)


def test_max_rank_caps_ranks_and_the_estimate_sees_it():
    pts = np.random.default_rng(2).random((N, 2))
    k = kernels.Gaussian(0.05)
    H, info = from_kernel(k, pts, leaf_size=LEAF, rtol=1e-10, max_rank=5)
    assert H.max_rank <= 5
    err = relative_error(H, k.matrix(pts))
    assert err > 1e-6
    assert err / 10 <= info.error_estimate <= 10 * err


def test_kernel_evaluations_are_far_fewer_than_n_squared():
    n = 3000 if NOJIT else 8000
    pts = np.random.default_rng(0).random((n, 1))
    _, info = from_kernel(kernels.Gaussian(0.05), pts, leaf_size=LEAF, rtol=1e-8, max_error_rows=10)
    assert info.n_kernel_evaluations < 0.1 * n * n
    assert info.n_kernel_evaluations_estimate == 10 * n
    assert info.time_build > 0 and info.time_estimate > 0


def test_same_seed_same_matrix():
    pts = np.random.default_rng(4).random((N // 2, 2))
    k = kernels.Matern(1.5, 0.3)
    H1, i1 = from_kernel(k, pts, leaf_size=LEAF, rtol=1e-6, seed=3)
    H2, i2 = from_kernel(k, pts, leaf_size=LEAF, rtol=1e-6, seed=3)
    np.testing.assert_array_equal(H1.todense(), H2.todense())
    assert i1.error_estimate == i2.error_estimate
    assert i1.n_kernel_evaluations == i2.n_kernel_evaluations


def test_progress_line(capsys):
    pts = np.random.default_rng(4).random((N // 2, 2))
    from_kernel(kernels.Gaussian(0.2), pts, leaf_size=LEAF, rtol=1e-4, progress=True)
    assert "from_kernel" in capsys.readouterr().err


# -- point sets that break geometric codes -------------------------------------------

def _curve(n):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([np.cos(t), np.sin(3 * t) * 0.5])


def _helix(n):
    t = np.linspace(0, 6 * np.pi, n)
    return np.column_stack([np.cos(t), np.sin(t), 0.1 * t])


def _two_clusters(n):
    rng = np.random.default_rng(9)
    a = rng.random((n // 2, 2)) * 0.1
    b = rng.random((n - n // 2, 2)) * 0.1 + 1e3
    return np.vstack([a, b])


def _duplicates(n):
    rng = np.random.default_rng(10)
    base = rng.random((n // 4, 2))
    return rng.permutation(np.repeat(base, 4, axis=0))[:n]


def _graded(n):
    # density growing like 1/r towards the origin: many scales in one set
    rng = np.random.default_rng(12)
    r = np.exp(rng.uniform(np.log(1e-4), 0, n))
    a = rng.uniform(0, 2 * np.pi, n)
    return np.column_stack([r * np.cos(a), r * np.sin(a)])


@pytest.mark.parametrize("pointset", [_curve, _helix, _two_clusters, _duplicates, _graded])
@pytest.mark.parametrize("kernel", [kernels.Gaussian(0.1, shift=1.0), kernels.Laplace(self_value=1.0),
                                    kernels.Matern(2.5, 0.3)],
                         ids=["gaussian", "laplace", "matern52"])
def test_clustered_and_nonuniform_points(pointset, kernel):
    pts = pointset(N)
    H, info = from_kernel(kernel, pts, leaf_size=LEAF, rtol=1e-6)
    _check(H, info, kernel.matrix(pts), 1e-6)


def test_all_points_equal():
    pts = np.zeros((N // 2, 2))
    k = kernels.Gaussian(0.1, shift=1.0)
    H, info = from_kernel(k, pts, leaf_size=LEAF, rtol=1e-8)
    assert H.max_rank <= 1
    _check(H, info, k.matrix(pts), 1e-8)


@pytest.mark.parametrize("n,leaf", [(1, 64), (5, 64), (37, 1), (100, 7)])
def test_small_sizes_and_leaves(n, leaf):
    pts = np.random.default_rng(n).random((n, 2))
    k = kernels.Exponential(0.5, shift=0.1)
    H, info = from_kernel(k, pts, leaf_size=leaf, rtol=1e-8)
    _check(H, info, k.matrix(pts), 1e-8)


def test_points_as_a_1d_array():
    x = np.random.default_rng(1).random(N)
    k = kernels.Laplace()
    H, info = from_kernel(k, x, leaf_size=LEAF, rtol=1e-8)
    _check(H, info, k.matrix(x), 1e-8)


# -- user kernels -----------------------------------------------------------------------

def _cauchy(X, Y):
    d2 = np.sum((X[:, None, :] - Y[None, :, :]) ** 2, axis=2)
    return 1.0 / (1.0 + 25.0 * d2)


def _skewed(X, Y):
    # not symmetric: k(x, y) = exp(-|x - y|^2 / 0.02) (1 + x_0 - 2 y_1)
    d2 = np.sum((X[:, None, :] - Y[None, :, :]) ** 2, axis=2)
    return np.exp(-d2 / 0.02) * (1.0 + X[:, 0][:, None] - 2.0 * Y[:, 1][None, :])


@pytest.mark.parametrize("symmetric", [False, True])
def test_python_callable_kernel(symmetric, rng):
    pts = rng.random((N, 2))
    k = kernels.CallableKernel(_cauchy, symmetric=symmetric, shift=1.0)
    H, info = from_kernel(k, pts, leaf_size=LEAF, rtol=1e-6)
    A = _cauchy(pts, pts) + np.eye(N)
    _check(H, info, A, 1e-6)


def test_plain_function_is_accepted_and_unsymmetric_kernels_work(rng):
    pts = rng.random((N, 2))
    H, info = from_kernel(_skewed, pts, leaf_size=LEAF, rtol=1e-6)
    A = _skewed(pts, pts)
    assert not np.allclose(A, A.T)
    _check(H, info, A, 1e-6)
    np.testing.assert_allclose(H.T.todense(), A.T, atol=1e-4 * np.abs(A).max())


def test_numba_callable_kernel(rng):
    from numba import njit

    @njit(cache=False)
    def imq(X, Y):
        out = np.empty((X.shape[0], Y.shape[0]))
        for i in range(X.shape[0]):
            for j in range(Y.shape[0]):
                s = 0.0
                for c in range(X.shape[1]):
                    s += (X[i, c] - Y[j, c]) ** 2
                out[i, j] = 1.0 / np.sqrt(s + 0.04)
        return out

    pts = rng.random((N, 3))
    k = kernels.CallableKernel(imq, symmetric=True)
    H, info = from_kernel(k, pts, leaf_size=LEAF, rtol=1e-6)
    _check(H, info, kernels.InverseMultiquadric(0.2).matrix(pts), 1e-6)


# -- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("points,match", [
    (np.array([[0.0, 1.0], [np.nan, 0.5]]), "non-finite"),
    (np.array([[0.0, np.inf]]), "non-finite"),
    (np.zeros((0, 2)), "at least one point"),
    (np.zeros(0), "at least one point"),
    (np.zeros((4, 4)), "1, 2 or 3 dimensions"),
    (np.zeros((4, 0)), "1, 2 or 3 dimensions"),
    (np.zeros((2, 2, 2)), "1-D or 2-D array"),
])
def test_bad_points(points, match):
    with pytest.raises(ValueError, match=match):
        from_kernel(kernels.Gaussian(1.0), points)


def test_bad_arguments(rng):
    pts = rng.random((20, 2))
    k = kernels.Gaussian(1.0)
    with pytest.raises(ValueError, match="rtol must lie in"):
        from_kernel(k, pts, rtol=2.0)
    with pytest.raises(ValueError, match="atol must be"):
        from_kernel(k, pts, atol=-1.0)
    with pytest.raises(ValueError, match="leaf_size must be"):
        from_kernel(k, pts, leaf_size=0)
    with pytest.raises(TypeError, match="max_rank must be an integer"):
        from_kernel(k, pts, max_rank=2.5)
    with pytest.raises(TypeError, match="kernel must be"):
        from_kernel(np.eye(20), pts)
    with pytest.raises(TypeError, match="points must be real"):
        from_kernel(k, pts.astype(complex))


def test_sparse_sign_sketch_kernel(rng):
    from hssalg._kernels.kernels import sparse_sign_apply
    At = rng.standard_normal((30, 4))
    cols = rng.integers(0, 6, size=(30, 3))
    signs = rng.choice([-1.0, 1.0], size=(30, 3))
    S = np.zeros((30, 6))
    for j in range(30):
        for t in range(3):
            S[j, cols[j, t]] += signs[j, t]
    At0 = At.copy()
    np.testing.assert_allclose(sparse_sign_apply(At, cols, signs, 6), S.T @ At, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(At, At0)      # pure: the input is untouched


@pytest.mark.parametrize("d", [1, 2, 3])
def test_vectorised_evaluation_matches_the_scalar_kernel(d, rng):
    """sqdist + numpy's phi (the route used) against the scalar compiled loop, every kind.

    Zero distances (the Laplace kernels' diagonal value p1) and inputs left untouched included.
    """
    from hssalg import kernels as K
    from hssalg._kernels import kernels as ck
    X, Y = rng.random((7, d)), rng.random((9, d))
    Y[4] = X[2]
    X0, Y0 = X.copy(), Y.copy()
    R2 = ck.sqdist(X, Y)
    for kind in range(8):
        np.testing.assert_allclose(K._phi_inplace(kind, 2.0, 0.5, R2.copy()), ck.block(kind, 2.0, 0.5, X, Y),
                                   rtol=1e-14, atol=0)
    np.testing.assert_array_equal(R2, ck.sqdist(Y, X).T)      # bit for bit symmetric
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(Y, Y0)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_algebraic_block_is_the_scalar_kernel_bit_for_bit(d, rng):
    """The one-pass route of the kinds without exp or log equals the scalar loop exactly.

    sqrt and division are correctly rounded and the squared distances are summed in the same
    order, so nothing may differ; zero distances (p1), symmetry and untouched inputs included.
    """
    from hssalg._kernels import kernels as ck
    X, Y = rng.random((7, d)), rng.random((9, d))
    Y[4] = X[2]
    X0, Y0 = X.copy(), Y.copy()
    for kind in (ck.IMQ, ck.LAPLACE1, ck.LAPLACE3):
        K = ck.algebraic_block(kind, 2.0, 0.5, X, Y)
        np.testing.assert_array_equal(K, ck.block(kind, 2.0, 0.5, X, Y))
        np.testing.assert_array_equal(K, ck.algebraic_block(kind, 2.0, 0.5, Y, X).T)
    assert ck.algebraic_block(ck.LAPLACE3, 0.0, 0.5, X, Y)[2, 4] == 0.5
    with pytest.raises(ValueError):
        ck.algebraic_block(ck.GAUSSIAN, 2.0, 0.5, X, Y)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(Y, Y0)


def test_public_api_returns_the_matrix_with_its_record():
    import hssalg as hs
    pts = np.random.default_rng(4).random((700, 2))
    k = kernels.Gaussian(0.2, shift=1.0)
    H = hs.HSSMatrix.from_kernel(k, pts, leaf_size=32, rtol=1e-6)
    assert isinstance(H, hs.HSSMatrix) and isinstance(H.info, KernelInfo)
    K = k.matrix(pts)
    err = relative_error(H, K)
    assert err <= 10 * 1e-6
    assert H.info.error_estimate / 10 <= err <= 10 * H.info.error_estimate
    assert (-H).info is None


@pytest.mark.parametrize("kernel", [kernels.Gaussian(0.3, shift=0.5), kernels.Laplace(self_value=1.0),
                                    kernels.CallableKernel(lambda X, Y: np.cos(X @ Y.T))])
def test_exact_matmat_without_forming_the_matrix(kernel):
    pts = np.random.default_rng(2).random((300, 2))
    X = np.random.default_rng(3).standard_normal((300, 3))
    K = kernel.matrix(pts)
    assert np.allclose(kernel.matmat(pts, X), K @ X, rtol=1e-12, atol=1e-12 * np.abs(K).max())
    assert np.allclose(kernel.matmat(pts, X[:, 0]), K @ X[:, 0], rtol=1e-12, atol=1e-12 * np.abs(K).max())
    with pytest.raises(ValueError, match=r"X must have shape \(300,\) or \(300, s\)"):
        kernel.matmat(pts, X[:10])
    with pytest.raises(ValueError, match="non-finite"):
        kernel.matmat(pts, np.full(300, np.nan))


# -- symmetric kernels share their bases; recompression after the build -------------------

def test_symmetric_kernel_shares_bases_and_counts_them_once(rng):
    """U = V and R = W are one buffer each: nbytes counts them once, and every operation
    gives what the same generators in separate buffers give."""
    import hssalg as hs
    pts = rng.random((N, 2))
    k = kernels.Gaussian(0.15, shift=1.0)
    H, _ = from_kernel(k, pts, leaf_size=LEAF, rtol=1e-7, basis="orthonormal")
    bufs = H._bufs
    assert bufs["U"] is bufs["V"] and bufs["R"] is bufs["W"]
    assert H.nbytes == sum(bufs[kind].nbytes for kind in ("D", "U", "R", "B12", "B21"))
    g = H.generators()
    for i in range(H.tree.n_nodes):
        if g["B12"][i] is not None:
            np.testing.assert_array_equal(g["B21"][i], g["B12"][i].T)
    G = hs.HSSMatrix.from_generators(H.tree, **g)          # the same matrix, separate buffers
    assert G._bufs["U"] is not G._bufs["V"] and G.nbytes > H.nbytes
    X = rng.standard_normal((N, 3))
    np.testing.assert_array_equal(H @ X, G @ X)
    np.testing.assert_array_equal(H.T @ X, G.T @ X)
    np.testing.assert_allclose(H.T @ X, H @ X, rtol=0, atol=1e-13 * np.abs(H @ X).max())
    np.testing.assert_array_equal(H.solve(X), G.solve(X))
    np.testing.assert_array_equal(H.recompress(rtol=1e-5) @ X, G.recompress(rtol=1e-5) @ X)


def test_shared_bases_survive_save_and_load(tmp_path, rng):
    import hssalg as hs
    pts = rng.random((300, 3))
    H, _ = from_kernel(kernels.Laplace(self_value=1.0), pts, leaf_size=32, rtol=1e-6)
    path = tmp_path / "h.npz"
    hs.save(path, H)
    x = rng.standard_normal(300)
    np.testing.assert_array_equal(hs.load(path) @ x, H @ x)


def test_unsymmetric_kernel_keeps_separate_bases(rng):
    pts = rng.random((N, 2))
    k = kernels.CallableKernel(lambda X, Y: np.exp(-4.0 * np.sum((X[:, None] - 1.2 * Y[None]) ** 2, axis=2)))
    for recompress in (False, True):
        H, info = from_kernel(k, pts, leaf_size=LEAF, rtol=1e-6, recompress=recompress)
        assert H.storage == "interpolative" and H._bufs["TU"] is not H._bufs["TV"]
        assert H._bufs["B21"].size > 0
        _check(H, info, k.matrix(pts), 1e-6)
        G, info = from_kernel(k, pts, leaf_size=LEAF, rtol=1e-6, recompress=recompress, basis="orthonormal")
        assert G.storage == "explicit" and G._bufs["U"] is not G._bufs["V"]
        _check(G, info, k.matrix(pts), 1e-6)


@pytest.mark.parametrize("name", ["gaussian", "matern32", "laplace"])
@pytest.mark.parametrize("d", [2, 3])
def test_recompression_keeps_the_error_bound_and_lowers_ranks(name, d):
    pts = np.random.default_rng(20 + d).random((N, d))
    k = ALL_KERNELS[name]
    A = k.matrix(pts)
    rtol = 1e-6
    H0, _ = from_kernel(k, pts, leaf_size=LEAF, rtol=rtol, basis="orthonormal")
    H1, info = from_kernel(k, pts, leaf_size=LEAF, rtol=rtol, recompress=True, basis="orthonormal")
    err = _check(H1, info, A, rtol)
    # the truncation budget is half of rtol, on top of the build's own error
    assert err <= rtol
    assert np.all(H1.row_ranks <= H0.row_ranks) and H1.nbytes <= H0.nbytes
    # orthonormal bases again after the truncation (ULV and recompress rely on them)
    g, tree = H1.generators(), H1.tree
    for i in tree.leaves:
        np.testing.assert_allclose(g["U"][i].T @ g["U"][i], np.eye(g["U"][i].shape[1]), atol=1e-12)
    for i in np.flatnonzero((tree.left >= 0) & (tree.parent > 0)):
        S = np.vstack([g["R"][tree.left[i]], g["R"][tree.right[i]]])
        np.testing.assert_allclose(S.T @ S, np.eye(S.shape[1]), atol=1e-12)


def test_recompress_must_be_a_bool(rng):
    with pytest.raises(TypeError, match="recompress must be True or False"):
        from_kernel(kernels.Gaussian(0.2), rng.random((50, 2)), recompress="yes")


def test_basis_option_is_checked(rng):
    pts = rng.random((50, 2))
    with pytest.raises(ValueError, match="basis must be 'interpolative' or 'orthonormal', got 'qr'"):
        from_kernel(kernels.Gaussian(0.2), pts, basis="qr")


@pytest.mark.parametrize("d", [2, 3])
def test_recompression_in_interpolative_storage(d):
    """recompress=True with the default basis: the truncated orthonormal bases rewritten as
    interpolative ones. Same matrix as the orthonormal recompression (to rounding), lower
    ranks and memory than the build without recompression."""
    pts = np.random.default_rng(40 + d).random((N, d))
    k = kernels.Laplace() if d == 3 else kernels.Gaussian(0.1, shift=1.0)
    rtol = 1e-6
    H0, _ = from_kernel(k, pts, leaf_size=LEAF, rtol=rtol)
    H1, info = from_kernel(k, pts, leaf_size=LEAF, rtol=rtol, recompress=True)
    G1, _ = from_kernel(k, pts, leaf_size=LEAF, rtol=rtol, recompress=True, basis="orthonormal")
    assert H1.storage == H0.storage == "interpolative-symmetric"
    assert _check(H1, info, k.matrix(pts), rtol) <= rtol
    assert np.all(H1.row_ranks <= G1.row_ranks) and np.all(H1.row_ranks <= H0.row_ranks)
    assert H1.nbytes < H0.nbytes < G1.nbytes
    X = np.random.default_rng(1).standard_normal((N, 2))
    assert np.linalg.norm(H1 @ X - G1 @ X) <= 1e-12 * np.linalg.norm(G1 @ X)


# -- the interpolative storage form (the default) ---------------------------------------

@pytest.mark.parametrize("d", [1, 2, 3])
def test_interpolative_form_is_the_orthonormal_matrix_in_less_memory(d, rng):
    """Same skeletons, same matrix: the two forms differ only by rounding, the interpolative
    one stores T and a row order instead of orthonormal bases, packed D and no B21."""
    pts = np.random.default_rng(30 + d).random((N, d))
    k = kernels.Laplace() if d == 3 else kernels.Gaussian(0.1, shift=1.0)
    H, info = from_kernel(k, pts, leaf_size=LEAF, rtol=1e-6)
    G, _ = from_kernel(k, pts, leaf_size=LEAF, rtol=1e-6, basis="orthonormal")
    assert H.storage == "interpolative-symmetric" and G.storage == "explicit"
    np.testing.assert_array_equal(H.row_ranks, G.row_ranks)
    assert H._bufs["TU"] is H._bufs["TV"] and H._bufs["B21"].size == 0
    m = H.tree.sizes[H.tree.leaves]
    assert H._bufs["D"].size == int(np.sum(m * (m + 1) // 2))
    assert H.nbytes < G.nbytes
    A = k.matrix(pts)
    _check(H, info, A, 1e-6)
    # the build's error is ~1e-7 ||A||; the two forms agree far below it
    X = rng.standard_normal((N, 3))
    ref = A @ X
    scale = np.linalg.norm(A, 2) * np.linalg.norm(X)
    assert np.linalg.norm(H @ X - G @ X) <= 1e-12 * scale
    assert np.linalg.norm(H.T @ X - H @ X) <= 1e-13 * scale
    np.testing.assert_allclose(H.diagonal(), np.diag(A), rtol=0, atol=1e-14 * np.abs(np.diag(A)).max())
    assert np.linalg.norm(H @ X - ref) <= 10 * 1e-6 * scale


def test_interpolative_bases_hold_identity_rows():
    """U_i = Pi [I; T]: the skeleton rows of every materialised interpolation matrix are the identity."""
    pts = np.random.default_rng(5).random((N, 2))
    H, _ = from_kernel(kernels.Gaussian(0.1), pts, leaf_size=LEAF, rtol=1e-6)
    g, tree, b, o = H.generators(), H.tree, H._bufs, H._offs
    for i in range(1, tree.n_nodes):
        perm = b["pU"][o["pU"][i]:o["pU"][i + 1]]
        k = H.row_ranks[i]
        if tree.left[i] < 0:
            P = g["U"][i]
        else:
            P = np.vstack([g["R"][tree.left[i]], g["R"][tree.right[i]]])
        assert P.shape == (perm.size, k)
        np.testing.assert_array_equal(P[perm[:k]], np.eye(k))
        assert np.array_equal(np.sort(perm), np.arange(perm.size))


@pytest.mark.parametrize("spd", [False, True])
def test_operations_on_the_interpolative_form_match_the_orthonormal_one(spd, rng):
    """Solves, log-determinants, sums and recompression read the explicit form of an
    interpolative matrix (not orthonormal): they agree with the same operations on the
    orthonormal build to rounding, relative to the conditioning of the problem."""
    pts = rng.random((N, 2))
    k = kernels.Gaussian(0.1, shift=1.0)            # +1 on the diagonal: SPD, cond ~ 10-100
    H, _ = from_kernel(k, pts, leaf_size=LEAF, rtol=1e-8)
    G, _ = from_kernel(k, pts, leaf_size=LEAF, rtol=1e-8, basis="orthonormal")
    b = rng.standard_normal(N)
    xH, xG = H.solve(b, spd=spd), G.solve(b, spd=spd)
    x_ref = np.linalg.solve(k.matrix(pts), b)
    assert np.linalg.norm(xH - x_ref) <= 1e-6 * np.linalg.norm(x_ref)
    assert np.linalg.norm(xH - xG) <= 1e-11 * np.linalg.norm(xG)
    sign, logdet = np.linalg.slogdet(k.matrix(pts))
    sH, lH = H.factorize(spd=spd).logdet()
    assert sH == sign == 1.0
    # the build's relative error 1e-8 moves log det by at most about n * 1e-8 (eigenvalues >= 1)
    assert abs(lH - logdet) <= N * 1e-8
    assert abs(lH - G.factorize(spd=spd).logdet()[1]) <= 1e-12 * N
    S = H + H
    assert S.storage == "explicit"
    X = rng.standard_normal((N, 2))
    np.testing.assert_allclose(S @ X, 2 * (H @ X), rtol=0, atol=1e-12 * np.abs(H @ X).max())
    C = H.recompress(rtol=1e-6)
    assert np.linalg.norm(C @ X - H @ X) <= 1e-5 * np.linalg.norm(H @ X)


def test_short_sketch_id_matches_the_full_one(rng):
    """The randomised ID on a sketch of about rank + oversampling rows finds the rank of a
    low-rank sample and interpolates it to the tolerance; a too small first guess is enlarged."""
    from hssalg._from_kernel import _OVERSAMPLE, _column_id
    c, rank = 150, 40
    A = rng.standard_normal((3000, rank)) @ (rng.standard_normal((rank, c)) * np.logspace(0, -3, c))
    A += 1e-12 * rng.standard_normal(A.shape)
    blocks = [A[:1000], A[1000:]]
    s_full, P_full = _column_id(blocks, 1e-9, 0.0, None, np.random.default_rng(0))
    for guess in (rank + _OVERSAMPLE + 5, 10):
        s, P = _column_id(blocks, 1e-9, 0.0, None, np.random.default_rng(0), guess)
        assert s.size == s_full.size == rank
        assert np.linalg.norm(A - A[:, s] @ P.T) <= 1e-8 * np.linalg.norm(A)


def test_trailing_norms_are_the_residuals_of_the_leading_columns(rng):
    """res[k] = largest ||R[k:, j]|| over j >= k, from the upper part only (reflectors below ignored)."""
    from hssalg._kernels.kernels import trailing_norms
    for m, c in ((9, 6), (5, 8)):
        R = rng.standard_normal((m, c))
        R0 = R.copy()
        U = np.triu(R)
        want = [max(np.linalg.norm(U[k:, j]) for j in range(k, c)) for k in range(min(m, c))]
        np.testing.assert_allclose(trailing_norms(R), want, rtol=1e-14)
        np.testing.assert_array_equal(R, R0)


@pytest.mark.parametrize("lu_min", [10**9, 16])          # LAPACK's QRCP; LU pivots, greedy finish
@pytest.mark.parametrize("shape", [(60, 90), (90, 60)])
def test_pivoted_qr_keeps_the_fewest_columns_within_the_tolerance(lu_min, shape, rng, monkeypatch):
    """Y[:, order] = Q R with R cut at the rank k: the first k columns leave every column a
    residual <= tol * (largest column norm), and k - 1 would not (the rule of a QRCP's pivots)."""
    import hssalg._from_kernel as fk
    monkeypatch.setattr(fk, "_LU_MIN", lu_min)
    m, c = shape
    Y = (rng.standard_normal((m, 40)) * np.logspace(0, -12, 40)) @ rng.standard_normal((40, c))
    Y0 = Y.copy()
    tol = 1e-7
    order, R = fk._pivoted_qr(Y, tol, 0.0, None)
    np.testing.assert_array_equal(Y, Y0)
    assert sorted(order) == list(range(c))
    k = R.shape[0]
    Z = Y[:, order]
    thr = tol * np.linalg.norm(Y, axis=0).max()

    def worst_residual(j):
        Q = np.linalg.qr(Z[:, :j])[0] if j else np.zeros((m, 0))
        return np.linalg.norm(Z - Q @ (Q.T @ Z), axis=0).max()

    assert 0 < k < 40
    assert worst_residual(k) <= thr * (1 + 1e-6)
    assert worst_residual(k - 1) > thr * (1 - 1e-6)
    # R is the triangular factor of the kept columns: R^T R = Z^T Z on them
    Rk = np.triu(R[:, :k])
    np.testing.assert_allclose(Rk.T @ Rk, Z[:, :k].T @ Z[:, :k], atol=1e-12 * np.linalg.norm(Y) ** 2)
    np.testing.assert_allclose(Rk.T @ R[:, k:], Z[:, :k].T @ Z[:, k:], atol=1e-12 * np.linalg.norm(Y) ** 2)
    assert fk._pivoted_qr(Y, tol, 0.0, 5)[1].shape[0] == 5          # max_rank caps it


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("name", sorted(ALL_KERNELS))
def test_lu_pivoted_ids_keep_the_error_bound(name, d, monkeypatch):
    """Every node on the route of large nodes (LU pivots, greedy finish, guess-sized sketches):
    the same accuracy and estimate checks as for the default route."""
    import hssalg._from_kernel as fk
    monkeypatch.setattr(fk, "_LU_MIN", 8)
    pts = np.random.default_rng(d).random((N, d))
    k = ALL_KERNELS[name]
    H, info = from_kernel(k, pts, leaf_size=LEAF, rtol=1e-6)
    _check(H, info, k.matrix(pts), 1e-6)


@pytest.mark.parametrize("cond", [2.0, 1e5, 1e12])
def test_tall_qr_is_orthonormal_and_exact(cond, rng, monkeypatch):
    """Cholesky QR of a well-conditioned tall matrix, its second pass (past the orthogonality
    check) on an ill-conditioned one and Householder on a nearly singular one: Q^T Q = I and
    Q T = M to rounding, T upper triangular."""
    import hssalg._from_kernel as fk
    monkeypatch.setattr(fk, "_LU_MIN", 8)
    r, k = 300, 40
    U = np.linalg.qr(rng.standard_normal((r, k)))[0]
    V = np.linalg.qr(rng.standard_normal((k, k)))[0]
    M = (U * np.logspace(0, np.log10(cond), k)) @ V
    M0 = M.copy()
    Q, T = fk._qr_tall(M)
    np.testing.assert_array_equal(M, M0)
    np.testing.assert_allclose(Q.T @ Q, np.eye(k), atol=1e-13)
    np.testing.assert_allclose(Q @ T, M, atol=1e-13 * cond)
    np.testing.assert_array_equal(T, np.triu(T))


@pytest.mark.parametrize("d", [1, 2, 3])
def test_sketch_of_an_unformed_sample_is_the_sketch_of_the_sample(d, rng):
    """_AlgebraicSample.sketch (the block evaluated row by row inside the sketch) equals the
    sparse sign sketch of its evaluated, weighted blocks with the same random stream."""
    from hssalg._from_kernel import _AlgebraicSample, _sparse_sign
    from hssalg._kernels import kernels as ck
    parts = [(rng.random((30, d)), rng.random(30)), (rng.random((0, d)), np.zeros(0)),
             (rng.random((11, d)), np.full(11, 2.5))]
    Xc = rng.random((9, d))
    parts[0][0][3] = Xc[4]                       # a zero distance: p1
    for kind in (ck.IMQ, ck.LAPLACE1, ck.LAPLACE3):
        S = _AlgebraicSample(kind, 0.3, 0.7, parts, Xc)
        assert S.shape == (41, 9)
        for ell in (4, 12):
            Z = S.sketch(ell, np.random.default_rng(5))
            ref = _sparse_sign(S.blocks(), ell, np.random.default_rng(5))
            np.testing.assert_allclose(Z, ref, rtol=1e-13, atol=1e-13 * np.abs(ref).max())
        np.testing.assert_allclose(S.blocks()[0], ck.block(kind, 0.3, 0.7, parts[0][0], Xc) * parts[0][1][:, None],
                                   rtol=1e-15)
