"""Trainable HSS operator layers and the Neural-HSS model.

:class:`HSSLinear` is an HSS matrix on a fixed cluster tree whose generators are
the trainable parameters; its forward product and every gradient come from the
numba sweeps of :mod:`hssalg_nn.primitives`. :class:`NeuralHSS` stacks such
operators into the model of Sittoni et al. (arXiv 2602.18248): a pointwise lift
to c channels, L blocks ``v <- sigma(W v + K v + b)`` and a pointwise projection.

Parameters are plain pytrees (dicts of numpy arrays) so that any autograd
optimiser can update them; the layer and model objects hold only static
structure (tree, ranks, layout).
"""

import autograd.numpy as anp
import numpy as onp
from autograd.builtins import dict as _boxed_dict
from autograd.extend import Box, defjvp, defvjp, primitive

from hssalg._kernels import blocks as _kblocks
from hssalg._kernels import matvec as _matvec
from hssalg._validation import check_dtype, check_positive_int
from hssalg.matrix import HSSMatrix
from hssalg.tree import ClusterTree

from .activations import ACTIVATIONS, FAST_ACTIVATIONS
from .primitives import KINDS, HSSLayout, hss_apply

__all__ = ["HSSLinear", "NeuralHSS", "ACTIVATIONS"]


class _Count(int):
    """An int that can also be called, ``n_params`` and ``n_params(params)`` alike."""

    def __call__(self, params=None):
        if params is None:
            return int(self)
        return _count_leaves(params)


def _count_leaves(params):
    if isinstance(params, dict):
        return sum(_count_leaves(v) for v in params.values())
    if isinstance(params, (list, tuple)):
        return sum(_count_leaves(v) for v in params)
    return int(onp.size(params))


def layer_ranks(tree, rank):
    """Per-node ranks of a layer of nominal rank ``rank`` on ``tree``.

    A leaf gets ``min(rank, m_i)`` and an inner node ``min(rank, k_a + k_b)``,
    the largest ranks the blocks can hold, so no parameter is redundant by
    construction; the root gets 0.
    """
    m = tree.sizes
    k = onp.zeros(tree.n_nodes, dtype=onp.int64)
    for lvl in range(tree.depth, 0, -1):
        ids = onp.arange(tree.level_ptr[lvl], tree.level_ptr[lvl + 1])
        leaf = tree.left[ids] < 0
        cap = onp.where(leaf, m[ids], k[onp.maximum(tree.left[ids], 0)] + k[onp.maximum(tree.right[ids], 0)])
        k[ids] = onp.minimum(rank, cap)
    return k


def check_uniform_levels(tree, what):
    """Raise a ValueError (naming ``what``) unless every level of ``tree`` holds nodes of one
    size and only leaves or only inner nodes. The ranks of :func:`layer_ranks` are then equal
    within a level too, and a level's blocks can be shared or stacked."""
    for lvl in range(tree.depth + 1):
        ids = onp.arange(tree.level_ptr[lvl], tree.level_ptr[lvl + 1])
        sizes = tree.sizes[ids]
        if sizes.min() != sizes.max():
            raise ValueError(
                f"{what} needs nodes of equal size on every level, but level {lvl} has "
                f"sizes from {sizes.min()} to {sizes.max()}; use a balanced tree with n = leaf_size * 2**L "
                f"(here n = {tree.n})")
        leaf = tree.is_leaf[ids]
        if leaf.any() and not leaf.all():
            raise ValueError(f"{what} needs every level to hold only leaves or only inner "
                             f"nodes, but level {lvl} mixes them")


def _blockwise(kernel, P, *args):
    """``kernel(P, *args)`` of :mod:`hssalg._kernels.blocks` on as many numba threads as the
    buffer is worth (from 2^15 numbers on, as for the products)."""
    P = onp.ascontiguousarray(P)
    return _matvec.run_parallel(kernel, _matvec.threads_for(P.size, 1), P, *args)


