"""hssalg_nn.layers: HSSLinear and NeuralHSS (facts P1 and P5 through the layers)."""

import numpy as np
import pytest
from autograd.test_util import check_grads
from hypothesis import given, strategies as st

import hssalg as hs
from conftest import NOJIT
from hssalg_nn.layers import HSSLinear, NeuralHSS, layer_ranks
from strategies import EPS64, block_row_rank, dense_from_generators, random_split_tree, trees

MAX_N = 24 if NOJIT else 64


@st.composite
def layers(draw, max_n=MAX_N, max_rank=5):
    """(layer, params): any tree, rank, symmetric; weight sharing on trees that allow it."""
    share = draw(st.booleans())
    if share:
        m = draw(st.integers(1, 6))
        depth = draw(st.integers(0, 3 if NOJIT else 4))
        tree = hs.ClusterTree.balanced(m * 2**depth, m)
    else:
        tree = draw(trees(max_n=max_n))
    layer = HSSLinear(tree, draw(st.integers(0, max_rank)), symmetric=draw(st.booleans()), share_weights=share)
    return layer, layer.init(seed=draw(st.integers(0, 2**16)))


def _close(Y, ref, A, X, depth):
    # products of O(depth) small factors: error ~ depth * eps * ||A|| ||X||
    return np.linalg.norm(Y - ref) <= 100 * (depth + 1) * EPS64 * np.linalg.norm(A) * np.linalg.norm(X) + 1e-300


# -- HSSLinear ------------------------------------------------------------------------------

@given(layers(), st.integers(1, 4))
def test_p1_layer_output_equals_exported_dense(case, batch):
    layer, params = case
    X = np.random.default_rng(batch).standard_normal((batch, layer.n))
    H = layer.to_hss(params)
    A = dense_from_generators(H)          # independent of the product kernels
    assert isinstance(H, hs.HSSMatrix) and H.shape == (layer.n, layer.n)
    assert _close(layer.apply(params, X), X @ A.T, A, X, layer.tree.depth)
    assert _close(layer.apply(params, X, transpose=True), X @ A, A, X, layer.tree.depth)
    assert np.allclose(H.todense(), A, rtol=0, atol=100 * EPS64 * np.linalg.norm(A) + 1e-300)


@given(layers(max_rank=3))
def test_p1_offdiagonal_block_rows_have_rank_at_most_k(case):
    layer, params = case
    A = layer.to_hss(params).todense()
    tol = 1e-10 * max(np.linalg.norm(A), 1e-300)
    for i in range(1, layer.tree.n_nodes):
        r, c = block_row_rank(A, layer.tree, i, tol)
        assert r <= layer.rank and c <= layer.rank, (i, r, c)


def test_layer_ranks_are_capped_by_block_sizes():
    tree = hs.ClusterTree.balanced(16, 2)
    k = layer_ranks(tree, 3)
    assert k[0] == 0
    assert np.all(k[tree.is_leaf] == 2)
    assert np.all(k[1:][~tree.is_leaf[1:]] == 3)


@given(layers())
def test_symmetric_layer_exports_symmetric_matrix(case):
    layer, _ = case
    layer = HSSLinear(layer.tree, layer.rank, symmetric=True, share_weights=layer.share_weights)
    params = layer.init(seed=3)
    H = layer.to_hss(params)
    bufs, offs = H.generator_buffers()
    # the generators are symmetric exactly, not only to rounding
    assert np.array_equal(bufs["U"], bufs["V"]) and np.array_equal(bufs["R"], bufs["W"])
    tB = layer.layout.transpose_index("B21")
    tD = layer.layout.transpose_index("D")
    assert np.array_equal(bufs["B12"][tB], bufs["B21"]) and np.array_equal(bufs["D"], bufs["D"][tD])
    A = H.todense()
    assert np.linalg.norm(A - A.T) <= 100 * EPS64 * (1 + np.linalg.norm(A))


