"""hssalg_nn.primitives: the differentiable HSS product and its vector-Jacobian products.

References are independent of the kernels under test: the dense matrix assembled
from the generators (strategies.dense_from_generators), hssalg's own matvec for the
transposed product, finite differences (autograd's check_grads), and the explicit
dense formulas of the generator gradients.
"""

import numpy as np
import pytest
from autograd import grad, make_jvp
from autograd.test_util import check_grads
from hypothesis import given, strategies as st

import hssalg as hs
from conftest import NOJIT
from hssalg_nn.primitives import KINDS, HSSLayout, hss_apply, hss_apply_jvp, inverse_permutation, permute_last
from strategies import EPS32, EPS64, dense_from_generators, random_split_tree, trees

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


# -- Jacobian-vector products (forward mode) ------------------------------------------------

def _plain(gens):
    return {k: np.array(v) for k, v in gens.items()}


def _direction(gens, seed):
    """A random tangent of the generators, each buffer of unit RMS entries (like the generators)."""
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(v.size) for k, v in gens.items()}


@given(cases(max_n=TINY_N, max_rank=3))
def test_check_jvp_generators(case):
    H, X, _, transpose = case
    layout, gens = HSSLayout.of(H)
    check_grads(lambda g: hss_apply(g, X, layout, transpose=transpose), modes=["fwd"], order=1)(_plain(gens))


@given(cases(max_n=TINY_N, max_rank=3))
def test_check_jvp_x(case):
    H, X, _, transpose = case
    layout, gens = HSSLayout.of(H)
    check_grads(lambda X: hss_apply(gens, X, layout, transpose=transpose), modes=["fwd"], order=1)(X)


@given(cases(max_n=TINY_N, max_rank=3))
def test_check_jvp_generators_and_x_together(case):   # both tangents in one sweep
    H, X, _, transpose = case
    layout, gens = HSSLayout.of(H)
    check_grads(lambda g, X: hss_apply(g, X, layout, transpose=transpose), modes=["fwd"], order=1)(
        _plain(gens), X)


@pytest.mark.parametrize("kind", KINDS)
def test_check_jvp_one_generator_in_a_plain_dict(kind):
    # a plain dict holding one boxed buffer goes through autograd's dict (its JVP is ours)
    H = hs.gallery.random_hss(random_split_tree(15, 2, seed=1), 2, seed=3)
    layout, gens = HSSLayout.of(H)
    X = np.random.default_rng(0).standard_normal((2, 15))

    def f(buf):
        g = dict(gens)
        g[kind] = buf
        return hss_apply(g, X, layout, transpose=kind in ("U", "B21"))

    check_grads(f, modes=["fwd"], order=1)(np.array(gens[kind]))


@pytest.mark.parametrize("tree", edge_trees(), ids=lambda t: repr(t))
@pytest.mark.parametrize("rank", [0, 2])
def test_check_jvp_edge_cases(tree, rank):
    H = hs.gallery.random_hss(tree, rank, seed=4)
    layout, gens = HSSLayout.of(H)
    X = np.random.default_rng(2).standard_normal((2, tree.n))
    for transpose in (False, True):
        check_grads(lambda g, X: hss_apply(g, X, layout, transpose=transpose), modes=["fwd"], order=1)(
            _plain(gens), X)


@given(cases(), st.booleans(), st.integers(0, 2**16))
def test_hss_apply_jvp_equals_central_difference(case, with_dX, seed):
    H, X, dX, transpose = case
    layout, gens = HSSLayout.of(H)
    dg = _direction(gens, seed)
    dX = dX if with_dX else None
    Y, dY = hss_apply_jvp(gens, dg, X, layout, transpose=transpose, dX=dX)
    assert np.array_equal(Y, hss_apply(gens, X, layout, transpose=transpose))   # the same operations
    h = 1e-6
    Xp, Xm = (X, X) if dX is None else (X + h * dX, X - h * dX)
    Yp = hss_apply({k: gens[k] + h * dg[k] for k in KINDS}, Xp, layout, transpose=transpose)
    Ym = hss_apply({k: gens[k] - h * dg[k] for k in KINDS}, Xm, layout, transpose=transpose)
    fd = (Yp - Ym) / (2 * h)
    # central difference: rounding in Y(+-h), ~ depth * eps * (|Y+| + |Y-|) for these random
    # factors (the products' scale is of the size of their values), divided by 2h; truncation
    # h^2/6 times the third derivative, f being a polynomial of degree <= depth + 2 in h with
    # coefficients of the size of Y: ~1e-12 (depth + 2)^3 |Y|, far below
    scale = np.linalg.norm(Yp) + np.linalg.norm(Ym) + np.linalg.norm(dY)
    tol = 100 * (H.tree.depth + 1) * EPS64 / h * scale
    assert np.linalg.norm(dY - fd) <= tol


