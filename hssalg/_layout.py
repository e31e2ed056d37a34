"""Where each generator of each node lives in the flat buffers.

An :class:`~hssalg.HSSMatrix` keeps every kind of generator in one contiguous
1-D buffer (CSR-like): node ``i``'s block of kind ``G`` is
``G[G_off[i]:G_off[i + 1]]``, reshaped row-major to the shape given by the tree
and the ranks. The shapes are never stored, they follow from

====== ======================== ===================================
kind   nodes                    shape
====== ======================== ===================================
D      leaves                   (m_i, m_i)
U      leaves                   (m_i, kU_i)
V      leaves                   (m_i, kV_i)
R      all but the root         (kU_i, kU_parent)
W      all but the root         (kV_i, kV_parent)
B12    inner nodes (pair a, b)  (kU_a, kV_b)
B21    inner nodes (pair a, b)  (kU_b, kV_a)
====== ======================== ===================================

The root has rank 0, so the root's children carry R and W of zero size: one
code path covers every level.
"""

import numpy as np

KINDS = ("D", "U", "V", "R", "W", "B12", "B21")


def block_shapes(tree, kU, kV):
    """Per-node row and column counts of every generator kind.

    Returns
    -------
    dict
        kind -> ``(rows, cols)``, two (n_nodes,) int64 arrays (zero where the
        node has no generator of that kind).
    """
    m = tree.sizes
    leaf = tree.is_leaf
    inner = ~leaf
    zero = np.zeros(tree.n_nodes, dtype=np.int64)
    par = np.where(tree.parent >= 0, tree.parent, 0)
    not_root = tree.parent >= 0
    a = np.where(inner, tree.left, 0)
    b = np.where(inner, tree.right, 0)
    shapes = {
        "D": (np.where(leaf, m, zero), np.where(leaf, m, zero)),
        "U": (np.where(leaf, m, zero), np.where(leaf, kU, zero)),
        "V": (np.where(leaf, m, zero), np.where(leaf, kV, zero)),
        "R": (np.where(not_root, kU, zero), np.where(not_root, kU[par], zero)),
        "W": (np.where(not_root, kV, zero), np.where(not_root, kV[par], zero)),
        "B12": (np.where(inner, kU[a], zero), np.where(inner, kV[b], zero)),
        "B21": (np.where(inner, kU[b], zero), np.where(inner, kV[a], zero)),
    }
    return shapes


def offsets(tree, kU, kV):
    """(n_nodes + 1,) int64 offsets of every kind: kind -> array."""
    out = {}
    for kind, (r, c) in block_shapes(tree, kU, kV).items():
        out[kind] = np.concatenate([[0], np.cumsum(r * c)]).astype(np.int64)
    return out