def test_share_weights_param_counts():
    m, L, k = 8, 5, 3
    tree = hs.ClusterTree.balanced(m * 2**L, m)
    shared = HSSLinear(tree, k, share_weights=True)
    full = HSSLinear(tree, k)
    # per level: leaves D, U, V; transfers R, W below level 1; couplings B12, B21 above the leaves
    expected = (m * m + 2 * m * k) + (L - 1) * 2 * k * k + L * 2 * k * k
    assert shared.n_params == expected == shared.n_params(shared.init())
    assert full.n_params == sum(full.layout.sizes.values()) == full.n_params(full.init())
    assert 15 * shared.n_params < full.n_params
    sym = HSSLinear(tree, k, symmetric=True, share_weights=True)
    assert sym.n_params == (m * m + m * k) + (L - 1) * k * k + L * k * k


def test_share_weights_repeats_generators_per_level():
    tree = hs.ClusterTree.balanced(32, 4)
    layer = HSSLinear(tree, 2, share_weights=True)
    g = layer.to_hss(layer.init(seed=1)).generators()
    for lvl in range(1, tree.depth + 1):
        ids = range(tree.level_ptr[lvl], tree.level_ptr[lvl + 1])
        for kind in ("D", "U", "V", "R", "W", "B12", "B21"):
            blocks = [g[kind][i] for i in ids if g[kind][i] is not None]
            assert all(np.array_equal(b, blocks[0]) for b in blocks), (kind, lvl)


def test_init_scale_keeps_norms():
    tree = hs.ClusterTree.balanced(1024 if not NOJIT else 128, 16)
    layer = HSSLinear(tree, 4)
    X = np.random.default_rng(0).standard_normal((8, tree.n))
    ratios = [np.linalg.norm(layer.apply(layer.init(seed=s), X)) / np.linalg.norm(X) for s in range(3)]
    assert all(0.3 < r < 3.0 for r in ratios), ratios


@pytest.mark.parametrize("symmetric", [False, True])
def test_init_from_hss_reproduces_lower_rank_matrix(symmetric):
    tree = random_split_tree(40, 4, seed=2)
    H = hs.gallery.random_hss(tree, 2, seed=5, symmetric=symmetric)
    layer = HSSLinear(tree, 4, symmetric=symmetric)     # ranks padded with zeros: exact
    params = layer.init_from_hss(H)
    A = H.todense()
    assert np.allclose(layer.to_hss(params).todense(), A, rtol=0, atol=1e-13 * np.linalg.norm(A))
    X = np.random.default_rng(0).standard_normal((3, 40))
    assert np.allclose(layer.apply(params, X), X @ A.T, rtol=0, atol=1e-13 * np.linalg.norm(A) * np.linalg.norm(X))


def test_init_from_hss_cuts_higher_rank_by_recompression():
    tree = hs.ClusterTree.balanced(48, 6)
    H = hs.gallery.random_hss(tree, 5, seed=1)
    layer = HSSLinear(tree, 2)
    E = layer.to_hss(layer.init_from_hss(H))
    assert E.max_rank <= 2
    A, B = H.todense(), E.todense()
    # the rank-2 truncation is an approximation, closer to A than the zero matrix
    assert np.linalg.norm(A - B) < np.linalg.norm(A)


def test_init_from_hss_shared_and_errors():
    tree = hs.ClusterTree.balanced(32, 4)
    shared = HSSLinear(tree, 2, share_weights=True)
    H = shared.to_hss(shared.init(seed=4))
    params = shared.init_from_hss(H)
    assert np.array_equal(shared.to_hss(params).todense(), H.todense())
    with pytest.raises(ValueError, match="equal generators on all nodes of a level"):
        shared.init_from_hss(hs.gallery.random_hss(tree, 2, seed=0))
    with pytest.raises(ValueError, match="symmetric generators"):
        HSSLinear(tree, 2, symmetric=True).init_from_hss(hs.gallery.random_hss(tree, 2, seed=0))
    with pytest.raises(ValueError, match="layer's tree"):
        shared.init_from_hss(hs.gallery.random_hss(hs.ClusterTree.balanced(32, 8), 2))
    with pytest.raises(TypeError, match="H must be a hssalg.HSSMatrix"):
        shared.init_from_hss(np.eye(32))


