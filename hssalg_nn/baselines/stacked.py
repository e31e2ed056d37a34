"""The HSS layer written the straightforward way: autograd.numpy, one matmul per level.

:class:`StackedHSSLinear` computes exactly the product of an
:class:`hssalg_nn.HSSLinear` (same parameters, same result up to rounding), but
as a user of autograd would first write it: the blocks of a level stacked into
one 3-D array, and every step of the upsweep, the couplings, the downsweep and
the leaves one batched ``matmul`` that autograd traces and differentiates. No
numba kernel is involved.

It serves two purposes:

* **An independent reference** for the layer's values and gradients: its
  derivative is autograd's own, not the hand-written reverse sweep of
  :mod:`hssalg._kernels.grad` (``tests/test_nn_stacked.py``).
* **The speed baseline of issue 5**, which sized its targets against "a
  straightforward autograd.numpy version with level-stacked ``matmul``\\ s" (71 ms
  forward and 270 ms forward+backward at n = 2^16, batch 32, leaf 64, rank 16,
  on a machine of the kind this project runs on). ``benchmarks/bench_nn.py``
  times it in the same process as the layer.

Stacking needs every level to be uniform, as for weight sharing: nodes of one
level of equal size (hence of equal rank) and either all leaves or all inner
nodes, as ``ClusterTree.balanced(m * 2**L, m)`` gives. Row-layout formulas (rows of X are the vectors, ``xt = x̂ᵀ``, pairs of
siblings a, b = a + 1)::

    leaves:   xt = X_leaf V                      up:    xt_p = [xt_a | xt_b] [W_a; W_b]
    pairs:    yt_a = xt_b B12ᵀ + yt_p R_aᵀ,       yt_b = xt_a B21ᵀ + yt_p R_bᵀ
    leaves:   Y_leaf = X_leaf Dᵀ + yt U_leafᵀ
"""

import autograd.numpy as anp
import numpy as onp

from ..layers import HSSLinear, check_uniform_levels
from ._nn import check_batch

__all__ = ["StackedHSSLinear"]


class StackedHSSLinear:
    """The product of an :class:`~hssalg_nn.HSSLinear`, in level-stacked autograd.numpy.

    Parameters
    ----------
    layer : HSSLinear
        The layer to mirror, on a tree whose levels are uniform (module notes).
        Its parameters (``layer.init``, and symmetric or shared ones alike) are
        this model's parameters; they are expanded to generators by
        ``layer.generators``.

    Raises
    ------
    ValueError
        If some level of the tree mixes leaves and inner nodes, or nodes of
        different sizes.
    """

    def __init__(self, layer):
        if not isinstance(layer, HSSLinear):
            raise TypeError(f"layer must be a hssalg_nn.HSSLinear, got {type(layer).__name__}")
        tree = layer.tree
        check_uniform_levels(tree, "StackedHSSLinear")
        lp, sizes = tree.level_ptr, tree.sizes
        self.layer = layer
        # per level: number of nodes and their rank; leaf size
        self._counts = onp.diff(lp)
        self._ranks = layer.ranks[lp[:-1]]
        self._m = int(sizes[lp[tree.depth]])

    @property
    def n(self):
        return self.layer.n

    @property
    def n_params(self):
        return self.layer.n_params

    def __repr__(self):
        return f"StackedHSSLinear({self.layer!r})"

    def init(self, seed=0, scale=1.0):
        """The layer's random parameters (:meth:`HSSLinear.init`)."""
        return self.layer.init(seed, scale)

    def _level(self, gens, kind, lvl, rows, cols):
        """The blocks of ``kind`` of the nodes on level ``lvl``, stacked: (count, rows, cols)."""
        lp = self.layer.tree.level_ptr
        off = self.layer.layout.offsets[kind]
        lo, hi = int(off[lp[lvl]]), int(off[lp[lvl + 1]])
        return anp.reshape(gens[kind][lo:hi], (int(self._counts[lvl]), rows, cols))

    def apply(self, params, X):
        """Y = A X for a batch (row i of Y is A x_i), as :meth:`HSSLinear.apply`.

        Parameters
        ----------
        params : dict
            The layer's parameters (may hold autograd boxes).
        X : (batch, n) array_like
            Inputs as rows, in the caller's order.

        Returns
        -------
        Y : (batch, n) array
        """
        s = check_batch(X, self.n)
        tree = self.layer.tree
        gens = self.layer.generators(params)
        if not tree.has_identity_perm:
            X = X[:, tree.perm]
        d, m, k = tree.depth, self._m, self._ranks
        n_leaves = int(self._counts[d])

        def t(B):   # transpose every block of a stack
            return anp.transpose(B, (0, 2, 1))

        # explicit sizes rather than -1 in the reshapes below: blocks may have rank 0
        def pairs(c):   # (2P, s, k) -> (P, s, 2k): [c_a | c_b] for every pair of siblings
            P, kk = c.shape[0] // 2, c.shape[2]
            return anp.reshape(anp.transpose(anp.reshape(c, (P, 2, s, kk)), (0, 2, 1, 3)), (P, s, 2 * kk))

        def unpairs(c):   # the inverse of pairs
            P, kk = c.shape[0], c.shape[2] // 2
            return anp.reshape(anp.transpose(anp.reshape(c, (P, s, 2, kk)), (0, 2, 1, 3)), (2 * P, s, kk))

        Xl = anp.transpose(anp.reshape(X, (s, n_leaves, m)), (1, 0, 2))        # (leaves, s, m)
        # upsweep: xt[l] holds the (s, k_l) blocks of level l, stacked
        xt = {d: anp.matmul(Xl, self._level(gens, "V", d, m, k[d]))}
        for lvl in range(d - 1, 0, -1):
            W = self._level(gens, "W", lvl + 1, k[lvl + 1], k[lvl])            # (2P, k_c, k_p)
            xt[lvl] = anp.matmul(pairs(xt[lvl + 1]), anp.reshape(W, (W.shape[0] // 2, 2 * k[lvl + 1], k[lvl])))
        # couplings and downsweep, root first
        yt = None
        for lvl in range(d):
            kc = k[lvl + 1]
            B12 = self._level(gens, "B12", lvl, kc, kc)
            B21 = self._level(gens, "B21", lvl, kc, kc)
            xa_xb = anp.reshape(xt[lvl + 1], (B12.shape[0], 2, s, kc))
            pair = anp.concatenate([anp.matmul(xa_xb[:, 1], t(B12)), anp.matmul(xa_xb[:, 0], t(B21))], axis=2)
            if yt is not None:
                R = self._level(gens, "R", lvl + 1, kc, k[lvl])                 # (2P, k_c, k_p)
                pair = pair + anp.matmul(yt, t(anp.reshape(R, (R.shape[0] // 2, 2 * kc, k[lvl]))))
            yt = unpairs(pair)
        Yl = anp.matmul(Xl, t(self._level(gens, "D", d, m, m)))
        if yt is not None:
            Yl = Yl + anp.matmul(yt, t(self._level(gens, "U", d, m, k[d])))
        Y = anp.reshape(anp.transpose(Yl, (1, 0, 2)), (s, self.n))
        return Y if tree.has_identity_perm else Y[:, tree.iperm]

    __call__ = apply
