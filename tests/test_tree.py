"""ClusterTree: structure invariants, geometric splits, argument checks."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

import hssalg as hs
from strategies import random_split_tree, trees


def check_invariants(tree):
    """Independent check of the flat-array contract of ARCHITECTURE.md §2."""
    n = tree.n
    assert tree.start[0] == 0 and tree.stop[0] == n and tree.parent[0] == -1
    assert sorted(tree.perm.tolist()) == list(range(n))
    assert np.array_equal(tree.perm[tree.iperm], np.arange(n))
    leaves = tree.leaves
    # leaves tile 0..n-1 in order
    assert np.array_equal(np.concatenate([np.arange(tree.start[i], tree.stop[i]) for i in leaves]), np.arange(n))
    for lvl in range(tree.depth + 1):
        ids = np.arange(tree.level_ptr[lvl], tree.level_ptr[lvl + 1])
        assert np.all(tree.level[ids] == lvl)
    for i in range(tree.n_nodes):
        if tree.left[i] >= 0:
            a, b = tree.left[i], tree.right[i]
            assert tree.parent[a] == i and tree.parent[b] == i
            assert tree.start[a] == tree.start[i] and tree.stop[a] == tree.start[b] and tree.stop[b] == tree.stop[i]
            assert tree.sizes[i] > tree.leaf_size


@given(st.integers(1, 3000), st.integers(1, 70))
def test_balanced_invariants(n, leaf_size):
    tree = hs.ClusterTree.balanced(n, leaf_size)
    check_invariants(tree)
    assert np.array_equal(tree.perm, np.arange(n))
    assert tree.sizes[tree.leaves].max() <= leaf_size
    # index bisection: siblings differ in size by at most one
    inner = np.flatnonzero(~tree.is_leaf)
    assert np.all(np.abs(tree.sizes[tree.left[inner]] - tree.sizes[tree.right[inner]]) <= 1)
    # depth is the number of halvings needed to get below leaf_size
    assert tree.depth == max(0, int(np.ceil(np.log2(n / leaf_size)))) or n <= leaf_size


def test_single_leaf_when_leaf_size_reaches_n():
    for n, leaf in [(1, 1), (5, 5), (5, 100)]:
        tree = hs.ClusterTree.balanced(n, leaf)
        assert tree.n_nodes == 1 and tree.depth == 0 and tree.is_leaf[0]


def test_leaf_size_one_gives_singletons():
    tree = hs.ClusterTree.balanced(37, 1)
    assert np.all(tree.sizes[tree.leaves] == 1)
    assert len(tree.leaves) == 37


@given(trees())
def test_drawn_trees_satisfy_invariants(tree):
    check_invariants(tree)


@given(st.integers(2, 400), st.integers(1, 3), st.integers(1, 20), st.integers(0, 1000))
def test_from_points_splits_longest_side_at_median(n, d, leaf_size, seed):
    pts = np.random.default_rng(seed).random((n, d)) * np.array([1.0, 3.0, 0.5][:d])
    tree = hs.ClusterTree.from_points(pts, leaf_size)
    check_invariants(tree)
    # same node sizes as index bisection: the split is at the median count
    assert np.array_equal(tree.sizes, hs.ClusterTree.balanced(n, leaf_size).sizes)
    for i in np.flatnonzero(~tree.is_leaf):
        own = pts[tree.perm[tree.start[i]:tree.stop[i]]]
        axis = np.argmax(own.max(axis=0) - own.min(axis=0))
        a, b = tree.left[i], tree.right[i]
        left_pts = pts[tree.perm[tree.start[a]:tree.stop[a]], axis]
        right_pts = pts[tree.perm[tree.start[b]:tree.stop[b]], axis]
        assert left_pts.max() <= right_pts.min()


def test_from_points_accepts_1d_vector_and_keeps_caller_order():
    x = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2])
    tree = hs.ClusterTree.from_points(x, leaf_size=1)
    # the tree order of a 1-D point set is the sorted order
    assert np.array_equal(x[tree.perm], np.sort(x))


def test_from_points_duplicates_and_clusters():
    rng = np.random.default_rng(0)
    same = np.zeros((500, 2))
    tree = hs.ClusterTree.from_points(same, 16)
    check_invariants(tree)
    two = np.vstack([rng.random((300, 3)), 1e6 + rng.random((200, 3))])
    tree = hs.ClusterTree.from_points(two, 50)
    check_invariants(tree)
    # the first split separates the far cluster completely
    a = tree.left[0]
    first = set(tree.perm[tree.start[a]:tree.stop[a]].tolist())
    assert first.issuperset(range(250)) or first.isdisjoint(range(300, 500))


def test_random_split_tree_is_valid():
    tree = random_split_tree(100, 3, seed=4)
    check_invariants(tree)
    assert len(np.unique(tree.level[tree.leaves])) > 1


@pytest.mark.parametrize("n, leaf, exc, msg", [
    (0, 8, ValueError, "n must be an integer >= 1, got 0"),
    (-3, 8, ValueError, "n must be"),
    (10, 0, ValueError, "leaf_size must be an integer >= 1, got 0"),
    (10.0, 4, TypeError, "n must be an integer, got float"),
    (10, 2.5, TypeError, "leaf_size must be an integer"),
    (True, 4, TypeError, "n must be an integer"),
])
def test_balanced_rejects_bad_sizes(n, leaf, exc, msg):
    with pytest.raises(exc, match=msg):
        hs.ClusterTree.balanced(n, leaf)


@pytest.mark.parametrize("points, msg", [
    (np.array([[0.0, np.nan]]), "points contains 1 non-finite entry"),
    (np.array([[np.inf, 0.0], [0.0, 0.0]]), "non-finite"),
    (np.zeros((0, 2)), "at least one point"),
    (np.zeros((3, 0)), "at least one coordinate"),
    (np.zeros((2, 2, 2)), "points must be a 1-D or 2-D array, got shape \\(2, 2, 2\\)"),
])
def test_from_points_rejects_bad_points(points, msg):
    with pytest.raises(ValueError, match=msg):
        hs.ClusterTree.from_points(points, 4)


def test_from_points_rejects_complex_and_bad_leaf():
    with pytest.raises(TypeError, match="points must be real"):
        hs.ClusterTree.from_points(np.ones(3, dtype=complex), 2)
    with pytest.raises(ValueError, match="leaf_size"):
        hs.ClusterTree.from_points(np.ones((3, 2)), 0)


def test_constructor_rejects_inconsistent_arrays():
    t = hs.ClusterTree.balanced(20, 5)
    args = dict(parent=t.parent, left=t.left, right=t.right, start=t.start, stop=t.stop,
                level_ptr=t.level_ptr, perm=t.perm)
    bad_perm = t.perm.copy()
    bad_perm[0] = 1
    with pytest.raises(ValueError, match="perm must be a permutation"):
        hs.ClusterTree(**{**args, "perm": bad_perm})
    bad_stop = t.stop.copy()
    bad_stop[1] += 1
    with pytest.raises(ValueError, match="children must be consecutive"):
        hs.ClusterTree(**{**args, "stop": bad_stop})
    with pytest.raises(ValueError, match="left has"):
        hs.ClusterTree(**{**args, "left": t.left[:-1]})
    with pytest.raises(ValueError, match="level_ptr"):
        hs.ClusterTree(**{**args, "level_ptr": t.level_ptr[::-1]})


def test_arrays_are_read_only_and_trees_compare_by_content():
    t = hs.ClusterTree.balanced(50, 8)
    with pytest.raises(ValueError):
        t.start[0] = 3
    assert t == hs.ClusterTree.balanced(50, 8)
    assert t != hs.ClusterTree.balanced(50, 20)
    assert t != hs.ClusterTree.from_points(np.random.default_rng(1).random(50), 8)