def _fresh_rel_error(layer, params, A, seed):
    Xf = np.random.default_rng(seed).standard_normal((5, layer.n))
    ref = Xf @ A.T
    return np.linalg.norm(layer.apply(params, Xf) - ref) / np.linalg.norm(ref)


@pytest.mark.parametrize("symmetric", [True, False])
def test_init_from_data_exact_route_recovers_the_target(symmetric):
    # P6 as an initialiser: max(m, 2k) + k samples determine a symmetric target; an unsymmetric
    # one needs as many adjoint pairs besides
    from hssalg_nn.exact import min_samples_exact
    tree = random_split_tree(96, 12, seed=3)
    k = 3
    H = hs.gallery.random_hss(tree, k, seed=4, symmetric=symmetric)
    A = H.todense()
    N = min_samples_exact(tree, k)
    rng = np.random.default_rng(5)
    X, Xa = rng.standard_normal((N, 96)), rng.standard_normal((N, 96))
    layer = HSSLinear(tree, k, symmetric=symmetric)
    adj = {} if symmetric else {"X_adj": Xa, "Y_adj": Xa @ A}
    params = layer.init_from_data(X, X @ A.T, **adj)
    assert set(params) == set(layer.kinds)
    # a well-conditioned reconstruction from N generic samples: a few hundred ulps of ||A||
    assert _fresh_rel_error(layer, params, A, seed=6) <= 1e-10
    assert np.allclose(layer.to_hss(params).todense(), A, rtol=0, atol=1e-10 * np.linalg.norm(A))


@pytest.mark.parametrize("symmetric", [False, True])
def test_init_from_data_lstsq_route_fits_a_block_diagonal_target(symmetric):
    # too few samples for the exact route; a block-diagonal target is then exactly what the
    # least-squares route can fit (N >= m samples determine every leaf block)
    tree = hs.ClusterTree.balanced(64, 8)
    rng = np.random.default_rng(1)
    blocks = [rng.standard_normal((8, 8)) for _ in range(8)]
    if symmetric:
        blocks = [b + b.T for b in blocks]
    A = np.zeros((64, 64))
    for j, b in enumerate(blocks):
        A[8 * j:8 * j + 8, 8 * j:8 * j + 8] = b
    layer = HSSLinear(tree, 4, symmetric=symmetric)
    X = rng.standard_normal((10, 64))                # 10 < max(8, 8) + 4 = 12: no exact route
    with pytest.raises(ValueError, match="fewer than the 12"):
        layer.init_from_data(X, X @ A.T, method="exact")
    params = layer.init_from_data(X, X @ A.T)
    assert np.all(params["B12"] == 0)
    assert _fresh_rel_error(layer, params, A, seed=2) <= 1e-12
    # not a free pass: a target with an off-diagonal part is only approximated
    A2 = A + np.outer(rng.standard_normal(64), rng.standard_normal(64)) * 0.3
    assert _fresh_rel_error(layer, layer.init_from_data(X, X @ A2.T), A2, seed=2) > 1e-2


def test_init_from_data_lstsq_symmetric_block_is_the_constrained_optimum():
    # data of no symmetric operator: the symmetric block must still be the least-squares
    # optimum over symmetric matrices, i.e. sym(X^T (X D - Y)) = 0 (the gradient of the fit)
    tree = hs.ClusterTree.balanced(8, 8)                    # one leaf
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((11, 8)), rng.standard_normal((11, 8))
    layer = HSSLinear(tree, 0, symmetric=True)
    D = layer.to_hss(layer.init_from_data(X, Y, method="lstsq")).todense()
    assert np.array_equal(D, D.T)
    grad = X.T @ (X @ D - Y)
    assert np.linalg.norm(grad + grad.T) <= 1e-12 * np.linalg.norm(X) ** 2 * np.linalg.norm(D)
    # and it beats symmetrising the unconstrained solution
    Du = np.linalg.lstsq(X, Y, rcond=None)[0]
    Ds = 0.5 * (Du + Du.T)
    assert np.linalg.norm(X @ D - Y) < np.linalg.norm(X @ Ds - Y)


