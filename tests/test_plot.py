"""Tests of hssalg.plot: what is drawn, not how it looks."""

import ast
import pathlib
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import hssalg as hs  # noqa: E402
from hssalg import plot as hsplot  # noqa: E402
from hssalg.plot import plot_ranks, plot_tree  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _trees():
    rng = np.random.default_rng(0)
    return {
        "balanced": hs.ClusterTree.balanced(256, 32),
        # 68 -> 34 -> 17 -> (8, 9): leaves of 8 on level 3, the 9s split again to level 4
        "unbalanced": hs.ClusterTree.balanced(68, 8),
        "geometric": hs.ClusterTree.from_points(rng.random((200, 2)), leaf_size=16),
    }


def _rects(collection):
    """(x0, y0, width, height) of every rectangle of a PatchCollection."""
    out = []
    for path in collection.get_paths():
        v = path.vertices
        x0, y0 = v.min(axis=0)
        x1, y1 = v.max(axis=0)
        out.append((x0, y0, x1 - x0, y1 - y0))
    return np.array(out).reshape(-1, 4)


def _expected_blocks(H):
    """(row0, col0, rows, cols, rank) of A(a, b), A(b, a) for each inner node, breadth first."""
    t = H.tree
    out = []
    for i in np.flatnonzero(~t.is_leaf):
        a, b = t.left[i], t.right[i]
        for r, c in ((a, b), (b, a)):
            out.append((t.start[r], t.start[c], t.sizes[r], t.sizes[c],
                        min(H.row_ranks[r], H.col_ranks[c])))
    return np.array(out, dtype=np.int64).reshape(-1, 5)


# -- plot_ranks ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["balanced", "unbalanced", "geometric"])
def test_plot_ranks_draws_one_square_per_leaf_and_two_blocks_per_inner_node(name):
    tree = _trees()[name]
    H = hs.gallery.random_hss(tree, 3, seed=1)
    ax = plot_ranks(H)
    diag, off = ax.collections[:2]
    leaves = tree.leaves
    n_inner = int(np.count_nonzero(~tree.is_leaf))
    assert len(diag.get_paths()) == leaves.size
    assert len(off.get_paths()) == 2 * n_inner
    # the diagonal squares sit on the leaves' index ranges (x = column, y = row)
    d = _rects(diag)
    m = tree.sizes[leaves]
    s = tree.start[leaves]
    np.testing.assert_allclose(d, np.column_stack([s, s, m, m]))
    # the off-diagonal rectangles are A(a, b) and A(b, a), and with D they tile the matrix
    exp = _expected_blocks(H)
    np.testing.assert_allclose(_rects(off), exp[:, [1, 0, 3, 2]])
    area = (d[:, 2] * d[:, 3]).sum() + (exp[:, 2] * exp[:, 3]).sum()
    assert area == tree.n ** 2
    np.testing.assert_array_equal(off.get_array(), exp[:, 4])


def test_plot_ranks_labels_are_the_node_ranks():
    # 40 -> 20 -> 10 -> 5 -> (2, 3): leaves of rank 2 and 3, inner nodes of rank 4
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(40, 4), 4, symmetric=True)
    np.testing.assert_array_equal(H.row_ranks, H.col_ranks)
    assert set(H.ranks[1:].tolist()) == {2, 3, 4}
    fig, ax = plt.subplots(figsize=(8, 8))
    assert plot_ranks(H, ax=ax) is ax
    t = H.tree
    labels = {}
    for txt in ax.texts:
        labels[tuple(np.round(txt.get_position(), 6))] = txt.get_text()
    expected = {}
    for i in np.flatnonzero(~t.is_leaf):
        a, b = t.left[i], t.right[i]
        for r, c in ((a, b), (b, a)):
            centre = (t.start[c] + 0.5 * t.sizes[c], t.start[r] + 0.5 * t.sizes[r])
            expected[tuple(np.round(centre, 6))] = str(min(H.ranks[r], H.ranks[c]))
    # every block is at least 2 / 40 of an 8-inch axes: all are labelled
    assert labels == expected


def test_plot_ranks_transpose_swaps_the_blocks():
    # banded inverse (ranks <= 4) plus a rank-one upper triangle: row and column ranks differ
    A = hs.gallery.banded_inverse(64, 2, seed=3) + np.triu(np.ones((64, 64)), 1)
    H = hs.HSSMatrix.from_dense(A, leaf_size=8, rtol=1e-10)
    assert not np.array_equal(H.row_ranks, H.col_ranks)
    r = plot_ranks(H).collections[1].get_array().reshape(-1, 2)
    rt = plot_ranks(H.T).collections[1].get_array().reshape(-1, 2)
    # (A^T)(a, b) = A(b, a)^T
    np.testing.assert_array_equal(rt, r[:, ::-1])


