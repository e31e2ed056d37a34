"""hssalg_nn.primitives: the differentiable HSS product and its vector-Jacobian products.

References are independent of the kernels under test: the dense matrix assembled
from the generators (strategies.dense_from_generators), hssalg's own matvec for the
transposed product, finite differences (autograd's check_grads), and the explicit
dense formulas of the generator gradients.
"""

import numpy as np
import pytest
from autograd import grad
from autograd.test_util import check_grads
from hypothesis import given, strategies as st

import hssalg as hs
from conftest import NOJIT
from hssalg_nn.primitives import KINDS, HSSLayout, hss_apply, inverse_permutation, permute_last
from strategies import EPS64, dense_from_generators, random_split_tree, trees

SMALL_N = 16 if NOJIT else 40
TINY_N = 10 if NOJIT else 18


@st.composite
def cases(draw, max_n=SMALL_N, max_rank=4):
    """(H, X, G, transpose): a random HSS matrix, a batch and a cotangent of the product."""
    tree = draw(trees(max_n=max_n))
    rank = draw(st.integers(0, max_rank))
    seed = draw(st.integers(0, 2**16))
    H = hs.gallery.random_hss(tree, rank, seed=seed, symmetric=draw(st.booleans()))
    s = draw(st.integers(1, 4))
    rng = np.random.default_rng(seed + 1)
    return H, rng.standard_normal((s, tree.n)), rng.standard_normal((s, tree.n)), draw(st.booleans())


def edge_trees():
    """Trees that break HSS codes: n = 1, leaf size 1, leaf size >= n, unbalanced."""
    return [hs.ClusterTree.balanced(1, 1), hs.ClusterTree.balanced(7, 1), hs.ClusterTree.balanced(5, 8),
            hs.ClusterTree.balanced(13, 3), random_split_tree(17, 2, seed=3),
            hs.ClusterTree.from_points(np.random.default_rng(0).random((15, 2)), 3)]


def _op(A, transpose):
    return A.T if transpose else A


# -- the product ------------------------------------------------------------------------

@given(cases())
def test_product_equals_dense(case):   # P1 through the primitive
    H, X, _, transpose = case
    layout, gens = HSSLayout.of(H)
    A = _op(dense_from_generators(H), transpose)
    Y = hss_apply(gens, X, layout, transpose=transpose)
    # products of O(depth) small factors: error ~ depth * eps * ||A|| ||X||
    scale = np.linalg.norm(A) * np.linalg.norm(X)
    assert Y.shape == X.shape
    assert np.linalg.norm(Y - X @ A.T) <= 50 * (H.tree.depth + 1) * EPS64 * scale


@pytest.mark.parametrize("tree", edge_trees(), ids=lambda t: repr(t))
@pytest.mark.parametrize("rank", [0, 1, 3])
def test_product_edge_cases(tree, rank):
    H = hs.gallery.random_hss(tree, rank, seed=rank)
    layout, gens = HSSLayout.of(H)
    X = np.random.default_rng(1).standard_normal((3, tree.n))
    A = dense_from_generators(H)
    for transpose in (False, True):
        Y = hss_apply(gens, X, layout, transpose=transpose)
        ref = X @ _op(A, transpose).T
        assert np.linalg.norm(Y - ref) <= 1e3 * EPS64 * np.linalg.norm(A) * np.linalg.norm(X)


def test_product_float32():
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(30, 4), 3, seed=0, dtype=np.float32)
    layout, gens = HSSLayout.of(H)
    X = np.random.default_rng(0).standard_normal((2, 30)).astype(np.float32)
    Y = hss_apply(gens, X, layout)
    assert Y.dtype == np.float32
    A = dense_from_generators(H)
    assert np.linalg.norm(Y - X @ A.T) <= 1e-5 * np.linalg.norm(A) * np.linalg.norm(X)


def test_product_does_not_write_into_inputs():
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(20, 3), 2, seed=0)
    layout, gens = HSSLayout.of(H)
    gens = {k: np.array(v) for k, v in gens.items()}
    before = {k: v.copy() for k, v in gens.items()}
    X = np.random.default_rng(0).standard_normal((2, 20))
    X0 = X.copy()
    grad(lambda g, X: np.sum(hss_apply(g, X, layout) ** 2), argnum=(0, 1))(gens, X)
    assert np.array_equal(X, X0)
    assert all(np.array_equal(gens[k], before[k]) for k in KINDS)


# -- vector-Jacobian products -----------------------------------------------------------

