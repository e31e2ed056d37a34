"""hssalg_nn.baselines.stacked: the level-stacked autograd.numpy layer.

It is an independent reference for HSSLinear: its values are checked here against
the dense matrix of the exported HSSMatrix, and then the layer's hand-written
reverse sweep (hssalg._kernels.grad) is checked against autograd's derivative of
the stacked product.
"""

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad
from hypothesis import given, strategies as st

import hssalg as hs
from conftest import NOJIT
from hssalg_nn.baselines.stacked import StackedHSSLinear
from hssalg_nn.layers import HSSLinear
from strategies import EPS64, dense_from_generators


@st.composite
def uniform_layers(draw):
    """(layer, params) on a tree with uniform levels: n = m 2^depth, any rank and options."""
    m = draw(st.integers(1, 8))
    depth = draw(st.integers(0, 3 if NOJIT else 4))
    layer = HSSLinear(hs.ClusterTree.balanced(m * 2**depth, m), draw(st.integers(0, 5)),
                      symmetric=draw(st.booleans()), share_weights=draw(st.booleans()))
    return layer, layer.init(seed=draw(st.integers(0, 2**16)))


def _tol(layer, *norms):
    # products of up to 2 depth + 3 factors of norm O(1) (the init's scaling) summed over
    # O(depth) levels: rounding error ~ depth * eps times the product of the outer norms
    return 100 * (layer.tree.depth + 1) * EPS64 * np.prod(norms) + 1e-300


@given(uniform_layers(), st.integers(1, 4), st.integers(0, 2**16))
def test_stacked_product_is_the_exported_matrix_times_x(case, batch, seed):
    layer, params = case
    X = np.random.default_rng(seed).standard_normal((batch, layer.n))
    A = dense_from_generators(layer.to_hss(params))     # independent of every product kernel
    Y = StackedHSSLinear(layer).apply(params, X)
    assert Y.shape == (batch, layer.n)
    assert np.linalg.norm(Y - X @ A.T) <= _tol(layer, np.linalg.norm(A), np.linalg.norm(X))


@given(uniform_layers(), st.integers(1, 3), st.integers(0, 2**16))
def test_layer_gradients_equal_autograds_derivative_of_the_stacked_product(case, batch, seed):
    layer, params = case
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, layer.n))
    G = rng.standard_normal((batch, layer.n))
    stacked = StackedHSSLinear(layer)

    def loss(model):
        return lambda p, x: anp.sum(model.apply(p, x) * G)

    got = grad(loss(layer), argnum=(0, 1))(params, X)
    ref = grad(loss(stacked), argnum=(0, 1))(params, X)
    scale = np.linalg.norm(G) * np.linalg.norm(X)
    for kind in layer.kinds:
        assert np.linalg.norm(got[0][kind] - ref[0][kind]) <= _tol(layer, scale + np.linalg.norm(ref[0][kind])), kind
    A = dense_from_generators(layer.to_hss(params))
    assert np.linalg.norm(got[1] - ref[1]) <= _tol(layer, np.linalg.norm(G), np.linalg.norm(A))


def test_stacked_layer_follows_the_model_protocol():
    layer = HSSLinear(hs.ClusterTree.balanced(64, 8), 3)
    stacked = StackedHSSLinear(layer)
    assert stacked.n == 64 and int(stacked.n_params) == int(layer.n_params)
    params = stacked.init(seed=4)
    assert set(params) == set(layer.init(seed=4))
    assert "StackedHSSLinear(HSSLinear(n=64" in repr(stacked)
    with pytest.raises(ValueError, match=r"X must have shape \(batch, 64\).*got shape \(3, 63\)"):
        stacked.apply(params, np.zeros((3, 63)))


def test_stacked_layer_follows_a_tree_permutation():
    # a geometric tree whose levels are uniform: the stacked version works in tree order too
    tree = hs.ClusterTree.from_points(np.random.default_rng(0).random((64, 2)), leaf_size=8)
    assert not tree.has_identity_perm
    layer = HSSLinear(tree, 3)
    params = layer.init(seed=1)
    X = np.random.default_rng(2).standard_normal((3, 64))
    A = dense_from_generators(layer.to_hss(params))
    Y = StackedHSSLinear(layer).apply(params, X)
    assert np.linalg.norm(Y - X @ A.T) <= _tol(layer, np.linalg.norm(A), np.linalg.norm(X))


def test_stacked_layer_rejects_trees_it_cannot_stack():
    with pytest.raises(TypeError, match="layer must be a hssalg_nn.HSSLinear, got ndarray"):
        StackedHSSLinear(np.eye(4))
    # sizes 12 and 13 on one level
    with pytest.raises(ValueError, match="StackedHSSLinear needs nodes of equal size on every level, but level 1 "
                                         "has sizes from 12 to 13"):
        StackedHSSLinear(HSSLinear(hs.ClusterTree.balanced(25, 13), 2))
    # a leaf beside an inner node of the same size: [0, 8) is a leaf, [8, 16) splits in two
    tree = hs.ClusterTree(np.array([-1, 0, 0, 2, 2]), np.array([1, -1, 3, -1, -1]), np.array([2, -1, 4, -1, -1]),
                          np.array([0, 0, 8, 8, 12]), np.array([16, 8, 16, 12, 16]), np.array([0, 1, 3, 5]),
                          np.arange(16))
    assert list(tree.sizes[1:3]) == [8, 8] and list(tree.is_leaf[1:3]) == [True, False]
    with pytest.raises(ValueError, match="StackedHSSLinear needs every level to hold only leaves or only inner"):
        StackedHSSLinear(HSSLinear(tree, 2))