def test_init_from_data_shared_weights_pool_the_leaves():
    # one shared leaf block, fitted to all leaves' rows at once: 3 samples of n = 64 determine
    # a translation-invariant 8 x 8 block (8 leaves x 3 rows >= 8 unknowns per column)
    tree = hs.ClusterTree.balanced(64, 8)
    rng = np.random.default_rng(2)
    blk = rng.standard_normal((8, 8))
    A = np.kron(np.eye(8), blk)
    layer = HSSLinear(tree, 2, share_weights=True)
    X = rng.standard_normal((3, 64))
    params = layer.init_from_data(X, X @ A.T)
    assert _fresh_rel_error(layer, params, A, seed=3) <= 1e-12
    with pytest.raises(ValueError, match="weight sharing"):
        layer.init_from_data(X, X @ A.T, method="exact")


def test_init_from_data_errors():
    tree = hs.ClusterTree.balanced(32, 8)
    layer = HSSLinear(tree, 2)
    X = np.random.default_rng(0).standard_normal((12, 32))
    with pytest.raises(ValueError, match=r"shape \(N, 32\)"):
        layer.init_from_data(X[:, :30], X)
    with pytest.raises(ValueError, match="12 samples .* but Y has 11"):
        layer.init_from_data(X, X[:-1])
    with pytest.raises(ValueError, match="method must be"):
        layer.init_from_data(X, X, method="sgd")
    with pytest.raises(ValueError, match="adjoint data"):
        layer.init_from_data(X, X, method="exact")
    with pytest.raises(ValueError, match="non-finite"):
        layer.init_from_data(X, np.full_like(X, np.nan))


@given(layers(max_n=20, max_rank=3))
def test_check_grads_layer(case):
    layer, params = case
    X = np.random.default_rng(0).standard_normal((2, layer.n))
    check_grads(lambda p, X: layer.apply(p, X), modes=["rev"], order=1)(params, X)


def test_layer_accepts_a_single_vector():
    layer = HSSLinear(hs.ClusterTree.balanced(20, 3), 2)
    p = layer.init()
    x = np.random.default_rng(0).standard_normal(20)
    assert np.allclose(layer.apply(p, x), layer.to_hss(p) @ x, rtol=1e-13, atol=1e-13)


def test_p5_stack_of_linear_layers_is_one_hss_matrix():
    tree = hs.ClusterTree.balanced(48 if NOJIT else 96, 6)
    k, L = 2, 3
    layer = HSSLinear(tree, k)
    params = [layer.init(seed=s) for s in range(L)]
    X = np.random.default_rng(0).standard_normal((3, tree.n))
    Y = X
    for p in params:
        Y = layer.apply(p, Y)
    Hs = [layer.to_hss(p) for p in params]
    P = Hs[-1]
    for H in Hs[-2::-1]:
        P = P @ H                     # hssalg.arithmetic.multiply: ranks add
    assert P.max_rank <= L * k
    dense = np.linalg.multi_dot([H.todense() for H in Hs[::-1]])
    scale = np.linalg.norm(dense)
    assert np.linalg.norm(P.todense() - dense) <= 1e-12 * scale
    assert np.linalg.norm(Y - X @ dense.T) <= 1e-12 * scale * np.linalg.norm(X)
    tol = 1e-10 * scale
    for i in range(1, tree.n_nodes):
        r, c = block_row_rank(dense, tree, i, tol)
        assert r <= L * k and c <= L * k


# -- NeuralHSS ---------------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ["gelu", "tanh", "identity"])
def test_check_grads_model_loss(activation):
    tree = random_split_tree(18, 3, seed=1)
    model = NeuralHSS(tree, channels=2, n_layers=2, rank=2, activation=activation)
    params = model.init(seed=0)
    # give the biases nonzero values so that their gradients are checked away from zero
    params["blocks"]["0"]["b"] = np.array([0.1, -0.2])
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((3, 18)), rng.standard_normal((3, 18))

    def loss(p):
        r = model.apply(p, X) - Y
        return np.sum(r * r) / np.sum(Y * Y)

    check_grads(loss, modes=["rev"], order=1)(params)


