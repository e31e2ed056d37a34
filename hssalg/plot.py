"""Pictures of HSS matrices and cluster trees (needs matplotlib).

:func:`plot_ranks` draws the block partition of an :class:`~hssalg.HSSMatrix`
with the rank of every off-diagonal block, the picture of hm-toolbox's
``spy`` and HssMatrices.jl's ``plotranks``; :func:`plot_tree` draws a
:class:`~hssalg.ClusterTree` as a node-link diagram.

matplotlib is an optional dependency (``pip install hssalg[plot]``). It is
imported when a function is called, never when this module is imported.
Everything is drawn with one collection per kind of element (no per-pixel
image, no Python object per block beyond the labels), so a matrix with
n = 2**16 and a few thousand nodes draws in well under a second.
"""

import numpy as np

from .matrix import HSSMatrix
from .tree import ClusterTree

__all__ = ["plot_ranks", "plot_tree"]

# colours of the dense diagonal blocks D (fill, edge)
_D_FACE = "#e8a09a"
_D_EDGE = "#a8322a"
# smallest label font size (points) worth drawing, and the largest one used
_MIN_FONT = 6.0
_MAX_FONT = 10.0


def _require_matplotlib(func):
    """Import matplotlib or raise an ImportError that says how to get it."""
    try:
        import matplotlib  # noqa: F401
        import matplotlib.collections
        import matplotlib.colors
        import matplotlib.patches
        import matplotlib.ticker
    except ImportError as exc:
        raise ImportError(
            f"hssalg.{func} needs matplotlib, which is not installed; "
            "install it with `pip install hssalg[plot]` (or `pip install matplotlib`)"
        ) from exc
    return matplotlib


def _new_axes(ax, figsize):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt
    _, ax = plt.subplots(figsize=figsize)
    return ax


def _format_bytes(b):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if b < 1024 or unit == "GiB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024.0
    return f"{b:.1f} TiB"  # pragma: no cover


def _points_per_unit(ax):
    """(x, y) size in typographic points of one data unit, at the current layout."""
    ax.apply_aspect()
    fig = ax.figure
    p0 = ax.transData.transform((0.0, 0.0))
    p1 = ax.transData.transform((1.0, 1.0))
    scale = 72.0 / fig.dpi
    return abs(p1[0] - p0[0]) * scale, abs(p1[1] - p0[1]) * scale


def _label_font(w_pt, h_pt, text):
    """Font size that fits ``text`` into a w_pt x h_pt box, or 0 if too small."""
    # a digit is about 0.6 em wide; leave a margin of about half an em each side
    fs = min(_MAX_FONT, 0.55 * h_pt, w_pt / (0.62 * len(text) + 0.8))
    return fs if fs >= _MIN_FONT else 0.0


def _text_colour(cmap, norm, value):
    r, g, b, _ = cmap(norm(value))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _off_diagonal_blocks(H):
    """The off-diagonal blocks of an HSS matrix and their ranks, in tree order.

    For every inner node with children a, b the two blocks A(a, b) = U_a B12 V_b^T
    and A(b, a) = U_b B21 V_a^T. The rank reported for A(a, b) is
    ``min(row_ranks[a], col_ranks[b])``, the smaller side of the coupling B12:
    the rank the representation allows that block (an upper bound on its
    numerical rank, which can be smaller because U_a and V_b also serve the
    blocks farther away).

    Returns
    -------
    row0, col0, nrows, ncols, rank : (2 * n_inner,) int64 arrays
        Tree-order position and size of each block: A(a, b) then A(b, a) for
        the first inner node, and so on breadth first.
    """
    tree = H.tree
    inner = np.flatnonzero(~tree.is_leaf)
    a, b = tree.left[inner], tree.right[inner]
    kU, kV = H.row_ranks, H.col_ranks
    start, size = tree.start, tree.sizes
    # interleave (a, b) and (b, a): rows of the first, columns of the second
    r = np.column_stack([a, b]).ravel()
    c = np.column_stack([b, a]).ravel()
    return start[r], start[c], size[r], size[c], np.minimum(kU[r], kV[c])