class _Blocks:
    """The trainable blocks of one generator kind: shapes, init scale and sharing.

    Without weight sharing there is one block per node and the parameter *is* the
    flat generator buffer; with sharing there is one block per level, repeated
    ``count`` times (the nodes of the level) when the buffer is built.
    """

    def __init__(self, rows, cols, std, count):
        keep = rows * cols > 0
        self.rows = onp.asarray(rows, dtype=onp.int64)[keep]
        self.cols = onp.asarray(cols, dtype=onp.int64)[keep]
        self.std = onp.asarray(std, dtype=onp.float64)[keep]
        self.count = onp.asarray(count, dtype=onp.int64)[keep]
        self.sizes = self.rows * self.cols
        self.off = onp.concatenate([[0], onp.cumsum(self.sizes)]).astype(onp.int64)
        self.size = int(self.off[-1])

    def random(self, rng, dtype):
        return (rng.standard_normal(self.size) * onp.repeat(self.std, self.sizes)).astype(dtype)

    def expand(self, p):
        """The node buffer from the parameter p: every block repeated ``count`` times."""
        parts = [onp.tile(p[self.off[j]:self.off[j + 1]], int(self.count[j])) for j in range(self.sizes.size)]
        return onp.concatenate(parts) if parts else p[:0].copy()

    def reduce(self, g):
        """Adjoint of :meth:`expand`: sum the node-buffer gradient g over the repeats."""
        parts, pos = [], 0
        for j in range(self.sizes.size):
            n = int(self.count[j] * self.sizes[j])
            parts.append(g[pos:pos + n].reshape(int(self.count[j]), int(self.sizes[j])).sum(axis=0))
            pos += n
        return onp.concatenate(parts) if parts else g[:0].copy()


@primitive
def _expand(params, layer):
    """The seven generator buffers of ``layer`` from its (symmetric / shared) parameters."""
    return layer._expand_plain(params)


defvjp(_expand, lambda ans, params, layer: lambda g: layer._reduce_plain(g))
# linear in the parameters: the tangent of the buffers is the expansion of the tangent
defjvp(_expand, lambda g, ans, params, layer: layer._expand_plain(g))


