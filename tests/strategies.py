"""Hypothesis strategies for trees and HSS matrices, and an independent dense reference.

Sizes are small on purpose: structure facts do not need large n, and the whole
suite has to run in minutes (see tests/conftest.py for the nojit limits).
"""

import numpy as np
from hypothesis import strategies as st

import hssalg as hs
from conftest import NOJIT

MAX_N = 48 if NOJIT else 160
EPS64 = np.finfo(np.float64).eps
EPS32 = np.finfo(np.float32).eps


def random_split_tree(n, leaf_size, seed):
    """A tree whose nodes split at random points: unbalanced, leaves on many levels.

    Built level by level straight into the flat arrays, so it also exercises
    the ClusterTree constructor's validation of hand-made trees.
    """
    rng = np.random.default_rng(seed)
    starts, stops = [np.array([0])], [np.array([n])]
    while True:
        s0, s1 = starts[-1], stops[-1]
        split = (s1 - s0) > leaf_size
        if not split.any():
            break
        lo, hi = s0[split], s1[split]
        mid = np.array([rng.integers(a + 1, b) for a, b in zip(lo, hi)])
        starts.append(np.column_stack([lo, mid]).ravel())
        stops.append(np.column_stack([mid, hi]).ravel())
    level_ptr = np.concatenate([[0], np.cumsum([len(s) for s in starts])])
    start, stop = np.concatenate(starts), np.concatenate(stops)
    m = int(level_ptr[-1])
    parent, left, right = (np.full(m, -1) for _ in range(3))
    for lvl in range(len(starts) - 1):
        ids = np.arange(level_ptr[lvl], level_ptr[lvl + 1])
        ids = ids[(stop[ids] - start[ids]) > leaf_size]
        first = level_ptr[lvl + 1] + 2 * np.arange(ids.size)
        left[ids], right[ids] = first, first + 1
        parent[first], parent[first + 1] = ids, ids
    return hs.ClusterTree(parent, left, right, start, stop, level_ptr, rng.permutation(n))


@st.composite
def trees(draw, max_n=MAX_N, min_n=1):
    """Balanced, geometric (1-3 D) and randomly split trees, any n and leaf size."""
    n = draw(st.integers(min_n, max_n))
    leaf_size = draw(st.one_of(st.integers(1, 8), st.integers(1, n + 4)))
    kind = draw(st.sampled_from(["balanced", "points", "random"]))
    seed = draw(st.integers(0, 2**16))
    if kind == "balanced":
        return hs.ClusterTree.balanced(n, leaf_size)
    if kind == "points":
        d = draw(st.integers(1, 3))
        return hs.ClusterTree.from_points(np.random.default_rng(seed).random((n, d)), leaf_size)
    return random_split_tree(n, leaf_size, seed)


@st.composite
def hss_matrices(draw, max_n=MAX_N, max_rank=6, symmetric=None, dtype=np.float64):
    """Random-generator HSS matrices (gallery.random_hss) on drawn trees and ranks."""
    tree = draw(trees(max_n=max_n))
    rank = draw(st.integers(0, max_rank))
    sym = draw(st.booleans()) if symmetric is None else symmetric
    seed = draw(st.integers(0, 2**16))
    return hs.gallery.random_hss(tree, rank, seed=seed, symmetric=sym, dtype=dtype)


def dense_from_generators(H):
    """Dense matrix (caller's order) assembled straight from the generators.

    Independent of the matvec kernel: explicit nested bases U_i, V_i per node,
    then every block A(a, b) = U_a B12 V_b^T placed at its rows and columns.
    """
    tree = H.tree
    g = H.generators()
    n = tree.n
    A = np.zeros((n, n))
    Ufull, Vfull = {}, {}
    for lvl in range(tree.depth, -1, -1):
        for i in range(tree.level_ptr[lvl], tree.level_ptr[lvl + 1]):
            s, e = tree.start[i], tree.stop[i]
            a, b = tree.left[i], tree.right[i]
            if a < 0:
                A[s:e, s:e] = g["D"][i]
                if i != 0:
                    Ufull[i], Vfull[i] = g["U"][i].astype(float), g["V"][i].astype(float)
                continue
            A[tree.start[a]:tree.stop[a], tree.start[b]:tree.stop[b]] = Ufull[a] @ g["B12"][i] @ Vfull[b].T
            A[tree.start[b]:tree.stop[b], tree.start[a]:tree.stop[a]] = Ufull[b] @ g["B21"][i] @ Vfull[a].T
            if i != 0:
                Ufull[i] = np.vstack([Ufull[a] @ g["R"][a], Ufull[b] @ g["R"][b]])
                Vfull[i] = np.vstack([Vfull[a] @ g["W"][a], Vfull[b] @ g["W"][b]])
    out = np.empty_like(A)
    p = tree.perm
    out[np.ix_(p, p)] = A
    return out


def block_row_rank(A, tree, i, tol):
    """Numerical ranks of the off-diagonal block row and column of node i (caller's order A)."""
    idx = tree.perm[tree.start[i]:tree.stop[i]]
    rest = np.setdiff1d(np.arange(tree.n), idx)
    if rest.size == 0:
        return 0, 0
    r = np.linalg.matrix_rank(A[np.ix_(idx, rest)], tol=tol)
    c = np.linalg.matrix_rank(A[np.ix_(rest, idx)], tol=tol)
    return int(r), int(c)