def test_plot_ranks_skips_labels_that_do_not_fit_and_annotate_false():
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(512, 4), 2)
    n_blocks = 2 * int(np.count_nonzero(~H.tree.is_leaf))
    fig, ax = plt.subplots(figsize=(3, 3))
    plot_ranks(H, ax=ax)
    assert 0 < len(ax.texts) < n_blocks       # the big blocks only
    assert all(float(t.get_fontsize()) >= 6 for t in ax.texts)
    fig, ax = plt.subplots(figsize=(3, 3))
    plot_ranks(H, ax=ax, annotate=False)
    assert len(ax.texts) == 0


def test_plot_ranks_single_leaf():
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(10, 16), 3)
    assert H.tree.n_nodes == 1
    ax = plot_ranks(H)
    assert isinstance(ax, matplotlib.axes.Axes)
    diag, off = ax.collections[:2]
    assert len(diag.get_paths()) == 1 and len(off.get_paths()) == 0
    assert len(ax.texts) == 0
    assert "n = 10" in ax.get_title() and "max rank 0" in ax.get_title()
    ax.figure.canvas.draw()                   # the empty collection and colorbar render


def test_plot_ranks_rank_zero():
    A = np.diag(np.arange(1.0, 33.0))
    H = hs.HSSMatrix.from_dense(A, leaf_size=8)
    assert H.max_rank == 0
    ax = plot_ranks(H)
    off = ax.collections[1]
    assert len(off.get_paths()) == 2 * 3
    np.testing.assert_array_equal(off.get_array(), 0)
    assert {t.get_text() for t in ax.texts} == {"0"}
    ax.figure.canvas.draw()


def test_plot_ranks_title_reports_size_rank_and_memory():
    H = hs.gallery.poisson1d_green_hss(256, leaf_size=32)
    title = plot_ranks(H, cmap="magma").get_title()
    assert "n = 256" in title and "max rank 2" in title
    assert f"{100 * H.nbytes / (256 * 256 * 8):.1f}% of dense" in title


def test_plot_ranks_rejects_a_dense_array():
    with pytest.raises(TypeError, match="HSSMatrix"):
        plot_ranks(np.eye(4))


# -- plot_tree -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["balanced", "unbalanced", "geometric"])
def test_plot_tree_draws_every_node_and_edge(name):
    tree = _trees()[name]
    ax = plot_tree(tree)
    edges, nodes = ax.collections[:2]
    xy = nodes.get_offsets()
    assert xy.shape == (tree.n_nodes, 2)
    np.testing.assert_allclose(xy[:, 0], 0.5 * (tree.start + tree.stop))
    np.testing.assert_allclose(xy[:, 1], tree.level)
    assert len(edges.get_segments()) == tree.n_nodes - 1


def test_plot_tree_labels_sizes_or_ranks():
    tree = hs.ClusterTree.balanced(64, 8)
    ax = plot_tree(tree)
    assert sorted(int(t.get_text()) for t in ax.texts) == sorted(tree.sizes.tolist())
    H = hs.gallery.random_hss(tree, 3)
    ax = plot_tree(H)
    assert sorted(int(t.get_text()) for t in ax.texts) == sorted(H.ranks.tolist())
    assert len(plot_tree(tree, label=None).texts) == 0
    with pytest.raises(ValueError, match="needs an HSSMatrix"):
        plot_tree(tree, label="rank")
    with pytest.raises(ValueError, match="label"):
        plot_tree(tree, label="colour")


def test_plot_tree_single_leaf_and_given_axes():
    tree = hs.ClusterTree.balanced(5, 8)
    fig, ax = plt.subplots()
    assert plot_tree(tree, ax=ax) is ax
    edges, nodes = ax.collections[:2]
    assert nodes.get_offsets().shape == (1, 2) and len(edges.get_segments()) == 0
    fig.canvas.draw()


# -- optional dependency ---------------------------------------------------------------

def test_module_does_not_import_matplotlib_at_import_time():
    # hssalg/__init__ imports hssalg.plot, so `import hssalg` must work without matplotlib
    source = pathlib.Path(hsplot.__file__).read_text()
    for node in ast.parse(source).body:           # top-level statements only
        if isinstance(node, ast.Import):
            assert not any(a.name.split(".")[0] == "matplotlib" for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] != "matplotlib"


@pytest.mark.parametrize("func", ["plot_ranks", "plot_tree"])
def test_missing_matplotlib_says_how_to_install_it(monkeypatch, func):
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(32, 8), 2)
    # a None entry makes every `import matplotlib...` fail, even with submodules cached
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install hssalg\[plot\]"):
        getattr(hsplot, func)(H)