class HSSLinear:
    """An HSS operator with trainable generators on a fixed tree and rank.

    Parameters
    ----------
    tree : hssalg.ClusterTree
        Cluster tree of the spatial index (its permutation is applied inside
        every product: inputs and outputs are in the caller's order).
    rank : int >= 0
        Nominal HSS rank k; node i gets ``min(k, m_i)`` at a leaf and
        ``min(k, k_a + k_b)`` above (:func:`layer_ranks`), row and column ranks equal.
    symmetric : bool
        Constrain the operator to H_s(T, k): U = V, R = W, B21 = B12ᵀ and D
        symmetric. The parameters are then ``"D", "U", "R", "B12"`` and every
        leaf block is used as ``(P + Pᵀ) / 2``, so the exported matrix is
        symmetric to the last bit.
    share_weights : bool
        One set of generators per level, shared by all nodes of that level (a
        translation-invariant operator on a uniform grid; about
        ``m^2 + 2 m k + 4 depth k^2`` parameters instead of O(n (m + k))).
        Needs nodes of equal size on every level and every level made of leaves
        only or inner nodes only, e.g. ``ClusterTree.balanced(m * 2**L, m)``;
        other trees raise ValueError.
    dtype : float64 or float32

    Notes
    -----
    Parameters (:meth:`init`) are a dict of flat arrays, one per generator kind:
    ``"D", "U", "V", "R", "W", "B12", "B21"`` (symmetric: ``"D", "U", "R", "B12"``).
    Without sharing they are the generator buffers of :mod:`hssalg._layout`
    themselves; with sharing they hold one block per level, levels in order.

    Random initialisation (:meth:`init`) aims at an operator with
    E|A x|^2 ~ |x|^2 for white-noise x, half from the diagonal blocks and half
    from the off-diagonal part: entries of D ~ N(0, 1/(2 m_i)); leaf U, V ~
    N(0, 1/m_i) (columns of norm ~1); R_c, W_c ~ N(0, 1/(2 k_c)) (the nested
    bases keep columns of norm ~1 at every level); B of the pair (a, b) ~
    N(0, |a| / (2 depth k_a k_b)), so every level adds ~1/(2 depth) to the
    output variance.
    """

    def __init__(self, tree, rank, symmetric=False, share_weights=False, dtype=onp.float64):
        if not isinstance(tree, ClusterTree):
            raise TypeError(f"tree must be a hssalg.ClusterTree, got {type(tree).__name__}")
        self.tree = tree
        self.rank = check_positive_int(rank, "rank", minimum=0)
        self.symmetric = bool(symmetric)
        self.share_weights = bool(share_weights)
        self.dtype = check_dtype(dtype)
        k = layer_ranks(tree, self.rank)
        self.ranks = k
        self.layout = HSSLayout(tree, k, k)
        self.kinds = ("D", "U", "R", "B12") if self.symmetric else KINDS
        if self.share_weights:
            self._check_shareable()
        self._blocks = {kind: self._make_blocks(kind) for kind in self.kinds}

    # -- structure -------------------------------------------------------------------

    def _check_shareable(self):
        check_uniform_levels(self.tree, "share_weights=True")

    def _node_std(self, kind):
        """Initial standard deviation of every node's block of ``kind``."""
        tree, k = self.tree, self.ranks
        m = tree.sizes.astype(onp.float64)
        if kind == "D":
            return onp.sqrt(1.0 / (2.0 * m))
        if kind in ("U", "V"):
            return onp.sqrt(1.0 / m)
        if kind in ("R", "W"):
            return onp.sqrt(1.0 / (2.0 * onp.maximum(k, 1)))
        a = onp.maximum(tree.left, 0)
        b = onp.maximum(tree.right, 0)
        first = a if kind == "B12" else b
        second = b if kind == "B12" else a
        depth = max(tree.depth, 1)
        return onp.sqrt(m[first] / (2.0 * depth * onp.maximum(k[first] * k[second], 1)))

    def _make_blocks(self, kind):
        rows, cols = self.layout.shapes[kind]
        std = self._node_std(kind)
        if not self.share_weights:
            return _Blocks(rows, cols, std, onp.ones_like(rows))
        lp = self.tree.level_ptr
        first = lp[:-1]
        return _Blocks(rows[first], cols[first], std[first], onp.diff(lp))

    @property
    def n(self):
        return self.tree.n

    @property
    def n_params(self):
        """Number of trainable scalars (an int; ``n_params(params)`` counts a pytree)."""
        return _Count(sum(b.size for b in self._blocks.values()))

    def __repr__(self):
        opts = "".join([", symmetric" if self.symmetric else "", ", shared" if self.share_weights else ""])
        return (f"HSSLinear(n={self.n}, rank={self.rank}, depth={self.tree.depth}{opts}, "
                f"n_params={int(self.n_params)})")

    # -- parameters -------------------------------------------------------------------

    def init(self, seed=0, scale=1.0):
        """Random parameters (see the class notes for the scale).

        Parameters
        ----------
        seed : int
        scale : float
            Multiplies the operator (applied to D and B, which enter it linearly).

        Returns
        -------
        params : dict of 1-D arrays
        """
        rng = onp.random.default_rng(seed)
        params = {}
        for kind in self.kinds:
            p = self._blocks[kind].random(rng, self.dtype)
            if kind in ("D", "B12", "B21"):
                p = p * self.dtype.type(scale)
            params[kind] = p
        return params

    def init_from_hss(self, H):
        """Parameters reproducing the HSSMatrix ``H`` (same tree).

        Ranks of H below the layer's are padded with zeros (exact). If H has a
        node rank above the layer's, H is first recompressed to the layer's
        rank (``H.recompress(rtol=0, max_rank=rank)``): the best approximation
        of that rank rather than H itself. A symmetric layer needs H's generators
        symmetric (U = V, R = W, B21 = B12ᵀ, D symmetric, as from
        ``random_hss(..., symmetric=True)``); a shared layer needs all nodes of a
        level to carry the same generators. Otherwise ValueError.

        Returns
        -------
        params : dict of 1-D arrays
        """
        if not isinstance(H, HSSMatrix):
            raise TypeError(f"H must be a hssalg.HSSMatrix, got {type(H).__name__}")
        if not H.tree.same_as(self.tree):
            raise ValueError("H must be built on the layer's tree (ClusterTree.same_as failed)")
        if onp.any(H.row_ranks > self.ranks) or onp.any(H.col_ranks > self.ranks):
            H = H.recompress(rtol=0.0, max_rank=self.rank)
            if onp.any(H.row_ranks > self.ranks) or onp.any(H.col_ranks > self.ranks):
                raise ValueError(f"H has node ranks above the layer's even after recompression to rank "
                                 f"{self.rank}")
        g = H.generators()
        shapes, offs = self.layout.shapes, self.layout.offsets
        bufs = {}
        for kind in KINDS:
            buf = onp.zeros(self.layout.sizes[kind], dtype=self.dtype)
            for i, blk in enumerate(g[kind]):
                if blk is None or blk.size == 0:
                    continue
                full = onp.zeros((shapes[kind][0][i], shapes[kind][1][i]), dtype=self.dtype)
                full[:blk.shape[0], :blk.shape[1]] = blk
                buf[offs[kind][i]:offs[kind][i + 1]] = full.ravel()
            bufs[kind] = buf
        if self.symmetric:
            tD = self.layout.transpose_index("D")
            tB = self.layout.transpose_index("B21")
            sym = (onp.array_equal(bufs["U"], bufs["V"]) and onp.array_equal(bufs["R"], bufs["W"])
                   and onp.array_equal(bufs["B12"][tB], bufs["B21"]) and onp.array_equal(bufs["D"], bufs["D"][tD]))
            if not sym:
                raise ValueError("a symmetric layer can only reproduce H with symmetric generators "
                                 "(U = V, R = W, B21 = B12^T, D symmetric)")
        if not self.share_weights:
            return {kind: bufs[kind] for kind in self.kinds}
        params = {}
        lp = self.tree.level_ptr
        for kind in self.kinds:
            parts = []
            for lvl in range(lp.size - 1):
                lo, hi = offs[kind][lp[lvl]], offs[kind][lp[lvl + 1]]
                if hi == lo:
                    continue
                blocks = bufs[kind][lo:hi].reshape(lp[lvl + 1] - lp[lvl], -1)
                if not onp.all(blocks == blocks[:1]):
                    raise ValueError(f"a shared layer needs equal generators on all nodes of a level, but the "
                                     f"{kind} blocks of level {lvl} differ")
                parts.append(blocks[0])
            params[kind] = onp.concatenate(parts) if parts else onp.zeros(0, dtype=self.dtype)
        return params

    def init_from_data(self, X, Y, method="auto", X_adj=None, Y_adj=None, seed=0, rcond=None):
        """Parameters fitted to input/output pairs by linear algebra, without gradient descent.

        Two routes:

        ``"exact"``: :func:`hssalg_nn.fit_linear_exact` on the data, then
        :meth:`init_from_hss`. For a target in the layer's class and at least
        :func:`hssalg_nn.min_samples_exact` (``max(m, 2k) + k``) generic samples
        this *is* the target, to rounding (fact P6). It needs a layer without
        weight sharing, and adjoint pairs ``X_adj``, ``Y_adj`` for an
        unsymmetric layer (forward data do not determine an unsymmetric HSS
        operator; fact P6, negative part). A symmetric layer fed data of an
        unsymmetric operator gets the symmetric operator the scheme builds from
        them (no symmetry check: this is an initialisation).

        ``"lstsq"``: the diagonal blocks by least squares, ``D_i`` minimising
        ``||X_i D_iᵀ - Y_i||`` over the leaf's rows of the data (the minimum-norm
        solution when there are fewer samples than rows; one block fitted to all
        leaves' data at once with weight sharing; symmetrised for a symmetric
        layer), and the off-diagonal part zero: bases and transfers random as in
        :meth:`init` with ``seed``, couplings B = 0. The layer then starts as the
        best block-diagonal operator for the data, and gradient training grows
        the off-diagonal part (the couplings have a nonzero gradient there).

        Parameters
        ----------
        X : (N, n) array_like
            Inputs, one sample per row, in the caller's index order.
        Y : (N, n) array_like
            Outputs, row i the image of row i of X.
        method : {"auto", "exact", "lstsq"}
            ``"auto"`` takes ``"exact"`` whenever it applies (enough samples, no
            sharing, symmetric layer or adjoint data given), else ``"lstsq"``.
        X_adj, Y_adj : (N', n) array_like, optional
            Adjoint pairs (rows psi_j and Aᵀ psi_j) for the exact route of an
            unsymmetric layer.
        seed : int
            Seed of the random bases and transfers of the ``"lstsq"`` route.
        rcond : float, optional
            Cut-off of ``numpy.linalg.lstsq`` in the ``"lstsq"`` route.

        Returns
        -------
        params : dict of 1-D arrays
            As from :meth:`init`.

        Raises
        ------
        ValueError
            Shapes that do not match the layer; ``method="exact"`` where that
            route does not apply (the message says why).
        """
        from .exact import fit_linear_exact, min_samples_exact

        if method not in ("auto", "exact", "lstsq"):
            raise ValueError(f"method must be 'auto', 'exact' or 'lstsq', got {method!r}")
        X = self._data_block(X, "X")
        Y = self._data_block(Y, "Y")
        if X.shape[0] != Y.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples (rows) but Y has {Y.shape[0]}")
        adjoint = X_adj is not None or Y_adj is not None
        need = min_samples_exact(self.tree, self.rank)
        why_not = None
        if self.share_weights:
            why_not = "weight sharing: the exact fit gives every node its own generators"
        elif X.shape[0] < need:
            why_not = (f"{X.shape[0]} samples, fewer than the {need} (max(m, 2k) + k) the exact fit needs "
                       f"at rank {self.rank}")
        elif not self.symmetric and not adjoint:
            why_not = ("an unsymmetric layer needs adjoint data X_adj, Y_adj: forward samples alone do not "
                       "determine an unsymmetric HSS operator (fact P6)")
        if method == "exact" and why_not is not None:
            raise ValueError(f"init_from_data(method='exact') does not apply: {why_not}")
        if method == "exact" or (method == "auto" and why_not is None):
            if self.symmetric:
                if adjoint:
                    raise ValueError("X_adj and Y_adj are for unsymmetric layers; a symmetric layer takes "
                                     "the forward data as its adjoint data")
                # the symmetric scheme builds U = V, R = W, B21 = B12^T exactly, as the layer needs
                H = fit_linear_exact(X, Y, self.tree, self.rank, symmetric=True, sym_tol=onp.inf)
            else:
                H = fit_linear_exact(X, Y, self.tree, self.rank, symmetric=False, X_adj=X_adj, Y_adj=Y_adj)
            return self.init_from_hss(H)
        return self._init_lstsq(X, Y, seed, rcond)

    def _data_block(self, a, name):
        arr = onp.asarray(a)
        if arr.ndim != 2 or arr.shape[1] != self.n or arr.dtype.kind not in "fiu":
            raise ValueError(f"{name} must be a real array of shape (N, {self.n}) (one sample per row), "
                             f"got shape {arr.shape} and dtype {arr.dtype}")
        arr = onp.asarray(arr, dtype=onp.float64)
        if not onp.all(onp.isfinite(arr)):
            raise ValueError(f"{name} contains non-finite entries (NaN or inf)")
        return arr

    def _init_lstsq(self, X, Y, seed, rcond):
        """The ``"lstsq"`` route of :meth:`init_from_data`."""
        tree = self.tree
        Xt, Yt = X[:, tree.perm], Y[:, tree.perm]
        leaves = onp.flatnonzero(tree.is_leaf)

        def fit(rows_x, rows_y):
            # rows_y ~ rows_x D^T
            if not self.symmetric:
                return onp.linalg.lstsq(rows_x, rows_y, rcond=rcond)[0].T
            # over symmetric D the normal equations are the Lyapunov equation
            # G D + D G = X^T Y + Y^T X with G = X^T X; in G's eigenbasis Q (eigenvalues lam)
            # it is diagonal: (lam_a + lam_b) (Q^T D Q)_ab = (Q^T (X^T Y + Y^T X) Q)_ab.
            # (Symmetrising the unconstrained solution instead can be far off when N ~ m.)
            lam, Q = onp.linalg.eigh(rows_x.T @ rows_x)
            C = rows_x.T @ rows_y
            F = Q.T @ (C + C.T) @ Q
            den = lam[:, None] + lam[None, :]
            cut = (rcond if rcond is not None else rows_x.shape[1] * onp.finfo(onp.float64).eps) * max(lam[-1], 0.0)
            Dq = onp.where(den > 2 * cut, F / onp.where(den > 2 * cut, den, 1.0), 0.0)   # minimum norm
            D = Q @ Dq @ Q.T
            return 0.5 * (D + D.T)

        if self.share_weights:
            sl = [slice(tree.start[i], tree.stop[i]) for i in leaves]
            D = fit(onp.concatenate([Xt[:, s] for s in sl]), onp.concatenate([Yt[:, s] for s in sl]))
            D_param = D.ravel()
        else:
            D_param = onp.zeros(self.layout.sizes["D"])
            off = self.layout.offsets["D"]
            for i in leaves:
                s = slice(tree.start[i], tree.stop[i])
                D_param[off[i]:off[i + 1]] = fit(Xt[:, s], Yt[:, s]).ravel()
        params = self.init(seed=seed)
        params["D"] = D_param.astype(self.dtype)
        for kind in ("B12", "B21"):
            if kind in params:
                params[kind] = onp.zeros_like(params[kind])
        return params

    def _check_params(self, params):
        if not (hasattr(params, "keys") and hasattr(params, "__getitem__")):
            raise TypeError(f"params must be a dict with keys {list(self.kinds)}, got {type(params).__name__}")
        keys = set(params.keys())
        missing = [k for k in self.kinds if k not in keys]
        if missing:
            raise ValueError(f"params is missing {missing} (expected keys {list(self.kinds)})")
        for kind in self.kinds:
            shape = onp.shape(params[kind])
            if shape != (self._blocks[kind].size,):
                raise ValueError(f"params[{kind!r}] must have shape ({self._blocks[kind].size},) for this "
                                 f"layer, got {shape}")

    def generators(self, params):
        """The seven flat generator buffers of the operator (differentiable in params).

        Returns
        -------
        dict
            kind -> 1-D array in the layout of :attr:`layout`. Without symmetry or
            sharing this is ``params`` itself.
        """
        self._check_params(params)
        if not (self.symmetric or self.share_weights):
            return params
        if not isinstance(params, Box) and any(isinstance(params[k], Box) for k in self.kinds):
            params = _boxed_dict({k: params[k] for k in self.kinds})
        return _expand(params, self)

    def _expand_plain(self, params, diagonal=True):
        """Generator buffers from plain parameters. With ``diagonal=False`` (unshared layers)
        ``params["D"]`` is passed through as it is: for an optimiser that holds D fixed and
        never reads it, symmetrising it would be wasted work."""
        p = {kind: onp.asarray(params[kind]) for kind in self.kinds}
        if self.symmetric:
            # block by block in numba (hssalg._kernels.blocks): a gather of the whole
            # buffer through an index array took 14.0 against 8.1 ms at n = 2^16 (one thread)
            D, B = self._blocks["D"], self._blocks["B12"]
            if diagonal:
                p["D"] = _blockwise(_kblocks.symmetric_blocks, p["D"], D.off, D.rows)
            p["V"], p["W"] = p["U"], p["R"]
            p["B21"] = _blockwise(_kblocks.transpose_blocks, p["B12"], B.off, B.rows, B.cols)
        if self.share_weights:
            p = {kind: self._shared_blocks(kind).expand(p[kind]) for kind in KINDS}
        return p

    def _reduce_plain(self, g, diagonal=True):
        """The transpose of :meth:`_expand_plain`: parameter gradients from generator gradients
        (without ``"D"``, and ``g["D"]`` not read, when ``diagonal=False``)."""
        kinds = [kind for kind in KINDS if diagonal or kind != "D"]
        c = {kind: onp.asarray(g[kind]) for kind in kinds}
        if self.share_weights:
            c = {kind: self._shared_blocks(kind).reduce(c[kind]) for kind in kinds}
        if not self.symmetric:
            return c
        D, B = self._blocks["D"], self._blocks["B12"]
        # the symmetric part is its own adjoint; B21 = B12ᵀ sends its gradient back transposed
        out = {"D": _blockwise(_kblocks.symmetric_blocks, c["D"], D.off, D.rows)} if diagonal else {}
        out.update(U=c["U"] + c["V"], R=c["R"] + c["W"],
                   B12=c["B12"] + _blockwise(_kblocks.transpose_blocks, c["B21"], B.off, B.cols, B.rows))
        return out

    def _shared_blocks(self, kind):
        if self.symmetric:
            kind = {"V": "U", "W": "R", "B21": "B12"}.get(kind, kind)
        return self._blocks[kind]

    # -- the operator -------------------------------------------------------------------

    def apply(self, params, X, transpose=False):
        """Y = A X for a batch: row i of Y is A x_i.

        Parameters
        ----------
        params : dict
            From :meth:`init` (may hold autograd boxes).
        X : (batch, n) or (n,) array_like
            Inputs as rows, in the caller's (original) index order.
        transpose : bool
            Apply Aᵀ instead.

        Returns
        -------
        Y : array of X's shape, in the layer's dtype
        """
        shape = onp.shape(X)
        if len(shape) not in (1, 2) or shape[-1] != self.n:
            raise ValueError(f"X must have shape (batch, {self.n}) or ({self.n},), got shape {shape}")
        gens = self.generators(params)
        if len(shape) == 1:
            return hss_apply(gens, anp.reshape(X, (1, self.n)), self.layout, transpose=transpose)[0]
        return hss_apply(gens, X, self.layout, transpose=transpose)

    __call__ = apply

    def to_hss(self, params):
        """The operator as an :class:`hssalg.HSSMatrix` (same tree, the layer's ranks).

        The matrix owns copies of the generators: factorise, solve with,
        recompress or save it like any other.
        """
        plain = {k: onp.asarray(getattr(v, "_value", v), dtype=self.dtype) for k, v in params.items()}
        gens = self.generators(plain)
        return self.layout.to_hss({k: onp.asarray(v, dtype=self.dtype) for k, v in gens.items()})


