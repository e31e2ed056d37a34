"""Geometric ordering of points for ClusterTree.from_points.

The tree topology (which index ranges form nodes) is fixed beforehand by index
bisection; this kernel only decides *which points* land in each range, by
splitting every node's points at the median of the longest side of their
bounding box. Median selection is a three-way quickselect, so each level costs
O(n) and the whole ordering O(n log n).
"""

import numpy as np
from numba import njit


@njit(cache=True)
def _select(perm, keys, lo, hi, kth):
    """Reorder perm[lo:hi] so that keys[perm[lo:kth]] <= keys[perm[kth:hi]].

    Three-way partitioning keeps duplicate keys (duplicate points, points on a
    grid line) from degrading the selection to quadratic time.
    """
    while hi - lo > 1:
        # median of three as the pivot value
        a = keys[perm[lo]]
        b = keys[perm[(lo + hi) // 2]]
        c = keys[perm[hi - 1]]
        if a > b:
            a, b = b, a
        if b > c:
            b = c
        if a > b:
            b = a
        pivot = b
        lt = lo
        i = lo
        gt = hi
        while i < gt:
            v = keys[perm[i]]
            if v < pivot:
                perm[lt], perm[i] = perm[i], perm[lt]
                lt += 1
                i += 1
            elif v > pivot:
                gt -= 1
                perm[gt], perm[i] = perm[i], perm[gt]
            else:
                i += 1
        # now [lo, lt) < pivot, [lt, gt) == pivot, [gt, hi) > pivot
        if kth < lt:
            hi = lt
        elif kth >= gt:
            lo = gt
        else:
            return


@njit(cache=True)
def geometric_perm(points, start, stop, left):
    """Permutation (tree order -> original index) by geometric bisection.

    Parameters
    ----------
    points : (n, d) float64 array
    start, stop : (n_nodes,) int64 arrays
        Index range of every node, nodes in breadth-first order.
    left : (n_nodes,) int64 array
        Left child of every node, -1 for leaves. The left child's range ends
        where the split falls, so ``stop[left[node]]`` is the split index.

    Returns
    -------
    perm : (n,) int64 array
    """
    n, d = points.shape
    perm = np.arange(n)
    keys = np.empty(n)
    lo_box = np.empty(d)
    hi_box = np.empty(d)
    for node in range(start.shape[0]):
        child = left[node]
        if child < 0:
            continue
        s0 = start[node]
        s1 = stop[node]
        for k in range(d):
            lo_box[k] = np.inf
            hi_box[k] = -np.inf
        for i in range(s0, s1):
            p = perm[i]
            for k in range(d):
                x = points[p, k]
                if x < lo_box[k]:
                    lo_box[k] = x
                if x > hi_box[k]:
                    hi_box[k] = x
        axis = 0
        for k in range(1, d):
            if hi_box[k] - lo_box[k] > hi_box[axis] - lo_box[axis]:
                axis = k
        for i in range(s0, s1):
            keys[perm[i]] = points[perm[i], axis]
        _select(perm, keys, s0, s1, stop[child])
    return perm
