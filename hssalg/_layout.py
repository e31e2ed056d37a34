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


# -- the interpolative form -------------------------------------------------------------
#
# ``from_kernel`` keeps the bases it finds as interpolation matrices instead of
# orthonormalising them. Node i's interpolation matrix P_i (c_i, k_i) maps its
# k_i skeleton rows to its c_i candidate rows: the points of a leaf (c_i = m_i,
# and P_i is the leaf basis U_i) or the stacked skeletons of the children a, b
# of an inner node (c_i = k_a + k_b, and P_i = [R_a; R_b]). Rows perm_i[:k_i]
# of P_i are the identity, so only perm_i and the other rows T_i are stored:
#
# ====== ========================= ======================================
# kind   nodes                     shape
# ====== ========================= ======================================
# D      leaves                    (m_i, m_i); symmetric form: the lower
#                                  triangle packed by rows, m_i (m_i + 1) / 2
# TU     all but the root          (cU_i - kU_i, kU_i)
# pU     all but the root          (cU_i,) int32, skeleton rows first
# TV, pV all but the root          the same for the column side
# B12    inner nodes (pair a, b)   (kU_a, kV_b)
# B21    inner nodes (pair a, b)   (kU_b, kV_a); symmetric form: none (B12^T)
# ====== ========================= ======================================
#
# In the symmetric form TV, pV are the buffers TU, pU.

INTERP_KINDS = ("D", "TU", "pU", "TV", "pV", "B12", "B21")


def candidate_counts(tree, k):
    """(n_nodes,) c_i: rows of each node's interpolation matrix for ranks k (0 at the root)."""
    leaf = tree.is_leaf
    a = np.where(leaf, 0, tree.left)
    b = np.where(leaf, 0, tree.right)
    c = np.where(leaf, tree.sizes, k[a] + k[b])
    c[0] = 0
    return c.astype(np.int64)


def interp_block_shapes(tree, kU, kV, symmetric):
    """Per-node (rows, cols) of every kind of the interpolative form (index kinds: cols 1)."""
    m = tree.sizes
    leaf = tree.is_leaf
    inner = ~leaf
    zero = np.zeros(tree.n_nodes, dtype=np.int64)
    one = np.where(tree.parent >= 0, 1, 0)
    a = np.where(inner, tree.left, 0)
    b = np.where(inner, tree.right, 0)
    cU, cV = candidate_counts(tree, kU), candidate_counts(tree, kV)
    not_root = tree.parent >= 0
    shapes = {
        "D": ((np.where(leaf, m * (m + 1) // 2, zero), np.where(leaf, 1, zero)) if symmetric
              else (np.where(leaf, m, zero), np.where(leaf, m, zero))),
        "TU": (np.where(not_root, cU - kU, zero), np.where(not_root, kU, zero)),
        "pU": (cU, one),
        "TV": (np.where(not_root, cV - kV, zero), np.where(not_root, kV, zero)),
        "pV": (cV, one),
        "B12": (np.where(inner, kU[a], zero), np.where(inner, kV[b], zero)),
        "B21": ((zero, zero) if symmetric
                else (np.where(inner, kU[b], zero), np.where(inner, kV[a], zero))),
    }
    return shapes


def interp_offsets(tree, kU, kV, symmetric):
    """(n_nodes + 1,) int64 offsets of every kind of the interpolative form: kind -> array."""
    out = {}
    for kind, (r, c) in interp_block_shapes(tree, kU, kV, symmetric).items():
        out[kind] = np.concatenate([[0], np.cumsum(r * c)]).astype(np.int64)
    return out