def test_model_relu_runs_and_counts_params():
    tree = hs.ClusterTree.balanced(64, 8)
    model = NeuralHSS(tree, channels=4, n_layers=3, rank=3, activation="relu", share_weights=True)
    params = model.init(seed=2)
    assert model.n_params == model.n_params(params)
    assert model.apply(params, np.ones((2, 64))).shape == (2, 64)


@pytest.mark.parametrize("symmetric", [False, True])
def test_p5_linear_one_channel_model_exports_product(symmetric):
    tree = hs.ClusterTree.balanced(64, 8)
    k, L = 2, 3
    model = NeuralHSS(tree, channels=1, n_layers=L, rank=k, activation="identity", bias=False,
                      symmetric=symmetric)
    assert model.is_linear
    params = model.init(seed=1)
    H = model.to_hss(params, rtol=0)
    assert H.max_rank <= L * k            # K_l + w_l I has the rank of K_l
    X = np.random.default_rng(0).standard_normal((2, 64))
    A = H.todense()
    assert np.linalg.norm(model.apply(params, X) - X @ A.T) <= 1e-12 * np.linalg.norm(A) * np.linalg.norm(X)


def test_linear_multichannel_model_exports():
    tree = random_split_tree(30, 4, seed=3)
    model = NeuralHSS(tree, channels=3, n_layers=2, rank=2, activation="identity")
    params = model.init(seed=4)               # biases start at zero: the model is linear
    H = model.to_hss(params)
    X = np.random.default_rng(0).standard_normal((2, 30))
    A = H.todense()
    assert np.linalg.norm(model.apply(params, X) - X @ A.T) <= 1e-9 * np.linalg.norm(A) * np.linalg.norm(X)
    params["proj"]["b"] = np.array([1.0])
    with pytest.raises(ValueError, match="affine"):
        model.to_hss(params)
    assert np.allclose(model.to_hss(params, drop_bias=True).todense(), A)


# -- errors -------------------------------------------------------------------------------------

def test_errors_name_the_argument():
    tree = hs.ClusterTree.balanced(20, 3)
    with pytest.raises(TypeError, match="tree must be a hssalg.ClusterTree"):
        HSSLinear(20, 2)
    with pytest.raises(ValueError, match="rank must be an integer >= 0"):
        HSSLinear(tree, -1)
    with pytest.raises(TypeError, match="rank must be an integer"):
        HSSLinear(tree, 2.5)
    with pytest.raises(ValueError, match="share_weights=True needs nodes of equal size"):
        HSSLinear(hs.ClusterTree.balanced(20, 3), 2, share_weights=True)
    with pytest.raises(TypeError, match="dtype must be float64 or float32"):
        HSSLinear(tree, 2, dtype=np.int32)
    layer = HSSLinear(tree, 2)
    p = layer.init()
    with pytest.raises(ValueError, match=r"X must have shape \(batch, 20\)"):
        layer.apply(p, np.ones((2, 19)))
    with pytest.raises(ValueError, match="params is missing"):
        layer.apply({"D": p["D"]}, np.ones((2, 20)))
    with pytest.raises(ValueError, match=r"params\['U'\] must have shape"):
        layer.apply(dict(p, U=np.ones(3)), np.ones((2, 20)))
    with pytest.raises(ValueError, match="activation must be one of"):
        NeuralHSS(tree, 2, 1, 2, activation="swish")
    with pytest.raises(ValueError, match="channels must be an integer >= 1"):
        NeuralHSS(tree, 0, 1, 2)
    model = NeuralHSS(tree, 2, 1, 2, activation="tanh")
    with pytest.raises(ValueError, match="linear model"):
        model.to_hss(model.init())
    with pytest.raises(ValueError, match=r"X must have shape \(batch, 20\)"):
        model.apply(model.init(), np.ones(20))