@given(cases(), st.booleans(), st.integers(0, 2**16))
def test_hss_apply_jvp_equals_make_jvp(case, with_dX, seed):
    H, X, dX, transpose = case
    layout, gens = HSSLayout.of(H)
    gens = _plain(gens)
    dg = _direction(gens, seed)
    Y, dY = hss_apply_jvp(gens, dg, X, layout, transpose=transpose, dX=dX if with_dX else None)
    if with_dX:
        Y2, dY2 = make_jvp(lambda g, X: hss_apply(g, X, layout, transpose=transpose), argnum=(0, 1))(
            gens, X)((dg, dX))
    else:
        Y2, dY2 = make_jvp(lambda g: hss_apply(g, X, layout, transpose=transpose))(gens)(dg)
    # the same sweep, run as one kernel or as the product's sweeps plus the tangent's: they
    # agree to the rounding of O(depth) small products of factors of the sizes of A, dA, X, dX
    scale = sum(np.linalg.norm(v) for v in gens.values()) * \
        sum(np.linalg.norm(v) for v in dg.values()) * (np.linalg.norm(X) + np.linalg.norm(dX))
    assert np.array_equal(Y, Y2)
    assert np.linalg.norm(dY - dY2) <= 100 * (H.tree.depth + 1) * EPS64 * scale


@given(cases())
def test_hss_apply_jvp_in_x_only_is_the_product(case):   # linear in X
    H, X, dX, transpose = case
    layout, gens = HSSLayout.of(H)
    Y, dY = hss_apply_jvp(gens, None, X, layout, transpose=transpose, dX=dX)
    ref = hss_apply(gens, dX, layout, transpose=transpose)
    # two evaluations of the same product, summed in different orders at the leaves
    A = dense_from_generators(H)
    assert np.linalg.norm(dY - ref) <= 100 * (H.tree.depth + 1) * EPS64 * np.linalg.norm(A) * np.linalg.norm(dX)
    _, dY0 = hss_apply_jvp(gens, None, X, layout, transpose=transpose)
    assert not np.any(dY0)   # no direction at all


def test_hss_apply_jvp_ignores_extra_keys_and_keeps_its_inputs():
    H = hs.gallery.random_hss(random_split_tree(20, 3, seed=2), 2, seed=0)
    layout, gens = HSSLayout.of(H)
    gens = _plain(gens)
    dg = _direction(gens, 1)
    X, dX = np.random.default_rng(0).standard_normal((2, 2, 20))
    before = [{k: v.copy() for k, v in d.items()} for d in (gens, dg)] + [X.copy(), dX.copy()]
    Y, dY = hss_apply_jvp(gens, dg, X, layout, dX=dX)
    Y2, dY2 = hss_apply_jvp(dict(gens, extra=np.ones(3)), dict(dg, extra=np.ones(3)), X, layout, dX=dX)
    assert np.array_equal(Y, Y2) and np.array_equal(dY, dY2)
    assert all(np.array_equal(d[k], b[k]) for d, b in zip((gens, dg), before[:2]) for k in KINDS)
    assert np.array_equal(X, before[2]) and np.array_equal(dX, before[3])


@pytest.mark.parametrize("transpose", [False, True])
def test_hss_apply_jvp_float32(transpose):
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(30, 4), 3, seed=0, dtype=np.float32)
    layout, gens = HSSLayout.of(H)
    dg = {k: v.astype(np.float32) for k, v in _direction(gens, 0).items()}
    X, dX = np.random.default_rng(0).standard_normal((2, 2, 30)).astype(np.float32)
    Y, dY = hss_apply_jvp(gens, dg, X, layout, transpose=transpose, dX=dX)
    assert Y.dtype == np.float32 and dY.dtype == np.float32
    g64 = {k: v.astype(np.float64) for k, v in gens.items()}
    _, dY64 = hss_apply_jvp(g64, dg, X.astype(np.float64), layout, transpose=transpose,
                            dX=dX.astype(np.float64))
    # float32 rounding of O(depth) small products of factors of the sizes of A, dA, X, dX
    scale = sum(np.linalg.norm(v) for v in g64.values()) * \
        sum(np.linalg.norm(v) for v in dg.values()) * (np.linalg.norm(X) + np.linalg.norm(dX))
    assert np.linalg.norm(dY - dY64) <= 100 * (H.tree.depth + 1) * EPS32 * scale
    _, dY2 = make_jvp(lambda g: hss_apply(g, X, layout, transpose=transpose))(_plain(gens))(dg)
    assert dY2.dtype == np.float32


