"""Cluster trees stored as flat integer arrays.

A :class:`ClusterTree` splits the index set ``0..n-1`` (after a permutation
``perm``) into nested contiguous ranges. Nodes are numbered breadth first, so
the nodes of one level form the contiguous id range
``level_ptr[l]:level_ptr[l + 1]`` and a loop over a level is a loop over an
integer range -- the form numba kernels want. There is no Python object per
node.
"""

import numpy as np

from ._kernels.tree import geometric_perm
from ._validation import as_finite_array, check_positive_int

__all__ = ["ClusterTree"]

_ARRAY_FIELDS = ("parent", "left", "right", "start", "stop", "level_ptr", "perm")


def _readonly(a):
    a = np.ascontiguousarray(a, dtype=np.int64)
    a.setflags(write=False)
    return a


def _bisection_topology(n, leaf_size):
    """Breadth-first node arrays of the index-bisection tree of ``0..n-1``.

    A node with more than ``leaf_size`` indices is split at ``(start + stop) // 2``;
    leaves can therefore sit on two neighbouring levels when ``n`` is not
    ``leaf_size`` times a power of two.
    """
    starts = [np.array([0], dtype=np.int64)]
    stops = [np.array([n], dtype=np.int64)]
    while True:
        s0, s1 = starts[-1], stops[-1]
        split = (s1 - s0) > leaf_size
        if not split.any():
            break
        mid = (s0[split] + s1[split]) // 2
        # children of consecutive parents are consecutive: [left0, right0, left1, right1, ...]
        starts.append(np.column_stack([s0[split], mid]).ravel())
        stops.append(np.column_stack([mid, s1[split]]).ravel())
    sizes = np.array([len(s) for s in starts], dtype=np.int64)
    level_ptr = np.concatenate([[0], np.cumsum(sizes)])
    start = np.concatenate(starts)
    stop = np.concatenate(stops)
    n_nodes = int(level_ptr[-1])
    left = np.full(n_nodes, -1, dtype=np.int64)
    right = np.full(n_nodes, -1, dtype=np.int64)
    parent = np.full(n_nodes, -1, dtype=np.int64)
    for lvl in range(len(starts) - 1):
        ids = np.arange(level_ptr[lvl], level_ptr[lvl + 1])
        split_ids = ids[(stop[ids] - start[ids]) > leaf_size]
        first_child = level_ptr[lvl + 1] + 2 * np.arange(split_ids.size)
        left[split_ids] = first_child
        right[split_ids] = first_child + 1
        parent[first_child] = split_ids
        parent[first_child + 1] = split_ids
    return parent, left, right, start, stop, level_ptr


