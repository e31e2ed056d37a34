"""hssalg_nn.baselines: FNO, DeepONet, CNN, dense linear operators and the HSS oracle."""

import itertools

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad
from autograd.test_util import check_grads

import hssalg as hs
from hssalg_nn import fit
from hssalg_nn.baselines import (BASELINES, CNN, FNO, DeepONet, DenseLinear, HSSOracle, LinearOperatorModel,
                                 dataset_oracle, hss_oracle, least_squares_operator, make_baseline)
from hssalg_nn.baselines._nn import gelu
from hssalg_nn.baselines import fno as fno_module
from hssalg_nn.baselines.cnn import conv
from hssalg_nn.baselines.fno import SpectralGrid, spectral_conv
from hssalg_nn.layers import ACTIVATIONS

EPS = np.finfo(np.float64).eps


def _l_mask(shape):
    """An L-shaped domain in its bounding box: the upper corner of the last two axes cut away."""
    mask = np.ones(shape, dtype=bool)
    cut = tuple(slice(None) for _ in shape[:-2]) + tuple(slice(s // 2, None) for s in shape[-2:])
    mask[cut] = False
    return mask


def _tiny_models():
    """(id, model) pairs covering every baseline, 1-, 2- and 3-D, with and without a mask."""
    pts2 = np.stack(np.meshgrid(np.linspace(0, 1, 4), np.linspace(0, 1, 5), indexing="ij"), -1).reshape(-1, 2)
    return [
        ("fno1d", FNO((10,), 3, 4, n_layers=2, proj_width=6)),
        ("fno2d", FNO((6, 7), (2, 3), 3, n_layers=2, proj_width=5)),
        ("fno2d-mask", FNO((6, 8), 2, 3, n_layers=1, proj_width=4, mask=_l_mask((6, 8)))),
        ("fno3d", FNO((4, 4, 5), 2, 2, n_layers=1, proj_width=3)),
        ("fno3d-mask", FNO((4, 4, 4), 2, 2, n_layers=1, proj_width=3, mask=_l_mask((4, 4, 4)))),
        ("cnn1d", CNN((9,), 3, 2)),
        ("cnn2d", CNN((5, 6), 3, 2, residual=False, activation="tanh")),
        ("cnn2d-mask", CNN((6, 6), 2, 2, mask=_l_mask((6, 6)))),
        ("cnn3d", CNN((3, 4, 3), 2, 1)),
        ("cnn3d-mask", CNN((4, 4, 4), 2, 1, mask=_l_mask((4, 4, 4)))),
        ("deeponet1d", DeepONet(np.linspace(0, 1, 9), sensors=4, width=5, depth=2, p=3)),
        ("deeponet2d", DeepONet(pts2, width=4, depth=1, p=3, activation="tanh")),
        ("dense", DenseLinear(7, bias=True, init_scale=1.0)),
        ("dense-rect", DenseLinear(6, n_out=4)),
    ]


TINY = _tiny_models()
TINY_IDS = [name for name, _ in TINY]


# -- the model protocol ---------------------------------------------------------------------

@pytest.mark.parametrize("name, model", TINY, ids=TINY_IDS)
def test_output_shape_and_param_count(name, model):
    params = model.init(seed=3)
    X = np.random.default_rng(0).standard_normal((3, model.n))
    Y = model.apply(params, X)
    n_out = getattr(model, "n_out", model.n)
    assert Y.shape == (3, n_out)
    assert np.all(np.isfinite(Y))
    leaves = []

    def collect(t):
        if isinstance(t, dict):
            for v in t.values():
                collect(v)
        else:
            leaves.append(t)

    collect(params)
    assert all(isinstance(a, np.ndarray) and a.dtype == np.float64 for a in leaves)
    assert int(model.n_params) == sum(a.size for a in leaves) == model.n_params(params)
    assert type(model).__name__ in repr(model)


@pytest.mark.parametrize("name, model", TINY, ids=TINY_IDS)
def test_gradient_of_a_loss_matches_finite_differences(name, model):
    params = model.init(seed=1)
    if isinstance(model, DenseLinear) and not model.init_scale:
        params["A"] = np.random.default_rng(5).standard_normal(params["A"].shape)
    rng = np.random.default_rng(2)
    X = rng.standard_normal((2, model.n))
    T = rng.standard_normal((2, getattr(model, "n_out", model.n)))
    check_grads(lambda p: anp.sum((model.apply(p, X) - T) ** 2), modes=["rev"], order=1)(params)


@pytest.mark.parametrize("name, model", TINY, ids=TINY_IDS)
def test_init_is_seeded(name, model):
    a, b, c = model.init(seed=7), model.init(seed=7), model.init(seed=8)
    X = np.random.default_rng(0).standard_normal((2, model.n))
    assert np.array_equal(model.apply(a, X), model.apply(b, X))
    if not (isinstance(model, DenseLinear) and model.init_scale == 0):
        assert not np.array_equal(model.apply(a, X), model.apply(c, X))


def _smoothing_problem(n, N, seed=0):
    """Inputs and outputs of a fixed smoothing operator (a row-normalised Gaussian blur)."""
    x = np.arange(n)
    S = np.exp(-0.5 * ((x[:, None] - x[None, :]) / 2.0) ** 2)
    S /= S.sum(axis=1, keepdims=True)
    X = np.random.default_rng(seed).standard_normal((N, n))
    return X, X @ S.T


@pytest.mark.parametrize("model, lr, epochs", [
    (FNO((16,), 4, 8, n_layers=2, proj_width=16), 1e-2, 40),
    (CNN((16,), 8, 3), 1e-2, 40),
    (DeepONet(np.linspace(0, 1, 16), width=16, depth=2, p=8), 1e-2, 60),
    (DenseLinear(16), 3e-2, 40),
], ids=["fno", "cnn", "deeponet", "dense"])
def test_fit_lowers_the_loss_on_a_smoothing_operator(model, lr, epochs):
    X, Y = _smoothing_problem(16, 12)
    params, hist = fit(model, model.init(seed=0), X, Y, epochs=epochs, batch_size=6, lr=lr, progress=False)
    # a clear decrease, not rounding: at least a factor 2 below the loss after the first epoch
    assert hist["loss"][-1] < hist["loss"][0] / 2, hist["loss"][::10]


# -- FNO ------------------------------------------------------------------------------------

@pytest.mark.parametrize("grid, modes", [((9,), (3,)), ((8,), (5,)), ((6, 7), (2, 3)), ((5, 4), (2, 3)),
                                         ((4, 5, 6), (2, 2, 3))])
def test_spectral_transform_is_the_low_pass_of_numpy_rfftn(grid, modes):
    sg = SpectralGrid(grid, modes)
    v = np.random.default_rng(0).standard_normal((2, 3, sg.N))
    axes = tuple(range(2, 2 + len(grid)))
    F = np.fft.rfftn(v.reshape((2, 3) + grid), axes=axes)
    keep = np.zeros(F.shape[2:], dtype=bool)
    corners = [[slice(0, m), slice(n - m, n)] for n, m in zip(grid[:-1], modes[:-1])]
    for corner in itertools.product(*corners):
        keep[corner + (slice(0, modes[-1]),)] = True
    ref = np.fft.irfftn(F * keep, s=grid, axes=axes).reshape(2, 3, -1)
    got = sg.inverse(sg.forward(v))
    assert np.abs(got - ref).max() <= 50 * EPS * np.abs(v).max() * sg.N


@pytest.mark.parametrize("grid, modes", [((9,), (3,)), ((8,), (5,)), ((5, 6), (2, 4)), ((4, 6), (2, 4)),
                                         ((3, 4, 5), (1, 2, 3))])
def test_spectral_conv_gradients(grid, modes):
    sg = SpectralGrid(grid, modes)
    rng = np.random.default_rng(1)
    v = rng.standard_normal((2, 3, sg.N))
    wr, wi = rng.standard_normal((2, sg.K, 3, 2))
    check_grads(lambda v, wr, wi: spectral_conv(v, wr, wi, sg), modes=["rev"], order=1)(v, wr, wi)


@pytest.mark.parametrize("grid", [(8,), (9,), (6, 5), (4, 6)])
def test_fno_spectral_layer_with_all_modes_is_a_circular_convolution(grid):
    # weights = the DFT of a kernel k on every mode: K v must be the periodic convolution k * v,
    # computed here by its definition, sum_j k_j v_(x - j mod n)
    d = len(grid)
    # leading axes are even in every grid above, so n // 2 modes at each corner keep them all
    modes = tuple(n // 2 for n in grid[:-1]) + (grid[-1] // 2 + 1,)
    model = FNO(grid, modes, 1, n_layers=1)
    rng = np.random.default_rng(0)
    kern = rng.standard_normal(grid)
    khat = np.fft.rfftn(kern)
    sel = khat
    for j in range(d - 1):      # the corners in the order the model stores them: 0..m-1, then n-m..n-1
        n, m = grid[j], modes[j]
        sel = np.concatenate([np.take(sel, np.arange(m), axis=j), np.take(sel, np.arange(n - m, n), axis=j)], axis=j)
    sel = sel[..., :modes[-1]].reshape(-1, 1, 1)
    layer = {"wr": sel.real.copy(), "wi": sel.imag.copy()}
    v = rng.standard_normal((2,) + grid)
    ref = np.zeros_like(v)
    for shift in itertools.product(*[range(n) for n in grid]):
        ref += kern[shift] * np.roll(v, shift, axis=tuple(range(1, d + 1)))
    got = model.spectral_conv(layer, v.reshape(2, 1, -1)).reshape(v.shape)
    assert np.abs(got - ref).max() <= 1e3 * EPS * np.abs(kern).sum() * np.abs(v).max()


@pytest.mark.parametrize("grid, shift", [((12,), (5,)), ((6, 8), (2, 3))])
def test_fno_without_coordinates_commutes_with_periodic_shifts(grid, shift):
    model = FNO(grid, 2, 4, n_layers=2, proj_width=6, coords=False)
    params = model.init(seed=0)
    X = np.random.default_rng(0).standard_normal((2,) + grid)
    axes = tuple(range(1, len(grid) + 1))
    out = model.apply(params, X.reshape(2, -1)).reshape(X.shape)
    out_shifted = model.apply(params, np.roll(X, shift, axis=axes).reshape(2, -1)).reshape(X.shape)
    assert np.abs(out_shifted - np.roll(out, shift, axis=axes)).max() <= 1e-12 * np.abs(out).max()
    # and with the coordinate channels the position matters
    model_c = FNO(grid, 2, 4, n_layers=2, proj_width=6, coords=True)
    p = model_c.init(seed=0)
    out = model_c.apply(p, X.reshape(2, -1)).reshape(X.shape)
    out_shifted = model_c.apply(p, np.roll(X, shift, axis=axes).reshape(2, -1)).reshape(X.shape)
    assert np.abs(out_shifted - np.roll(out, shift, axis=axes)).max() > 1e-6 * np.abs(out).max()


def test_masked_fno_is_the_box_model_on_zero_extended_input():
    mask = _l_mask((6, 8))
    masked = FNO((6, 8), 2, 3, n_layers=2, proj_width=4, mask=mask)
    box = FNO((6, 8), 2, 3, n_layers=2, proj_width=4)
    params = masked.init(seed=0)
    X = np.random.default_rng(0).standard_normal((3, int(mask.sum())))
    Xbox = np.zeros((3, 48))
    Xbox[:, mask.ravel()] = X
    assert masked.n == int(mask.sum())
    assert np.array_equal(masked.apply(params, X), box.apply(params, Xbox)[:, mask.ravel()])


@pytest.mark.parametrize("activation", ["gelu", "relu", "tanh", "identity"])
def test_fused_projection_is_dense_sigma_dense(activation, monkeypatch):
    # a tiny cache block, so that the points are split into several column chunks
    monkeypatch.setattr(fno_module, "_PROJECT_BLOCK", 64)
    rng = np.random.default_rng(0)
    v = rng.standard_normal((3, 4, 37))
    W1, b1, w2, b2 = (rng.standard_normal((5, 4)), rng.standard_normal(5), rng.standard_normal((1, 5)),
                      rng.standard_normal(1))
    sigma = ACTIVATIONS[activation]
    ref = np.einsum("p,bpn->bn", w2[0], sigma(np.einsum("pc,bcn->bpn", W1, v) + b1[None, :, None])) + b2
    got = fno_module.project(v, W1, b1, w2, b2, activation)
    assert np.abs(got - ref).max() <= 1e-13 * np.abs(ref).max()
    check_grads(lambda *a: fno_module.project(*a, activation), modes=["rev"], order=1)(v, W1, b1, w2, b2)


def test_fused_gelu_is_the_gelu_of_neural_hss():
    x = np.concatenate([np.linspace(-40, 40, 4001), np.random.default_rng(0).standard_normal(500) * 3])
    w = np.cos(np.arange(x.size))
    assert np.array_equal(gelu(x), ACTIVATIONS["gelu"](x))
    g = grad(lambda x: anp.sum(w * gelu(x)))(x)
    g_ref = grad(lambda x: anp.sum(w * ACTIVATIONS["gelu"](x)))(x)
    # the same terms 0.5 (1 + t) and 0.5 x (1 - t^2) u', each O(1), summed in another order
    assert np.abs(g - g_ref).max() <= 100 * EPS * np.abs(g_ref).max()


# -- CNN ------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, k", [((2, 9), 3), ((2, 6, 7), 3), ((1, 4, 5, 3), 3), ((2, 8), 5), ((2, 5, 4), 1)])
def test_conv_is_scipy_correlate_with_zero_padding(shape, k):
    from scipy.ndimage import correlate
    rng = np.random.default_rng(0)
    d = len(shape) - 1
    v = rng.standard_normal(shape + (2,))
    w = rng.standard_normal((k**d, 2, 3))
    got = conv(v, w, k)
    for b in range(shape[0]):
        for co in range(3):
            ref = sum(correlate(v[b, ..., ci], w[:, ci, co].reshape((k,) * d), mode="constant", cval=0.0)
                      for ci in range(2))
            assert np.allclose(got[b, ..., co], ref, rtol=1e-13, atol=1e-13 * np.abs(w).sum() * np.abs(v).max())


@pytest.mark.parametrize("shape, k", [((2, 7, 2), 3), ((1, 4, 5, 2), 3), ((1, 3, 3, 4, 2), 3), ((2, 9, 1), 5)])
def test_conv_gradients(shape, k):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((k ** (len(shape) - 2), shape[-1], 2))
    check_grads(lambda v, w: conv(v, w, k), modes=["rev"], order=1)(rng.standard_normal(shape), w)


def test_cnn_receptive_field_is_its_stencil_radius_times_depth():
    n_layers, k = 3, 3
    model = CNN((21,), 3, n_layers, kernel_size=k)
    params = model.init(seed=0)
    X = np.random.default_rng(0).standard_normal((1, 21))
    X2 = X.copy()
    X2[0, 10] += 1.0
    changed = np.flatnonzero(np.abs(model.apply(params, X2) - model.apply(params, X))[0] > 0)
    r = n_layers * (k // 2)
    assert changed.min() == 10 - r and changed.max() == 10 + r


def test_cnn_mask_is_a_dirichlet_wall():
    # unknowns left and right of a masked-out point: nothing crosses the wall, however deep the net
    mask = np.ones(11, dtype=bool)
    mask[5] = False
    model = CNN((11,), 3, 4, mask=mask)
    params = model.init(seed=0)
    X = np.random.default_rng(0).standard_normal((1, 10))
    X2 = X.copy()
    X2[0, :5] += 1.0                     # the left part
    d = np.abs(model.apply(params, X2) - model.apply(params, X))[0]
    assert np.all(d[5:] == 0) and np.all(d[:5] > 0)


# -- DeepONet -------------------------------------------------------------------------------

def test_deeponet_reads_only_its_sensors():
    model = DeepONet(np.linspace(0, 1, 12), sensors=np.array([1, 4, 7]), width=6, depth=1, p=4)
    params = model.init(seed=0)
    X = np.random.default_rng(0).standard_normal((2, 12))
    X2 = X.copy()
    X2[:, [0, 2, 3, 5, 6, 8, 9, 10, 11]] = 5.0
    assert np.array_equal(model.apply(params, X), model.apply(params, X2))
    X2[:, 4] += 1.0
    assert not np.array_equal(model.apply(params, X), model.apply(params, X2))


def test_deeponet_output_is_branch_times_trunk():
    # with depth 0 both nets are affine: G(u)(y) = sum_k (B u + b)_k tanh(T y + t)_k / sqrt(p) + b0
    pts = np.random.default_rng(0).random((7, 2))
    model = DeepONet(pts, width=3, depth=0, p=4, activation="tanh")
    params = model.init(seed=1)
    params["bias"] = np.array([0.3])
    X = np.random.default_rng(2).standard_normal((2, 7))
    br, tr = params["branch"]["0"], params["trunk"]["0"]
    y = (pts - pts.min(0)) / (pts.max(0) - pts.min(0))
    ref = (X @ br["w"].T + br["b"]) @ np.tanh(y @ tr["w"].T + tr["b"]).T / 2.0 + 0.3
    assert np.allclose(model.apply(params, X), ref, rtol=1e-13, atol=1e-13)


# -- dense linear and least squares ---------------------------------------------------------

def test_least_squares_recovers_an_exactly_linear_map():
    rng = np.random.default_rng(0)
    n, N = 15, 40
    A = rng.standard_normal((n, n))
    X = rng.standard_normal((N, n))
    model = least_squares_operator(X, X @ A.T)
    assert isinstance(model, LinearOperatorModel) and model.rank == n
    # backward stable SVD solve: error ~ cond(X) eps ||A||
    cond = model.singular_values[0] / model.singular_values[-1]
    assert np.linalg.norm(model.A - A) <= 100 * cond * EPS * np.linalg.norm(A)
    Xt = rng.standard_normal((5, n))
    assert np.allclose(model.apply(model.init(), Xt), Xt @ A.T, rtol=1e-10, atol=1e-10 * np.abs(A).max())


def test_least_squares_with_few_samples_is_the_minimum_norm_solution():
    rng = np.random.default_rng(1)
    n, N = 20, 6
    A = rng.standard_normal((n, n))
    X = rng.standard_normal((N, n))
    Y = X @ A.T
    model = least_squares_operator(X, Y)
    ref = Y.T @ np.linalg.pinv(X.T)
    assert np.linalg.norm(model.A - ref) <= 1e-10 * np.linalg.norm(ref)
    assert np.allclose(model.predict(X), Y, atol=1e-10 * np.abs(Y).max())     # fits the data ...
    V = np.linalg.svd(X)[2][N:]                                                 # ... and is 0 off their span
    assert np.abs(model.A @ V.T).max() <= 1e-10 * np.abs(A).max()


def test_least_squares_rcond_drops_small_singular_values():
    rng = np.random.default_rng(2)
    U, _ = np.linalg.qr(rng.standard_normal((10, 4)))
    V, _ = np.linalg.qr(rng.standard_normal((8, 4)))
    X = U @ np.diag([1.0, 0.5, 1e-3, 1e-9]) @ V.T
    Y = rng.standard_normal((10, 8))
    assert least_squares_operator(X, Y).rank == 4
    assert least_squares_operator(X, Y, rcond=1e-6).rank == 3
    assert least_squares_operator(X, Y, rcond=1e-2).rank == 2


def test_dense_linear_from_zero_approaches_the_least_squares_operator():
    # gradient steps from A = 0 stay in the row space of X: the fit tends to the min-norm solution
    rng = np.random.default_rng(3)
    n, N = 12, 4
    X = rng.standard_normal((N, n))
    Y = X @ rng.standard_normal((n, n)).T
    ls = least_squares_operator(X, Y)
    model = DenseLinear(n)
    params, hist = fit(model, model.init(), X, Y, epochs=150, batch_size=N, optimizer="lbfgs",
                       loss="relative_mse", progress=False)
    assert np.linalg.norm(params["A"] - ls.A) <= 1e-4 * np.linalg.norm(ls.A)


# -- the HSS oracle -------------------------------------------------------------------------

def _green_setup(n=160, shuffle=False):
    G = hs.gallery.poisson1d_green(n)
    pts = (np.arange(1, n + 1) / (n + 1))[:, None]
    if shuffle:       # unknowns in a scrambled order: the tree's permutation must undo it
        p = np.random.default_rng(0).permutation(n)
        G, pts = G[np.ix_(p, p)], pts[p]
    return G, hs.ClusterTree.from_points(pts, leaf_size=16)


@pytest.mark.parametrize("shuffle", [False, True])
def test_oracle_recovers_the_rank_two_poisson_green_matrix(shuffle):
    G, tree = _green_setup(shuffle=shuffle)
    oracle = hss_oracle(lambda F: F @ G.T, tree, rank=2, symmetric=True)
    assert isinstance(oracle, HSSOracle)
    X = np.random.default_rng(0).standard_normal((4, G.shape[0]))
    err = np.linalg.norm(oracle.apply({}, X) - X @ G.T) / np.linalg.norm(X @ G.T)
    assert err <= 1e-10
    assert np.linalg.norm(oracle.H.todense() - G) <= 1e-10 * np.linalg.norm(G)


def test_oracle_at_a_lower_rank_has_a_larger_error():
    # the off-diagonal block rows of the Green matrix have rank 2: rank 1 cannot hold them
    G, tree = _green_setup()
    X = np.random.default_rng(1).standard_normal((4, G.shape[0]))
    errs = [np.linalg.norm(hss_oracle(lambda F: F @ G.T, tree, rank=r, symmetric=True).apply({}, X) - X @ G.T)
            for r in (1, 2)]
    assert errs[0] > 1e6 * errs[1] and errs[0] > 1e-3 * np.linalg.norm(X @ G.T)


def _poisson2d_inverse(g):
    """The dense inverse of the 5-point Laplacian on a g x g interior grid, and the grid points."""
    T = 2 * np.eye(g) - np.eye(g, k=1) - np.eye(g, k=-1)
    L = np.kron(T, np.eye(g)) + np.kron(np.eye(g), T)
    x = np.arange(1, g + 1) / (g + 1)
    pts = np.stack(np.meshgrid(x, x, indexing="ij"), -1).reshape(-1, 2)
    return np.linalg.inv(L), pts


def test_oracle_truncation_is_as_good_as_truncating_the_dense_operator():
    # 2-D Poisson: numerically full HSS rank, so the error at rank r is a truncation error; the
    # oracle must do as well as hssalg's compression of the dense matrix at the same rank cap
    S, pts = _poisson2d_inverse(12)
    tree = hs.ClusterTree.from_points(pts, leaf_size=16)
    calls = []
    full = hss_oracle(lambda F: calls.append(F.shape[0]) or F @ S, tree, symmetric=True)
    n_calls = len(calls)
    errs = []
    for r in (2, 4, 8):
        oracle = full.at_rank(r)
        assert oracle.H.max_rank <= r and oracle.H_full is full.H_full
        ref = hs.HSSMatrix.from_dense(S, tree=tree, rtol=1e-14, max_rank=r)
        err = np.linalg.norm(oracle.H.todense() - S)
        errs.append(err)
        assert err <= 1.5 * np.linalg.norm(ref.todense() - S) + 1e-12 * np.linalg.norm(S)
    assert len(calls) == n_calls                          # truncating again needs no solves
    assert errs[0] > errs[1] > errs[2] > 1e-9 * np.linalg.norm(S)
    assert np.linalg.norm(full.H.todense() - S) <= 1e-9 * np.linalg.norm(S)


def test_oracle_of_a_nonsymmetric_operator_uses_the_adjoint_solver():
    # a convection-diffusion matrix (upwinded): its inverse is HSS of low rank but not symmetric
    n = 120
    L = 2 * np.eye(n) - 1.3 * np.eye(n, k=-1) - 0.7 * np.eye(n, k=1)
    S = np.linalg.inv(L)
    tree = hs.ClusterTree.balanced(n, 16)
    calls = {"adj": 0}

    def solve_adjoint(G):
        calls["adj"] += 1
        return np.linalg.solve(L.T, G.T).T    # rows g -> S^T g, i.e. G S

    oracle = hss_oracle(lambda F: np.linalg.solve(L, F.T).T, tree, rtol=1e-10, solve_adjoint=solve_adjoint)
    assert calls["adj"] > 0
    assert np.linalg.norm(oracle.H.todense() - S) <= 1e-8 * np.linalg.norm(S)


# -- the registry and argument errors -------------------------------------------------------

@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("grid, masked", [((16,), False), ((8, 6), True)])
def test_make_baseline_builds_every_model(name, grid, masked):
    data = {"grid_shape": grid, "mask": _l_mask(grid) if masked else None}
    model = make_baseline(name, data)
    assert isinstance(model, BASELINES[name])
    n = int(np.prod(grid)) if not masked else int(data["mask"].sum())
    assert model.n == n
    Y = model.apply(model.init(0), np.ones((2, n)))
    assert Y.shape == (2, n)


@pytest.mark.parametrize("build, match", [
    (lambda: FNO((8, 8), 5, 4), "modes\\[0\\] = 5 exceeds half"),
    (lambda: FNO((8,), 6, 4), "modes\\[0\\] = 6 exceeds the 5 frequencies"),
    (lambda: FNO((8, 8), (2, 2, 2), 4), "one int per grid axis"),
    (lambda: FNO((4, 4, 4, 4), 1, 2), "1, 2 or 3 entries"),
    (lambda: FNO((6, 8), 2, 3, mask=np.ones((8, 6), bool)), "mask must have the grid's shape"),
    (lambda: CNN((6, 8), 2, 1, mask=np.zeros((6, 8), bool)), "selects no grid point"),
    (lambda: CNN((8,), 2, 1, kernel_size=4), "kernel_size must be odd"),
    (lambda: CNN((8,), 2, 1, activation="swish"), "activation must be one of"),
    (lambda: DeepONet(np.zeros((5, 2)), sensors=np.array([0, 5])), "outside 0..4"),
    (lambda: DeepONet(np.zeros((5, 2)), sensors=9), "1..n = 1..5"),
    (lambda: hss_oracle(lambda F: F, hs.ClusterTree.balanced(8, 4), rank=1), "solve_adjoint"),
    (lambda: make_baseline("resnet", {"grid_shape": (8,)}), "name must be one of"),
    (lambda: least_squares_operator(np.ones((3, 4)), np.ones((2, 4))), "X has 3 samples"),
])
def test_bad_arguments_are_named(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


@pytest.mark.parametrize("name, model", [TINY[0], TINY[2], TINY[5], TINY[10], TINY[12]],
                         ids=[TINY_IDS[i] for i in (0, 2, 5, 10, 12)])
def test_wrong_number_of_columns_is_reported(name, model):
    with pytest.raises(ValueError, match=f"X must have shape \\(batch, {model.n}\\)"):
        model.apply(model.init(0), np.ones((2, model.n + 1)))


# -- with the PDE data sets -----------------------------------------------------------------

def test_oracle_on_1d_poisson_data_is_exact_at_rank_two():
    # fact P2: the 1-D Dirichlet Poisson solution operator is HSS of rank 2 on the grid's tree
    data = pytest.importorskip("hssalg_nn.data")
    ds = data.make_dataset("poisson", dim=1, grid=128, n_samples=4, seed=0)
    errs = {}
    for r in (1, 2):
        oracle = hss_oracle(ds.solve, ds.tree(leaf_size=16), rank=r, symmetric=True)
        errs[r] = np.linalg.norm(oracle.apply({}, ds.X) - ds.Y) / np.linalg.norm(ds.Y)
    assert errs[2] <= 1e-10 < 1e-3 < errs[1]


def test_dataset_oracle_of_a_nonsymmetric_problem_matches_its_solutions():
    data = pytest.importorskip("hssalg_nn.data")
    ds = data.make_dataset("poisson_mixed", dim=2, grid=12, n_samples=3, seed=0)
    oracle = dataset_oracle(ds, leaf_size=16)
    assert np.linalg.norm(oracle.apply({}, ds.X) - ds.Y) <= 1e-8 * np.linalg.norm(ds.Y)
    nonlinear = data.make_dataset("reaction_diffusion", dim=1, grid=16, n_samples=2, seed=0)
    with pytest.raises(ValueError, match="needs a linear problem"):
        dataset_oracle(nonlinear)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_runs_on_the_lshape_data_set(name):
    data = pytest.importorskip("hssalg_nn.data")
    ds = data.make_dataset("poisson_lshape", dim=2, grid=12, n_samples=3, seed=0)
    model = make_baseline(name, ds, **({"width": 4} if name in ("fno", "cnn", "deeponet") else {}))
    assert model.n == ds.n
    assert model.apply(model.init(0), ds.X).shape == ds.Y.shape


# -- review fixes ---------------------------------------------------------------------------

@pytest.mark.parametrize("build, error, match", [
    (lambda: FNO((8,), 2.0, 4), TypeError, "modes must be an int or one int per grid axis"),
    (lambda: SpectralGrid((8, 8), (5, 2)), ValueError, "modes\\[0\\] = 5 exceeds half"),
    (lambda: SpectralGrid((8,), (6,)), ValueError, "modes\\[0\\] = 6 exceeds the 5 frequencies"),
])
def test_bad_modes_are_named_where_they_are_given(build, error, match):
    # a float gave "'float' object is not iterable"; SpectralGrid accepted overlapping corners and
    # failed later in a reshape
    with pytest.raises(error, match=match):
        build()


def _masked_grid_models():
    m = np.ones((6, 6), bool)
    m[3:, 3:] = False
    return [FNO((6, 6), 2, 3, n_layers=1, proj_width=4, mask=m), CNN((6, 6), 2, 1, mask=m),
            DeepONet(np.random.default_rng(0).random((27, 2)), width=3, depth=1, p=2)]


@pytest.mark.parametrize("model", _masked_grid_models(), ids=["fno-mask", "cnn-mask", "deeponet"])
def test_apply_takes_array_like_batches(model):
    # the documented X : (batch, n) array_like; a list raised AttributeError / TypeError
    params = model.init(0)
    X = np.random.default_rng(1).standard_normal((2, model.n))
    np.testing.assert_array_equal(model.apply(params, X.tolist()), model.apply(params, X))


def test_make_baseline_rejects_points_that_are_not_the_unknowns():
    # 5 points for an 8-point grid built a DeepONet of n = 5 without a word
    with pytest.raises(ValueError, match="points must have 8 rows"):
        make_baseline("deeponet", {"grid_shape": (8,), "points": np.random.default_rng(0).random((5, 1))})


@pytest.mark.parametrize("name, model", TINY, ids=TINY_IDS)
def test_an_empty_batch_gives_an_empty_output(name, model):
    # the CNN reshaped its output to (0, -1), which numpy cannot resolve
    Y = model.apply(model.init(0), np.zeros((0, model.n)))
    assert np.shape(Y) == (0, getattr(model, "n_out", model.n))