def _flat_inner(a, b):
    from autograd.misc import flatten
    return float(np.dot(flatten(a)[0], flatten(b)[0]))


@pytest.mark.parametrize("symmetric,share", [(True, False), (False, True), (True, True)])
def test_make_jvp_through_hss_linear(symmetric, share):
    from hssalg_nn.layers import HSSLinear
    # sharing needs equal sizes per level; the random tree has a non-trivial permutation
    tree = hs.ClusterTree.balanced(32, 4) if share else random_split_tree(30, 4, seed=0)
    layer = HSSLinear(tree, 3, symmetric=symmetric, share_weights=share)
    params, v = layer.init(seed=0), layer.init(seed=1)
    rng = np.random.default_rng(0)
    X, G = rng.standard_normal((2, 3, tree.n))
    Y, dY = make_jvp(lambda p: layer.apply(p, X))(params)(v)
    # the generators are linear in the parameters: the tangent generators of v are generators(v)
    gens, dgens = layer.generators(params), layer.generators(v)
    Y2, dY2 = hss_apply_jvp(gens, dgens, X, layer.layout)
    assert np.array_equal(Y, Y2)
    scale = sum(np.linalg.norm(g) for g in gens.values()) * \
        sum(np.linalg.norm(g) for g in dgens.values()) * np.linalg.norm(X)
    # the same sweep by two routes (see test_hss_apply_jvp_equals_make_jvp)
    assert np.linalg.norm(dY - dY2) <= 100 * (layer.tree.depth + 1) * EPS64 * scale
    # <G, J v> from forward mode equals <J^T G, v> from reverse mode, up to the rounding of
    # both sweeps (each ~ depth * eps * scale, times |G| in the inner product)
    g = grad(lambda p: np.sum(layer.apply(p, X) * G))(params)
    assert abs(np.sum(dY * G) - _flat_inner(g, v)) <= 200 * (layer.tree.depth + 1) * EPS64 * scale * \
        np.linalg.norm(G)
    # and through the 1-D input path with the transpose
    _, d1 = make_jvp(lambda p: layer.apply(p, X[0], transpose=True))(params)(v)
    _, dT = hss_apply_jvp(gens, dgens, X, layer.layout, transpose=True)
    assert np.linalg.norm(d1 - dT[0]) <= 100 * (layer.tree.depth + 1) * EPS64 * scale


@pytest.mark.parametrize("activation", ["gelu", "identity"])
def test_make_jvp_through_neural_hss_loss(activation):
    from autograd.misc import flatten
    from hssalg_nn.layers import NeuralHSS
    model = NeuralHSS(hs.ClusterTree.balanced(24, 4), 2, 2, 2, activation=activation, symmetric=True)
    params = model.init(seed=1)
    flat, unflatten = flatten(params)
    rng = np.random.default_rng(0)
    v = unflatten(rng.standard_normal(flat.size))
    X, T = rng.standard_normal((2, 3, 24))

    def loss(p):
        return np.mean((model.apply(p, X) - T) ** 2)

    value, directional = make_jvp(loss)(params)(v)
    assert value == loss(params)
    g_flat = flatten(grad(loss)(params))[0]
    v_flat = flatten(v)[0]
    ref = float(np.dot(g_flat, v_flat))
    # <grad, v> is a sum of n_params terms g_j v_j; the two modes compute each g_j v_j
    # (and the sum) to a relative rounding of ~ (depth + n_layers) * eps, so the difference
    # is bounded by that times sum |g_j v_j|
    tol = 1e3 * EPS64 * np.sum(np.abs(g_flat * v_flat))
    assert abs(directional - ref) <= tol


def test_permute_last_jvp():
    idx = np.random.default_rng(0).permutation(7)
    check_grads(lambda x: permute_last(x, idx, inverse_permutation(idx)) ** 2, modes=["fwd"], order=1)(
        np.random.default_rng(1).standard_normal((3, 7)))


