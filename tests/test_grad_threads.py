"""The neural layer's sweeps split over threads (hssalg._kernels.grad and .tangent).

The forward, reverse and tangent sweeps hand the subtrees below a cut level to threads
(:func:`tree_parts`). Every product in them is the same whatever the split, so
the results must agree bit for bit with the one-part run; the one-part run is
itself checked against dense references and finite differences in
test_nn_primitives.py. The small sizes here would run on one thread through
``hss_apply`` (below 2^15 numbers), so the kernels are called directly with
the split and the thread count forced.
"""

import numba
import numpy as np
import pytest
from hypothesis import given, strategies as st

import hssalg as hs
from hssalg._kernels import grad as kgrad
from hssalg._kernels import tangent as ktangent
from hssalg._kernels.matvec import run_parallel
from hssalg_nn.primitives import HSSLayout, _readonly, _roles, _tangent_roles
from strategies import random_split_tree, trees

# at most the threads numba has (set_num_threads refuses more)
THREADS = min(2, numba.config.NUMBA_NUM_THREADS)


def _nodes(part):
    return [node for lo, hi in part for node in range(lo, hi)]


@given(trees(max_n=200), st.integers(1, 12))
def test_tree_parts_cover_every_node_once(tree, n_parts):
    left, level_ptr = tree.left, tree.level_ptr
    parts = kgrad.tree_parts(left, level_ptr, n_parts)
    assert parts.shape[1:] == (level_ptr.size - 1, 2)
    owner = np.full(left.size, -1)
    for j, part in enumerate(parts):
        for lvl, (lo, hi) in enumerate(part):
            if hi > lo:   # every range lies inside its level
                assert level_ptr[lvl] <= lo and hi <= level_ptr[lvl + 1]
        for node in _nodes(part):
            assert owner[node] == -1, "a node in two parts"
            owner[node] = j
    assert (owner >= 0).all(), "a node in no part"
    for node in range(left.size):
        if left[node] >= 0:     # a subtree holds its nodes' children, and the top their parents
            for child in (left[node], left[node] + 1):
                assert owner[child] == owner[node] or (owner[node] == 0 and owner[child] > 0)
    # the subtrees start at one level: the first with n_parts nodes, else the deepest
    sizes = np.diff(level_ptr)
    cut = int(np.argmax(sizes >= n_parts)) if (sizes >= n_parts).any() else sizes.size - 1
    assert parts.shape[0] - 1 == sizes[cut]
    assert set(_nodes(parts[0])) == set(range(level_ptr[cut]))


def _call(kernel, n_threads, *args):
    # the kernel's split follows its n_threads argument; run_parallel also sets numba's threads
    if n_threads <= THREADS:
        return run_parallel(kernel, n_threads, *args)
    return kernel(*args, n_threads)


def _run_all(H, X, G, transpose, diagonal, need_dX, n_threads):
    """Every output of the forward, reverse and tangent sweeps (the tangent along G as dX
    and along the generators scaled by -1/2) run with ``n_threads``."""
    layout, gens = HSSLayout.of(H)
    gens = {k: _readonly(v, np.float64) for k, v in gens.items()}
    if not diagonal:
        gens["D"] = _readonly(np.empty(0), np.float64)
    roles = _roles(layout, gens, transpose)
    droles = _tangent_roles({k: _readonly(-0.5 * v, np.float64) for k, v in gens.items()}, transpose)
    Xt = _readonly(X, np.float64)
    Gt = _readonly(G, np.float64)
    tree = layout.tree.arrays
    Y, xt, yt = _call(kgrad.forward, n_threads, tree, *roles, Xt)
    bwd = _call(kgrad.backward, n_threads, tree, *roles, Xt, xt, yt, Gt, need_dX)
    dX = Gt if need_dX else _readonly(np.empty((0, X.shape[1])), np.float64)
    tan = _call(ktangent.tangent, n_threads, tree, *roles, *droles, Xt, xt, yt, dX)
    ftan = _call(ktangent.forward_tangent, n_threads, tree, *roles, *droles, Xt, dX)
    return (Y, xt, yt) + tuple(bwd) + (tan,) + tuple(ftan)


def _assert_same_bits(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        assert u.shape == v.shape
        assert np.array_equal(u, v)


@st.composite
def cases(draw):
    tree = draw(trees(max_n=120))
    rank = draw(st.integers(0, 4))
    seed = draw(st.integers(0, 2**16))
    H = hs.gallery.random_hss(tree, rank, seed=seed, symmetric=draw(st.booleans()))
    rng = np.random.default_rng(seed)
    s = draw(st.integers(1, 5))
    return H, rng.standard_normal((s, tree.n)), rng.standard_normal((s, tree.n))


@given(cases(), st.booleans(), st.booleans(), st.booleans(), st.integers(2, 5))
def test_sweeps_are_the_same_bits_on_any_number_of_threads(case, transpose, diagonal, need_dX, n_threads):
    H, X, G = case
    one = _run_all(H, X, G, transpose, diagonal, need_dX, 1)
    _assert_same_bits(one, _run_all(H, X, G, transpose, diagonal, need_dX, n_threads))


@pytest.mark.parametrize("tree", [hs.ClusterTree.balanced(4096, 32), random_split_tree(3000, 24, seed=5)],
                         ids=["balanced", "random-split"])
def test_sweeps_on_threads_at_a_size_with_many_subtrees(tree):
    # 128 / about 125 leaves: 8 subtrees for 2 threads, each a few levels deep
    H = hs.gallery.random_hss(tree, 6, seed=1)
    rng = np.random.default_rng(2)
    X, G = rng.standard_normal((8, tree.n)), rng.standard_normal((8, tree.n))
    one = _run_all(H, X, G, False, True, True, 1)
    for _ in range(3):   # repeated: a race between threads would show as a difference now and then
        _assert_same_bits(one, _run_all(H, X, G, False, True, True, THREADS))