class ClusterTree:
    """A binary cluster tree over ``n`` indices, as flat breadth-first arrays.

    Build one with :meth:`balanced` (index bisection) or :meth:`from_points`
    (geometric bisection); the constructor itself takes raw arrays and checks
    that they describe a valid tree.

    Parameters
    ----------
    parent, left, right : (n_nodes,) int arrays
        Parent and children of every node; ``-1`` where there is none (the root
        has no parent, leaves have no children).
    start, stop : (n_nodes,) int arrays
        Each node owns the tree-order indices ``start[i]:stop[i]``.
    level_ptr : (depth + 2,) int array
        Nodes of level ``l`` are ``level_ptr[l]:level_ptr[l + 1]``.
    perm : (n,) int array
        ``perm[i]`` is the original index of tree-order position ``i``.
    leaf_size : int, optional
        The leaf size the tree was built with (informative only).

    Notes
    -----
    All arrays are int64, read-only, and shared, never copied, by the
    matrices built on the tree. Two trees are compatible when all their arrays
    are equal (:meth:`same_as`).
    """

    __slots__ = ("_parent", "_left", "_right", "_start", "_stop", "_level_ptr",
                 "_perm", "_iperm", "_leaf_size", "_level", "_identity")

    def __init__(self, parent, left, right, start, stop, level_ptr, perm, leaf_size=None):
        arrays = {}
        for name, value in zip(_ARRAY_FIELDS, (parent, left, right, start, stop, level_ptr, perm)):
            a = np.asarray(value)
            if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
                raise ValueError(f"{name} must be a 1-D integer array, got shape {a.shape} and dtype {a.dtype}")
            arrays[name] = _readonly(a)
        self._parent = arrays["parent"]
        self._left = arrays["left"]
        self._right = arrays["right"]
        self._start = arrays["start"]
        self._stop = arrays["stop"]
        self._level_ptr = arrays["level_ptr"]
        self._perm = arrays["perm"]
        self._validate()
        iperm = np.empty_like(self._perm)
        iperm[self._perm] = np.arange(self._perm.size)
        self._iperm = _readonly(iperm)
        self._identity = bool(np.array_equal(self._perm, np.arange(self._perm.size)))
        level = np.repeat(np.arange(self._level_ptr.size - 1), np.diff(self._level_ptr))
        self._level = _readonly(level)
        if leaf_size is None:
            leaf_size = int(self.sizes[self.leaves].max())
        self._leaf_size = check_positive_int(leaf_size, "leaf_size")

    # -- construction --------------------------------------------------------------

    @classmethod
    def balanced(cls, n, leaf_size=64):
        """Tree of ``0..n-1`` by recursive index bisection (identity permutation).

        Parameters
        ----------
        n : int
            Number of indices, ``n >= 1``.
        leaf_size : int
            Largest number of indices in a leaf, ``>= 1``. With ``leaf_size >= n``
            the tree is a single leaf (the matrix is then just its dense block D).
        """
        n = check_positive_int(n, "n")
        leaf_size = check_positive_int(leaf_size, "leaf_size")
        parent, left, right, start, stop, level_ptr = _bisection_topology(n, leaf_size)
        return cls(parent, left, right, start, stop, level_ptr, np.arange(n), leaf_size=leaf_size)

    @classmethod
    def from_points(cls, points, leaf_size=64):
        """Tree of a point set by recursive geometric bisection.

        Every node with more than ``leaf_size`` points is split at the median of
        the longest side of its points' bounding box, so near points share
        nodes and off-diagonal blocks of smooth kernels have low rank. The node
        sizes are those of :meth:`balanced` (the split is at the median *count*),
        only the permutation differs. Cost O(n log n).

        Parameters
        ----------
        points : (n,) or (n, d) array_like
            Coordinates in the caller's order; any ``d >= 1`` is accepted, the
            intended cases are ``d = 1, 2, 3``.
        leaf_size : int
            Largest number of points in a leaf, ``>= 1``.

        Returns
        -------
        ClusterTree
            ``perm[i]`` is the caller's index of tree position ``i``.
        """
        pts = as_finite_array(points, "points", ndim=(1, 2), dtype=np.float64)
        if pts.ndim == 1:
            pts = pts.reshape(-1, 1)
        if pts.shape[0] == 0:
            raise ValueError("points must contain at least one point, got shape "
                             f"{np.shape(points)}")
        if pts.shape[1] == 0:
            raise ValueError(f"points must have at least one coordinate, got shape {pts.shape}")
        leaf_size = check_positive_int(leaf_size, "leaf_size")
        parent, left, right, start, stop, level_ptr = _bisection_topology(pts.shape[0], leaf_size)
        perm = geometric_perm(pts, start, stop, left)
        return cls(parent, left, right, start, stop, level_ptr, perm, leaf_size=leaf_size)

    def _validate(self):
        parent, left, right = self._parent, self._left, self._right
        start, stop, level_ptr, perm = self._start, self._stop, self._level_ptr, self._perm
        m = parent.size
        if m == 0:
            raise ValueError("a cluster tree needs at least one node, got empty arrays")
        for name in ("left", "right", "start", "stop"):
            if getattr(self, "_" + name).size != m:
                raise ValueError(f"{name} has {getattr(self, '_' + name).size} entries but parent has {m}")
        n = perm.size
        if n == 0:
            raise ValueError("perm must be a permutation of 0..n-1 with n >= 1, got an empty array")
        if not np.array_equal(np.sort(perm), np.arange(n)):
            raise ValueError(f"perm must be a permutation of 0..{n - 1}")
        if level_ptr.size < 2 or level_ptr[0] != 0 or level_ptr[-1] != m or np.any(np.diff(level_ptr) <= 0):
            raise ValueError(f"level_ptr must increase strictly from 0 to {m} (the number of nodes), got {level_ptr.tolist()}")
        if level_ptr[1] != 1 or parent[0] != -1 or start[0] != 0 or stop[0] != n:
            raise ValueError(f"node 0 must be the only root, covering 0:{n}")
        ids = np.arange(m)
        if np.any(stop - start < 1):
            bad = int(ids[stop - start < 1][0])
            raise ValueError(f"node {bad} is empty (start {start[bad]}, stop {stop[bad]}); every node needs >= 1 index")
        inner = left >= 0
        if np.any(inner != (right >= 0)):
            raise ValueError("every node must have either two children or none")
        if np.any(left[inner] >= m) or np.any(right[inner] >= m):
            raise ValueError("child ids out of range")
        lc, rc, p = left[inner], right[inner], ids[inner]
        if (np.any(parent[lc] != p) or np.any(parent[rc] != p) or np.any(rc != lc + 1)
                or np.any(start[lc] != start[p]) or np.any(stop[lc] != start[rc]) or np.any(stop[rc] != stop[p])):
            raise ValueError("children must be consecutive ids whose ranges split their parent's range")
        n_children = np.zeros(m, dtype=np.int64)
        np.add.at(n_children, parent[1:], 1)
        if np.any(parent[1:] < 0) or n_children.sum() != 2 * inner.sum():
            raise ValueError("every node except the root must be the child of exactly one node")
        level = np.repeat(np.arange(level_ptr.size - 1), np.diff(level_ptr))
        if np.any(level[lc] != level[p] + 1):
            raise ValueError("children must sit on the level below their parent (breadth-first numbering)")

    # -- arrays ----------------------------------------------------------------------

    parent = property(lambda self: self._parent, doc="(n_nodes,) parent of each node, -1 for the root")
    left = property(lambda self: self._left, doc="(n_nodes,) left child of each node, -1 for leaves")
    right = property(lambda self: self._right, doc="(n_nodes,) right child of each node, -1 for leaves")
    start = property(lambda self: self._start, doc="(n_nodes,) first tree-order index of each node")
    stop = property(lambda self: self._stop, doc="(n_nodes,) one past the last tree-order index of each node")
    level_ptr = property(lambda self: self._level_ptr, doc="(depth + 2,) node id range of each level")
    perm = property(lambda self: self._perm, doc="(n,) original index of each tree-order position")
    iperm = property(lambda self: self._iperm, doc="(n,) tree-order position of each original index")
    level = property(lambda self: self._level, doc="(n_nodes,) level of each node (root = 0)")

    @property
    def has_identity_perm(self):
        """True when tree order is the original order (no permutation needed)."""
        return self._identity

    @property
    def n(self):
        """Number of indices."""
        return int(self._perm.size)

    @property
    def n_nodes(self):
        """Number of nodes."""
        return int(self._parent.size)

    @property
    def depth(self):
        """Number of levels below the root (0 for a single-leaf tree)."""
        return int(self._level_ptr.size - 2)

    @property
    def leaf_size(self):
        """The leaf size the tree was built with."""
        return self._leaf_size

    @property
    def sizes(self):
        """(n_nodes,) number of indices of each node."""
        return self._stop - self._start

    @property
    def is_leaf(self):
        """(n_nodes,) bool, True for leaves."""
        return self._left < 0

    @property
    def leaves(self):
        """Ids of the leaves in tree order (left to right)."""
        ids = np.flatnonzero(self._left < 0)
        return ids[np.argsort(self._start[ids], kind="stable")]

    @property
    def arrays(self):
        """``(parent, left, right, start, stop, level_ptr)`` for the kernels."""
        return (self._parent, self._left, self._right, self._start, self._stop, self._level_ptr)

    def same_as(self, other):
        """True when ``other`` is a ClusterTree with identical arrays."""
        if other is self:
            return True
        if not isinstance(other, ClusterTree):
            return False
        return all(np.array_equal(getattr(self, "_" + f), getattr(other, "_" + f)) for f in _ARRAY_FIELDS)

    def __eq__(self, other):
        return self.same_as(other)

    __hash__ = None

    def __repr__(self):
        return (f"ClusterTree(n={self.n}, n_nodes={self.n_nodes}, depth={self.depth}, "
                f"leaf_size={self._leaf_size})")