@given(cases())
def test_vjp_x_is_transposed_product(case):
    H, X, G, transpose = case
    layout, gens = HSSLayout.of(H)
    dX = grad(lambda X: np.sum(hss_apply(gens, X, layout, transpose=transpose) * G))(X)
    # hssalg's own kernel gives the reference: d<G, X op(A)^T>/dX = G op(A)
    ref = (H.T @ G.T).T if not transpose else (H @ G.T).T
    assert np.linalg.norm(dX - ref) <= 100 * (H.tree.depth + 1) * EPS64 * \
        np.linalg.norm(H.todense()) * np.linalg.norm(G)


@given(cases(max_n=TINY_N, max_rank=3))
def test_check_grads_x(case):
    H, X, _, transpose = case
    layout, gens = HSSLayout.of(H)
    check_grads(lambda X: hss_apply(gens, X, layout, transpose=transpose), modes=["rev"], order=1)(X)


@pytest.mark.parametrize("kind", KINDS)
@given(case=cases(max_n=TINY_N, max_rank=3))
def test_check_grads_generator(kind, case):
    H, X, _, transpose = case
    layout, gens = HSSLayout.of(H)

    def f(buf):
        g = dict(gens)
        g[kind] = buf
        return hss_apply(g, X, layout, transpose=transpose)

    check_grads(f, modes=["rev"], order=1)(np.array(gens[kind]))


def test_check_grads_all_generators_at_once():
    H = hs.gallery.random_hss(random_split_tree(14, 2, seed=5), 2, seed=2)
    layout, gens = HSSLayout.of(H)
    X = np.random.default_rng(3).standard_normal((2, 14))
    check_grads(lambda g: hss_apply(g, X, layout), modes=["rev"], order=1)(
        {k: np.array(v) for k, v in gens.items()})


def _nested_bases(H):
    """Full nested bases U_i, V_i (tree order) of every node below the root."""
    tree, g = H.tree, H.generators()
    Uf, Vf = {}, {}
    for lvl in range(tree.depth, 0, -1):
        for i in range(tree.level_ptr[lvl], tree.level_ptr[lvl + 1]):
            a, b = tree.left[i], tree.right[i]
            if a < 0:
                Uf[i], Vf[i] = g["U"][i], g["V"][i]
            else:
                Uf[i] = np.vstack([Uf[a] @ g["R"][a], Uf[b] @ g["R"][b]])
                Vf[i] = np.vstack([Vf[a] @ g["W"][a], Vf[b] @ g["W"][b]])
    return Uf, Vf


def _dense_vjps(H, X, G):
    """The generator gradients of <G, A X> from their closed forms, per node (column notation).

    x̂_i = V_iᵀ X_i and ĝ_i = U_iᵀ G_i with the full nested bases; ŷ_i and ẑ_i are the
    coefficients of the off-diagonal block row / column: A(i, iᶜ) X_iᶜ = U_i ŷ_i and
    A(iᶜ, i)ᵀ G_iᶜ = V_i ẑ_i, solved by least squares (the bases have full column rank).
    """
    tree = H.tree
    p = tree.perm
    A = H.todense()[np.ix_(p, p)]      # tree order
    Uf, Vf = _nested_bases(H)
    xh, gh, yh, zh = {}, {}, {}, {}
    for i in range(1, tree.n_nodes):
        sl = slice(tree.start[i], tree.stop[i])
        rest = np.r_[0:tree.start[i], tree.stop[i]:tree.n]
        xh[i], gh[i] = Vf[i].T @ X[sl], Uf[i].T @ G[sl]
        yh[i] = np.linalg.lstsq(Uf[i], A[sl][:, rest] @ X[rest], rcond=None)[0]
        zh[i] = np.linalg.lstsq(Vf[i], A[rest][:, sl].T @ G[rest], rcond=None)[0]
    out = {k: {} for k in KINDS}
    for i in range(tree.n_nodes):
        sl = slice(tree.start[i], tree.stop[i])
        a, b, par = tree.left[i], tree.right[i], tree.parent[i]
        if a < 0:
            out["D"][i] = G[sl] @ X[sl].T
            if i > 0:
                out["U"][i] = G[sl] @ yh[i].T
                out["V"][i] = X[sl] @ zh[i].T
        else:
            out["B12"][i] = gh[a] @ xh[b].T
            out["B21"][i] = gh[b] @ xh[a].T
        if par > 0:
            out["R"][i] = gh[i] @ yh[par].T
            out["W"][i] = xh[i] @ zh[par].T
    return out