def plot_ranks(H, ax=None, annotate=True, cmap="viridis"):
    """Draw an HSS matrix as its block partition, off-diagonal blocks coloured by rank.

    The n x n matrix is shown in tree order with row 0 at the top: each leaf's
    dense diagonal block D_i is a red square, and for every inner node with
    children a, b the blocks A(a, b) and A(b, a) are rectangles coloured by
    their rank ``min(row_ranks[a], col_ranks[b])`` (the smaller side of the
    coupling B12, resp. ``min(row_ranks[b], col_ranks[a])`` for B21). A
    colorbar gives the scale; the title gives n, the maximum rank and the
    generator memory against a dense matrix.

    Parameters
    ----------
    H : HSSMatrix
    ax : matplotlib Axes, optional
        Axes to draw into; default a new figure.
    annotate : bool
        Write the rank into every off-diagonal block that is large enough on
        screen for its number (decided with the figure size at call time).
    cmap : str or Colormap
        Colormap of the ranks (0 to ``max(1, largest block rank)``).

    Returns
    -------
    ax : matplotlib Axes
        ``ax.collections[0]`` holds the diagonal blocks (one rectangle per
        leaf, in tree order), ``ax.collections[1]`` the off-diagonal blocks
        (two per inner node, A(a, b) then A(b, a), breadth first), whose
        ``get_array()`` are the ranks.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    """
    mpl = _require_matplotlib("plot_ranks")
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    if not isinstance(H, HSSMatrix):
        raise TypeError(f"H must be a hssalg.HSSMatrix, got {type(H).__name__}")
    tree = H.tree
    n = tree.n
    ax = _new_axes(ax, (6.4, 5.6))
    fig = ax.figure

    leaves = tree.leaves
    r0, c0, nr, nc, rank = _off_diagonal_blocks(H)
    vmax = max(1, int(rank.max()) if rank.size else 0)
    cmap = mpl.colormaps[cmap] if isinstance(cmap, str) else cmap
    norm = mpl.colors.Normalize(vmin=0, vmax=vmax)

    ax.set_xlim(0, n)
    ax.set_ylim(n, 0)                     # row 0 at the top, like a matrix
    ax.set_aspect("equal")
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("column (tree order)")
    ax.set_ylabel("row (tree order)")

    # edges thin enough not to swamp blocks of a pixel or two
    ppu_x, _ = _points_per_unit(ax)
    smallest = float(tree.sizes[leaves].min()) * ppu_x
    lw = float(np.clip(0.08 * smallest, 0.05, 0.8))

    m = tree.sizes[leaves]
    s = tree.start[leaves]
    diag = PatchCollection([Rectangle((float(x), float(x)), float(w), float(w)) for x, w in zip(s, m)],
                           facecolor=_D_FACE, edgecolor=_D_EDGE, linewidth=lw, zorder=1)
    ax.add_collection(diag)
    off = PatchCollection([Rectangle((float(x), float(y)), float(w), float(h))
                           for x, y, w, h in zip(c0, r0, nc, nr)],
                          cmap=cmap, norm=norm, edgecolor="white", linewidth=lw, zorder=1)
    off.set_array(rank.astype(np.float64))
    ax.add_collection(off)

    cbar = fig.colorbar(off, ax=ax, shrink=0.85, pad=0.03)
    cbar.set_label("rank of the off-diagonal block")
    cbar.locator = mpl.ticker.MaxNLocator(integer=True)
    cbar.update_ticks()

    dense_bytes = n * n * H.dtype.itemsize
    ax.set_title(f"HSS  n = {n},  max rank {H.max_rank},  "
                 f"{_format_bytes(H.nbytes)} = {100.0 * H.nbytes / dense_bytes:.1f}% of dense",
                 fontsize=10, pad=8)

    if annotate and rank.size:
        ppu_x, ppu_y = _points_per_unit(ax)     # after the colorbar took its space
        for x, y, w, h, k in zip(c0, r0, nc, nr, rank):
            text = str(int(k))
            fs = _label_font(w * ppu_x, h * ppu_y, text)
            if fs:
                ax.text(x + 0.5 * w, y + 0.5 * h, text, ha="center", va="center", fontsize=fs,
                        color=_text_colour(cmap, norm, k), zorder=2)
    return ax