# -- the model ------------------------------------------------------------------------

class NeuralHSS:
    """The Neural-HSS model: lift, L blocks v <- sigma(W v + K v + b), projection.

    Parameters
    ----------
    tree : hssalg.ClusterTree
        Tree of the n spatial points (inputs and outputs in the caller's order).
    channels : int >= 1
        Width c of the hidden state v, an array (batch, c, n).
    n_layers : int >= 0
        Number of blocks L.
    rank : int >= 0
        Rank of every block's HSS operator K (an :class:`HSSLinear`).
    activation : {"gelu", "relu", "tanh", "identity"}
        sigma. With "identity" the model is affine, and linear with ``bias=False``
        (the model the theorems speak of; see :meth:`to_hss`).
    symmetric, share_weights : bool
        Passed to every block's :class:`HSSLinear`.
    bias : bool
        Include the biases of the lift, the blocks and the projection.
    dtype : float64 or float32

    Notes
    -----
    Channel handling: each block has *one* spatial operator K_l (an HSSLinear)
    applied to every channel alike, plus a pointwise c x c matrix W_l that mixes
    channels at every point, ``v_c <- sigma(sum_c' W[c, c'] v_c' + K v_c + b_c)``.
    This is the FNO block with the spectral convolution replaced by an HSS
    operator shared across channels: the parameter count is that of one
    HSSLinear per block plus c^2 + c, so the model stays close to a single
    operator in size, and with c = 1 and identity activation each block is
    exactly ``K_l + w_l I``, an HSS matrix of the same rank.

    The lift is ``v_c = p_c x + q_c`` and the projection ``y = sum_c r_c v_c + s``.
    Initialisation: p ~ N(0, 1), r ~ N(0, 1/c), W ~ N(0, 1/(2c)), K with gain
    1/sqrt(2) (HSSLinear.init with scale 1/sqrt(2)), biases zero.

    Parameters are a nested dict::

        {"lift": {"w": (c,), "b": (c,)},
         "blocks": {"0": {"K": <HSSLinear params>, "W": (c, c), "b": (c,)}, "1": ...},
         "proj": {"w": (c,), "b": (1,)}}

    (without bias the "b" entries are absent).
    """

    def __init__(self, tree, channels, n_layers, rank, activation="gelu", symmetric=False,
                 share_weights=False, bias=True, dtype=onp.float64):
        if not isinstance(tree, ClusterTree):
            raise TypeError(f"tree must be a hssalg.ClusterTree, got {type(tree).__name__}")
        self.tree = tree
        self.channels = check_positive_int(channels, "channels")
        self.n_layers = check_positive_int(n_layers, "n_layers", minimum=0)
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        # the fused GELU: the same values, one primitive instead of ~10 traced ones (.activations)
        self._sigma = FAST_ACTIVATIONS[activation]
        self.bias = bool(bias)
        self.dtype = check_dtype(dtype)
        self.layer = HSSLinear(tree, rank, symmetric=symmetric, share_weights=share_weights, dtype=dtype)
        self.rank = self.layer.rank

    @property
    def n(self):
        return self.tree.n

    @property
    def is_linear(self):
        """True when the model is a linear map (identity activation, no bias)."""
        return self.activation == "identity" and not self.bias

    @property
    def n_params(self):
        """Number of trainable scalars (an int; ``n_params(params)`` counts a pytree)."""
        c = self.channels
        per_block = int(self.layer.n_params) + c * c + (c if self.bias else 0)
        ends = 2 * c + ((c + 1) if self.bias else 0)
        return _Count(ends + self.n_layers * per_block)

    def __repr__(self):
        return (f"NeuralHSS(n={self.n}, channels={self.channels}, n_layers={self.n_layers}, rank={self.rank}, "
                f"activation={self.activation!r}, n_params={int(self.n_params)})")

    def init(self, seed=0):
        """Random parameters (see the class notes); a nested dict of arrays."""
        rng = onp.random.default_rng(seed)
        c, dt = self.channels, self.dtype
        params = {"lift": {"w": rng.standard_normal(c).astype(dt)},
                  "proj": {"w": (rng.standard_normal(c) / onp.sqrt(c)).astype(dt)},
                  "blocks": {}}
        if self.bias:
            params["lift"]["b"] = onp.zeros(c, dt)
            params["proj"]["b"] = onp.zeros(1, dt)
        for l in range(self.n_layers):
            seed_l = int(rng.integers(2**31))
            blk = {"K": self.layer.init(seed_l, scale=1.0 / onp.sqrt(2.0)),
                   "W": (rng.standard_normal((c, c)) / onp.sqrt(2.0 * c)).astype(dt)}
            if self.bias:
                blk["b"] = onp.zeros(c, dt)
            params["blocks"][str(l)] = blk
        return params

    def apply(self, params, X):
        """Model output for a batch.

        Parameters
        ----------
        params : nested dict from :meth:`init`
        X : (batch, n) array_like, inputs as rows in the caller's order

        Returns
        -------
        Y : (batch, n) array
        """
        shape = onp.shape(X)
        if len(shape) != 2 or shape[1] != self.n:
            raise ValueError(f"X must have shape (batch, {self.n}), got shape {shape}")
        batch, n, c = shape[0], self.n, self.channels
        lift = params["lift"]
        v = lift["w"][None, :, None] * X[:, None, :]                   # (batch, c, n)
        if self.bias:
            v = v + lift["b"][None, :, None]
        # each indexing of a boxed dict is a node whose gradient autograd builds as a zero dict
        # of that whole container plus the entry: index "blocks" once, not once per block
        blocks = params["blocks"] if self.n_layers else None
        for l in range(self.n_layers):
            blk = blocks[str(l)]
            Kv = anp.reshape(self.layer.apply(blk["K"], anp.reshape(v, (batch * c, n))), (batch, c, n))
            z = anp.matmul(blk["W"], v) + Kv
            if self.bias:
                z = z + blk["b"][None, :, None]
            v = self._sigma(z)
        proj = params["proj"]
        Y = anp.matmul(proj["w"], v)                                     # (batch, n)
        if self.bias:
            Y = Y + proj["b"]
        return Y

    __call__ = apply

    def to_hss(self, params, rtol=1e-12, drop_bias=False):
        """The model as one HSSMatrix, when it is linear.

        Built with hssalg's HSS arithmetic (no dense matrix): the state is one
        HSS matrix per channel, M_c (v_c = M_c x), updated by
        ``M_c <- (K + W[c, c] I) M_c + sum_{c' != c} W[c, c'] M_c'`` and recompressed at ``rtol``
        after every block. With one channel this is the product of the
        ``K_l + w_l I``, of rank at most L k (fact P5).

        Parameters
        ----------
        params : nested dict
        rtol : float
            Relative tolerance of the recompressions (0 keeps the exact ranks).
        drop_bias : bool
            With identity activation and nonzero biases the model is affine,
            y = A x + const; True exports A, False raises.

        Raises
        ------
        ValueError
            For a nonlinear activation, or nonzero biases without ``drop_bias``.
        """
        if self.activation != "identity":
            raise ValueError(f"to_hss needs a linear model (activation='identity'); this model uses "
                             f"{self.activation!r}, which is not a matrix")
        if self.bias and not drop_bias:
            biases = [params["lift"]["b"], params["proj"]["b"]] + \
                     [params["blocks"][str(l)]["b"] for l in range(self.n_layers)]
            if any(onp.any(onp.asarray(b) != 0) for b in biases):
                raise ValueError("the model has nonzero biases, so it is affine (y = A x + const), not a "
                                 "matrix; build it with bias=False, or pass drop_bias=True to export A")
        c = self.channels
        eye = self._identity()
        M = [eye * float(params["lift"]["w"][j]) for j in range(c)]
        for l in range(self.n_layers):
            blk = params["blocks"][str(l)]
            K = self.layer.to_hss(blk["K"])
            W = onp.asarray(blk["W"], dtype=onp.float64)
            new = []
            for j in range(c):
                # (K + W_jj I) M_j keeps the rank growth of one product (ranks add k)
                acc = K.shift(float(W[j, j])) @ M[j]
                for jj in range(c):
                    if jj != j and W[j, jj] != 0.0:
                        acc = acc + M[jj] * float(W[j, jj])
                new.append(acc.recompress(rtol=rtol) if rtol > 0 else acc)
            M = new
        w = onp.asarray(params["proj"]["w"], dtype=onp.float64)
        out = M[0] * float(w[0])
        for j in range(1, c):
            out = out + M[j] * float(w[j])
        return out.recompress(rtol=rtol) if (rtol > 0 and c > 1) else out

    def _identity(self):
        """The identity as a rank-0 HSSMatrix on the model's tree."""
        tree = self.tree
        zero = onp.zeros(tree.n_nodes, dtype=onp.int64)
        layout = HSSLayout(tree, zero, zero)
        D = onp.zeros(layout.sizes["D"], dtype=self.dtype)
        offs = layout.offsets["D"]
        for i in onp.flatnonzero(tree.is_leaf):
            m = int(tree.sizes[i])
            D[offs[i]:offs[i + 1]] = onp.eye(m, dtype=self.dtype).ravel()
        gens = {k: onp.zeros(layout.sizes[k], dtype=self.dtype) for k in KINDS}
        gens["D"] = D
        return layout.to_hss(gens)