@pytest.mark.parametrize("seed", range(2 if NOJIT else 6))
def test_generator_vjps_match_dense_formulas(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, TINY_N + 1))
    tree = [hs.ClusterTree.balanced(n, int(rng.integers(1, 4))), random_split_tree(n, 2, seed)][seed % 2]
    H = hs.gallery.random_hss(tree, int(rng.integers(1, 3)), seed=seed)
    layout, gens = HSSLayout.of(H)
    s = int(rng.integers(1, 4))
    X, G = rng.standard_normal((s, n)), rng.standard_normal((s, n))
    grads = grad(lambda g: np.sum(hss_apply(g, X, layout) * G))({k: np.array(v) for k, v in gens.items()})
    p = tree.perm
    ref = _dense_vjps(H, X[:, p].T, G[:, p].T)
    shapes, offs = layout.shapes, layout.offsets
    for kind in KINDS:
        for i, blk in ref[kind].items():
            got = grads[kind][offs[kind][i]:offs[kind][i + 1]].reshape(shapes[kind][0][i], shapes[kind][1][i])
            # the least-squares coefficients carry the conditioning of the random bases
            tol = 1e-8 * (1 + np.linalg.norm(blk))
            assert np.linalg.norm(got - blk) <= tol, (kind, i)


@pytest.mark.parametrize("tree", edge_trees(), ids=lambda t: repr(t))
def test_check_grads_edge_cases(tree):
    H = hs.gallery.random_hss(tree, 2, seed=4)
    layout, gens = HSSLayout.of(H)
    X = np.random.default_rng(2).standard_normal((2, tree.n))
    for transpose in (False, True):
        check_grads(lambda g, X: hss_apply(g, X, layout, transpose=transpose), modes=["rev"], order=1)(
            {k: np.array(v) for k, v in gens.items()}, X)


def test_permute_last_grads():
    idx = np.random.default_rng(0).permutation(7)
    check_grads(lambda x: permute_last(x, idx, inverse_permutation(idx)) ** 2, modes=["rev"], order=1)(
        np.random.default_rng(1).standard_normal((3, 7)))


# -- errors -------------------------------------------------------------------------------

def test_errors_name_the_argument():
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(10, 3), 2, seed=0)
    layout, gens = HSSLayout.of(H)
    with pytest.raises(ValueError, match=r"X must be a batch of shape \(s, 10\)"):
        hss_apply(gens, np.ones((2, 9)), layout)
    with pytest.raises(ValueError, match=r"X must be a batch"):
        hss_apply(gens, np.ones(10), layout)
    bad = dict(gens)
    bad["U"] = np.ones(3)
    with pytest.raises(ValueError, match=r"gens\['U'\] must be a 1-D buffer of length"):
        hss_apply(bad, np.ones((1, 10)), layout)
    del bad["U"]
    with pytest.raises(ValueError, match="missing"):
        hss_apply(bad, np.ones((1, 10)), layout)
    with pytest.raises(TypeError, match="layout must be an HSSLayout"):
        hss_apply(gens, np.ones((1, 10)), H.tree)
    with pytest.raises(TypeError, match="gens must be a dict"):
        hss_apply([1, 2], np.ones((1, 10)), layout)
    mixed = {k: np.asarray(v, dtype=np.float32) if k == "D" else v for k, v in gens.items()}
    with pytest.raises(TypeError, match="share one dtype"):
        hss_apply(mixed, np.ones((1, 10)), layout)
    with pytest.raises(ValueError, match=r"kU\[0\].*must be 0"):
        HSSLayout(H.tree, np.ones(H.tree.n_nodes, dtype=int), np.zeros(H.tree.n_nodes, dtype=int))
    with pytest.raises(ValueError, match="kV must be an integer array of shape"):
        HSSLayout(H.tree, np.zeros(H.tree.n_nodes, dtype=int), np.zeros(3, dtype=int))


def test_layout_to_hss_round_trip():
    H = hs.gallery.random_hss(random_split_tree(25, 3, seed=1), 3, seed=1)
    layout, gens = HSSLayout.of(H)
    H2 = layout.to_hss(gens)
    assert np.array_equal(H2.todense(), H.todense())
    layoutT, gensT = HSSLayout.of(H.T)
    X = np.random.default_rng(0).standard_normal((2, 25))
    assert np.allclose(hss_apply(gensT, X, layoutT), hss_apply(gens, X, layout, transpose=True),
                       rtol=1e-12, atol=1e-12 * np.linalg.norm(X) * np.linalg.norm(H.todense()))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_large_kernel_buffers_are_whole_zeroed_arrays(dtype):
    # alloc.zeros hands out an aligned view of a larger allocation from 2 MiB on: the view
    # must still be exactly n elements of the dtype, all zero and writable
    from hssalg._kernels.alloc import zeros
    for n in (7, (3 << 20) // np.dtype(dtype).itemsize + 5):
        z = zeros(n, np.dtype(dtype))
        assert z.shape == (n,) and z.dtype == dtype and z.flags.writeable
        assert not np.any(z)
        z[-1] = 1.0
        assert z.sum() == 1.0