def plot_tree(tree, ax=None, label="auto"):
    """Draw a cluster tree: one marker per node, one line per parent-child edge.

    Node i sits at height ``level[i]`` (root at the top) and at the middle
    ``(start[i] + stop[i]) / 2`` of its tree-order index range, so the picture
    lines up with the columns of :func:`plot_ranks`. Leaves are drawn red,
    inner nodes dark blue.

    Parameters
    ----------
    tree : ClusterTree or HSSMatrix
        With an HSSMatrix its tree is drawn and nodes can be labelled with
        their ranks.
    ax : matplotlib Axes, optional
        Default a new figure.
    label : {"auto", "size", "rank", "id", None}
        Text under each node: its number of indices, its HSS rank (needs an
        HSSMatrix), its node id, or nothing. ``"auto"`` is ``"rank"`` for a
        matrix and ``"size"`` for a tree. Labels are drawn only on levels
        where they fit without overlapping.

    Returns
    -------
    ax : matplotlib Axes
        ``ax.collections[0]`` holds the edges (``n_nodes - 1`` segments),
        ``ax.collections[1]`` the nodes (``n_nodes`` points, in node id order).

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    """
    _require_matplotlib("plot_tree")
    from matplotlib.collections import LineCollection

    H = None
    if isinstance(tree, HSSMatrix):
        H, tree = tree, tree.tree
    elif not isinstance(tree, ClusterTree):
        raise TypeError(f"tree must be a hssalg.ClusterTree or HSSMatrix, got {type(tree).__name__}")
    if label == "auto":
        label = "rank" if H is not None else "size"
    if label not in ("size", "rank", "id", None):
        raise ValueError(f"label must be 'auto', 'size', 'rank', 'id' or None, got {label!r}")
    if label == "rank" and H is None:
        raise ValueError("label='rank' needs an HSSMatrix (a tree has no ranks)")

    n, depth = tree.n, tree.depth
    x = 0.5 * (tree.start + tree.stop)
    y = tree.level.astype(np.float64)
    leaf = tree.is_leaf
    ax = _new_axes(ax, (6.4, 1.5 + 0.6 * (depth + 1)))

    ax.set_xlim(0, n)
    ax.set_ylim(depth + 0.6, -0.4)          # root at the top, room for labels below the leaves
    ax.set_yticks(np.arange(depth + 1))
    ax.set_yticklabels([f"level {lvl}" for lvl in range(depth + 1)])
    ax.set_xlabel("index (tree order)")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)

    # marker size from the horizontal spacing of the nodes on the widest level
    ppu_x, ppu_y = _points_per_unit(ax)
    min_size = float(tree.sizes.min())
    marker = float(np.clip(0.6 * min_size * ppu_x, 1.5, 9.0))
    lw = float(np.clip(0.15 * marker, 0.2, 1.0))

    child = np.flatnonzero(tree.parent >= 0)
    par = tree.parent[child]
    segments = np.stack([np.column_stack([x[par], y[par]]), np.column_stack([x[child], y[child]])], axis=1)
    edges = LineCollection(segments, colors="0.45", linewidths=lw, zorder=1)
    ax.add_collection(edges)
    colours = np.where(leaf, _D_EDGE, "#2b4c7e")
    ax.scatter(x, y, s=marker ** 2, c=colours, zorder=2, linewidths=0)

    if label is not None:
        values = {"size": tree.sizes, "id": np.arange(tree.n_nodes),
                  "rank": H.ranks if H is not None else None}[label]
        for lvl in range(depth + 1):
            ids = np.arange(tree.level_ptr[lvl], tree.level_ptr[lvl + 1])
            texts = [str(int(v)) for v in values[ids]]
            width = max(len(t) for t in texts)
            # nodes of one level are at least (smallest node on it) apart
            gap = float(tree.sizes[ids].min()) * ppu_x
            fs = min(8.0, gap / (0.62 * width + 0.6), 0.3 * ppu_y)
            if fs < _MIN_FONT:
                continue
            for i, t in zip(ids, texts):
                ax.annotate(t, (x[i], y[i]), xytext=(0, -0.7 * marker - 1), textcoords="offset points",
                            ha="center", va="top", fontsize=fs, color="0.15", zorder=3,
                            bbox=dict(boxstyle="round,pad=0.1", facecolor="white", edgecolor="none", alpha=0.8))
    title = {"size": "node sizes", "rank": "node ranks", "id": "node ids", None: None}[label]
    head = f"cluster tree  n = {n},  {tree.n_nodes} nodes,  depth {depth}"
    ax.set_title(head + (f"  (labels: {title})" if title else ""), fontsize=10)
    return ax