def test_hss_apply_jvp_errors_name_the_argument():
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(10, 3), 2, seed=0)
    layout, gens = HSSLayout.of(H)
    dg = _direction(gens, 0)
    X = np.ones((2, 10))
    with pytest.raises(TypeError, match="layout must be an HSSLayout"):
        hss_apply_jvp(gens, dg, X, H.tree)
    with pytest.raises(TypeError, match="gens must be a dict"):
        hss_apply_jvp([1], dg, X, layout)
    with pytest.raises(TypeError, match="dgens must be a dict"):
        hss_apply_jvp(gens, [1], X, layout)
    with pytest.raises(ValueError, match=r"dgens is missing the generator buffer\(s\) \['R'\]"):
        hss_apply_jvp(gens, {k: v for k, v in dg.items() if k != "R"}, X, layout)
    with pytest.raises(ValueError, match=r"dgens\['W'\] must be a 1-D buffer of length"):
        hss_apply_jvp(gens, dict(dg, W=np.ones(2)), X, layout)
    with pytest.raises(TypeError, match=r"dgens\['D'\] must be float64 or float32"):
        hss_apply_jvp(gens, dict(dg, D=dg["D"].astype(np.complex128)), X, layout)
    with pytest.raises(ValueError, match=r"X must be a batch of shape \(s, 10\)"):
        hss_apply_jvp(gens, dg, np.ones(10), layout)
    with pytest.raises(ValueError, match=r"dX must be a batch of shape \(s, 10\)"):
        hss_apply_jvp(gens, dg, X, layout, dX=np.ones((2, 9)))
    with pytest.raises(ValueError, match=r"dX must have the shape of X, \(2, 10\), got shape \(3, 10\)"):
        hss_apply_jvp(gens, dg, X, layout, dX=np.ones((3, 10)))
    with pytest.raises(TypeError, match="X must hold real numbers"):
        hss_apply_jvp(gens, dg, X.astype(np.complex128), layout)


# -- Linearization: one forward sweep, many Jacobian products ------------------------------------

@given(cases(), st.booleans(), st.integers(0, 2**16))
def test_linearization_products_match_the_primitives(case, diagonal, seed):
    from hssalg_nn.primitives import Linearization
    H, X, G, _ = case
    layout, gens = HSSLayout.of(H)
    dg = _direction(gens, seed)
    if diagonal:
        lin = Linearization(gens, X, layout)
        assert np.array_equal(lin.Y, hss_apply(gens, X, layout))   # the same kernel, the same bits
        ref_gens, ref_dg = gens, dg
    else:
        # without the diagonal: the products of the matrix whose D blocks are zero, and D and
        # its tangent are never read (NaN there would show)
        ref_gens = {**gens, "D": np.zeros_like(gens["D"])}
        ref_dg = {**dg, "D": np.zeros_like(dg["D"])}
        lin = Linearization({**gens, "D": np.full_like(gens["D"], np.nan)}, X, layout, diagonal=False)
        dg = {**dg, "D": np.full_like(dg["D"], np.nan)}
        ref_Y = hss_apply(ref_gens, X, layout)
        assert np.linalg.norm(lin.Y - ref_Y) <= 64 * EPS64 * (H.tree.depth + 1) * np.linalg.norm(ref_Y)
    ref = hss_apply_jvp(ref_gens, ref_dg, X, layout)[1]
    dY = lin.jvp(dg)
    # the same products, some summed in another order when D is skipped: rounding of |dY| size
    assert np.linalg.norm(dY - ref) <= 64 * EPS64 * (H.tree.depth + 1) * np.linalg.norm(ref)
    g = lin.vjp(G)
    ref_g = grad(lambda gg: np.sum(hss_apply(gg, X, layout) * G))(_plain(ref_gens))
    for kind in KINDS:
        if kind == "D" and not diagonal:
            assert g["D"].size == 0
        else:
            assert np.array_equal(g[kind], ref_g[kind]), kind      # the same backward sweep
    with pytest.raises(ValueError, match="G must have the shape of Y"):
        lin.vjp(np.zeros((G.shape[0] + 1, G.shape[1])))
    with pytest.raises(ValueError, match=r"G must be a batch of shape \(s, "):
        lin.vjp(np.zeros((G.shape[0], G.shape[1] + 1)))
