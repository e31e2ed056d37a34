"""Differentiable HSS products: autograd primitives over the numba kernels.

This is the only module that joins :mod:`autograd.extend` with
:mod:`hssalg._kernels`. An HSS matrix travels as a dict of seven flat generator
buffers (``"D", "U", "V", "R", "W", "B12", "B21"``, the layout of
:mod:`hssalg._layout`) and a static, non-differentiable :class:`HSSLayout` (tree,
ranks, offsets). :func:`hss_apply` multiplies a batch of vectors by the matrix or
its transpose; its vector-Jacobian products with respect to the batch *and every
generator buffer* come from one numba sweep (:func:`hssalg._kernels.grad.backward`),
not from autograd tracing a loop over nodes; so do its Jacobian-vector products
(:func:`hssalg._kernels.tangent.tangent`), so that ``autograd.make_jvp`` works
through it. :func:`hss_apply_jvp` gives the product and one directional derivative
from a single sweep, as plain arrays, for optimisers that need J v.

Derivatives are of first order, in either mode (what training needs); the VJPs
and JVPs themselves are not differentiable again.
"""

import threading
import weakref

import numpy as onp
from autograd.builtins import _make_dict
from autograd.builtins import dict as _boxed_dict
from autograd.core import primitive_jvps
from autograd.extend import Box, defjvp, defjvp_argnums, defvjp, defvjp_argnums, primitive, vspace

from hssalg import _layout
from hssalg._kernels import grad as _grad
from hssalg._kernels import matvec as _matvec
from hssalg._kernels import tangent as _tangent
from hssalg.matrix import HSSMatrix
from hssalg.tree import ClusterTree

__all__ = ["HSSLayout", "Linearization", "hss_apply", "hss_apply_jvp", "permute_last", "KINDS"]

KINDS = _layout.KINDS


class HSSLayout:
    """Static description of an HSS matrix's generator buffers: tree, ranks, offsets.

    Parameters
    ----------
    tree : hssalg.ClusterTree
    kU, kV : (n_nodes,) int arrays
        Row ranks (columns of U_i) and column ranks (columns of V_i) of every
        node; the root's must be 0.

    Attributes
    ----------
    tree : ClusterTree
    n : int
    kU, kV : (n_nodes,) int64 arrays (read-only)
    offsets : dict
        kind -> (n_nodes + 1,) int64 offsets into the flat buffer of that kind.
    shapes : dict
        kind -> (rows, cols), two (n_nodes,) int64 arrays.
    sizes : dict
        kind -> total length of the flat buffer.
    """

    __slots__ = ("tree", "kU", "kV", "offsets", "shapes", "sizes", "_tidx")

    def __init__(self, tree, kU, kV):
        if not isinstance(tree, ClusterTree):
            raise TypeError(f"tree must be a hssalg.ClusterTree, got {type(tree).__name__}")
        ranks = []
        for name, k in (("kU", kU), ("kV", kV)):
            k = onp.asarray(k)
            if k.shape != (tree.n_nodes,) or (k.size and k.dtype.kind not in "iu"):
                raise ValueError(f"{name} must be an integer array of shape ({tree.n_nodes},) (one rank per "
                                 f"node), got shape {k.shape} and dtype {k.dtype}")
            if onp.any(k < 0):
                raise ValueError(f"{name} must be >= 0, got minimum {int(k.min())}")
            if k[0] != 0:
                raise ValueError(f"{name}[0] (the root's rank) must be 0, got {int(k[0])}")
            k = onp.array(k, dtype=onp.int64)
            k.setflags(write=False)
            ranks.append(k)
        self.tree = tree
        self.kU, self.kV = ranks
        self.offsets = _layout.offsets(tree, self.kU, self.kV)
        for off in self.offsets.values():
            off.setflags(write=False)
        self.shapes = _layout.block_shapes(tree, self.kU, self.kV)
        self.sizes = {kind: int(off[-1]) for kind, off in self.offsets.items()}
        self._tidx = {}

    @classmethod
    def of(cls, H):
        """Layout and generator buffers of an :class:`hssalg.HSSMatrix`.

        Returns
        -------
        layout : HSSLayout
        gens : dict
            kind -> 1-D array (read-only views of H's storage, or transposed
            copies when H is a transposed view).
        """
        if not isinstance(H, HSSMatrix):
            raise TypeError(f"H must be a hssalg.HSSMatrix, got {type(H).__name__}")
        bufs, _ = H.generator_buffers()
        return cls(H.tree, H.row_ranks, H.col_ranks), dict(bufs)

    @property
    def n(self):
        return self.tree.n

    def to_hss(self, gens):
        """The :class:`hssalg.HSSMatrix` with these generator buffers (plain arrays).

        Parameters
        ----------
        gens : dict
            kind -> 1-D float64 or float32 array of length ``self.sizes[kind]``.
        """
        bufs = check_gens(gens, self, unbox=True)
        bufs = {kind: onp.array(b) for kind, b in bufs.items()}  # own copies: the matrix freezes them
        return HSSMatrix(self.tree, self.kU, self.kV, bufs, _offsets=self.offsets)

    def transpose_index(self, kind):
        """Index array t with ``buf[t]`` = every block of ``kind`` transposed, for
        the D blocks (a permutation of the D buffer) or for B12 -> B21 (valid when
        kU == kV, so that B21 of node i has the shape of B12 of node i transposed).
        """
        if kind not in self._tidx:
            if kind == "D":
                rows, cols = self.shapes["D"]
                off = self.offsets["D"]
            elif kind == "B21":
                if not onp.array_equal(self.kU, self.kV):
                    raise ValueError("B21 = B12^T needs equal row and column ranks (kU == kV)")
                rows, cols = self.shapes["B12"]
                off = self.offsets["B12"]
            else:
                raise ValueError(f"transpose_index is defined for 'D' and 'B21', got {kind!r}")
            t = onp.empty(int(off[-1]), dtype=onp.int64)
            for i in onp.flatnonzero(rows * cols):
                blk = onp.arange(off[i], off[i + 1]).reshape(rows[i], cols[i])
                t[off[i]:off[i + 1]] = blk.T.ravel()
            t.setflags(write=False)
            self._tidx[kind] = t
        return self._tidx[kind]

    def __repr__(self):
        return (f"HSSLayout(n={self.tree.n}, n_nodes={self.tree.n_nodes}, max_rank="
                f"{int(max(self.kU.max(), self.kV.max()))})")


def check_gens(gens, layout, unbox=False, name="gens"):
    """Check that ``gens`` holds the seven buffers of ``layout``; returns them as a dict.

    With ``unbox`` autograd boxes are replaced by their values. ``name`` is the
    argument's name in the error messages.
    """
    if not (hasattr(gens, "keys") and hasattr(gens, "__getitem__")):  # a dict or autograd's DictBox
        raise TypeError(f"{name} must be a dict of generator buffers (kinds {', '.join(KINDS)}), "
                        f"got {type(gens).__name__}")
    keys = set(gens.keys())
    missing = [k for k in KINDS if k not in keys]
    if missing:
        raise ValueError(f"{name} is missing the generator buffer(s) {missing}")
    if isinstance(gens, Box):
        gens = gens._value
    out = {}
    dtype = None
    for kind in KINDS:
        b = gens[kind]
        if unbox:
            b = getattr(b, "_value", b)
        shape = onp.shape(b)
        if len(shape) != 1 or shape[0] != layout.sizes[kind]:
            raise ValueError(f"{name}[{kind!r}] must be a 1-D buffer of length {layout.sizes[kind]} for this "
                             f"layout, got shape {shape}")
        dt = onp.result_type(getattr(b, "dtype", onp.float64))
        if dt not in (onp.dtype(onp.float64), onp.dtype(onp.float32)):
            raise TypeError(f"{name}[{kind!r}] must be float64 or float32, got {dt}")
        if dtype is None:
            dtype = dt
        elif dt != dtype:
            raise TypeError(f"all generator buffers must share one dtype; {name}['D'] is {dtype} but "
                            f"{name}[{kind!r}] is {dt}")
        out[kind] = b
    return out


# -- the product primitive ----------------------------------------------------------

# The VJP needs the tree-order batch and the sweep quantities x̂, ŷ of the forward
# product. autograd builds the VJP right after the forward call, with the very array
# the forward returned, so the forward leaves them here and the VJP maker takes them.
_saved = threading.local()


def _roles(layout, gens, transpose):
    """Kernel arguments by role (see hssalg._kernels.grad) for A or A^T."""
    o = layout.offsets
    if not transpose:
        return (layout.kV, layout.kU, gens["V"], o["V"], gens["W"], o["W"], gens["U"], o["U"],
                gens["R"], o["R"], gens["B12"], o["B12"], gens["B21"], o["B21"], False,
                gens["D"], o["D"], False)
    return (layout.kU, layout.kV, gens["U"], o["U"], gens["R"], o["R"], gens["V"], o["V"],
            gens["W"], o["W"], gens["B21"], o["B21"], gens["B12"], o["B12"], True,
            gens["D"], o["D"], True)


def _readonly(a, dtype):
    """A C-contiguous read-only view (a copy only when needed for layout or dtype).

    numba compiles one version of a kernel per combination of argument types, and
    a read-only array is a different type from a writable one: handing every array
    over read-only keeps that to one version per dtype instead of one per mixture.
    """
    v = onp.ascontiguousarray(a, dtype=dtype).view()
    v.setflags(write=False)
    return v


def _to_tree_order(X, layout, dtype):
    tree = layout.tree
    if tree.has_identity_perm:
        return _readonly(X, dtype)
    return _readonly(onp.take(onp.asarray(X, dtype=dtype), tree.perm, axis=1), dtype)


def _to_caller_order(Y, layout):
    tree = layout.tree
    return Y if tree.has_identity_perm else onp.take(Y, tree.iperm, axis=1)


def _sweep(kernel, Xt, *args):
    """``kernel(*args, n_threads)`` on as many numba threads as an (s, n) batch Xt is worth
    (``numba.get_num_threads()`` from 2^15 numbers on, else one; as for ``HSSMatrix @``)."""
    return _matvec.run_parallel(kernel, _matvec.threads_for(Xt.shape[1], Xt.shape[0]), *args)


def _forward(gens, X, layout, transpose):
    dtype = onp.result_type(gens["D"])
    gens = {k: _readonly(gens[k], dtype) for k in KINDS}
    Xt = _to_tree_order(X, layout, dtype)
    Yt, xt, yt = _sweep(_grad.forward, Xt, layout.tree.arrays, *_roles(layout, gens, transpose), Xt)
    return _to_caller_order(Yt, layout), (gens, Xt, xt, yt)


@primitive
def _hss_product(gens, X, layout, transpose):
    # gens travels as one dict so that its gradient is one dict too: autograd's
    # per-key indexing of a dict would build a zero dict per key in the reverse pass
    Y, saved = _forward(gens, X, layout, transpose)
    _stash(Y, saved)
    return Y


def _stash(Y, saved):
    """Keep the sweeps of the product Y for its VJP maker, at most as long as Y lives."""
    entry = []

    def drop(_):
        if getattr(_saved, "value", None) is entry:
            _saved.value = None

    entry.extend([weakref.ref(Y, drop), saved])
    _saved.value = entry


def _product_vjp(argnums, ans, args, kwargs):
    gens_in, X, layout, transpose = args
    entry = getattr(_saved, "value", None)
    _saved.value = None
    if entry is not None and entry[0]() is ans:
        gens, Xt, xt, yt = entry[1]
    else:  # the forward ran elsewhere (another thread, a copy): recompute the sweeps
        _, (gens, Xt, xt, yt) = _forward(gens_in, X, layout, transpose)
    x_dtype = onp.result_type(X)
    extra = [k for k in gens_in if k not in KINDS]

    # the input's gradient (a third of the reverse sweep) only when X is differentiated
    need_dX = 1 in argnums

    def vjp(g):
        G = _to_tree_order(g, layout, gens["D"].dtype)
        dXt, d_bin, d_tin, d_bout, d_tout, d_cab, d_cba, dD = _sweep(
            _grad.backward, Xt, layout.tree.arrays, *_roles(layout, gens, transpose), Xt, xt, yt, G, need_dX)
        out = []
        for i in argnums:
            if i == 0:
                if transpose:
                    grads = dict(D=dD, U=d_bin, R=d_tin, V=d_bout, W=d_tout, B21=d_cab, B12=d_cba)
                else:
                    grads = dict(D=dD, V=d_bin, W=d_tin, U=d_bout, R=d_tout, B12=d_cab, B21=d_cba)
                for k in extra:   # entries of gens that are not generators do not enter the product
                    grads[k] = vspace(gens_in[k]).zeros()
                out.append(grads)
            else:
                out.append(onp.asarray(_to_caller_order(dXt, layout), dtype=x_dtype))
        return tuple(out)

    return vjp


defvjp_argnums(_hss_product, _product_vjp)


def _tangent_roles(dgens, transpose):
    """Tangent buffers by role, in the order of :func:`hssalg._kernels.tangent.forward_tangent`
    (the roles of :func:`_roles`)."""
    if not transpose:
        return (dgens["V"], dgens["W"], dgens["U"], dgens["R"], dgens["B12"], dgens["B21"], dgens["D"])
    return (dgens["U"], dgens["R"], dgens["V"], dgens["W"], dgens["B21"], dgens["B12"], dgens["D"])


def _tangent_buffers(dgens, layout, dtype):
    """The seven tangent buffers as read-only arrays of ``dtype``.

    Keys other than the seven kinds are ignored (the tangent of a dict has the keys
    of the dict). A missing entry, None or a scalar zero (how a zero tangent may
    arrive) becomes a zero buffer.
    """
    out = {}
    for kind in KINDS:
        t = dgens[kind] if kind in dgens else None
        if t is None or (onp.ndim(t) == 0 and not t):
            t = onp.zeros(layout.sizes[kind], dtype)
        out[kind] = _readonly(t, dtype)
    return out


def _no_tangent(Xt):
    """The empty (0, n) batch by which the kernels are told that X has no tangent."""
    return _readonly(onp.empty((0, Xt.shape[1]), Xt.dtype), Xt.dtype)


def _product_jvp(argnums, gs, ans, args, kwargs):
    # one evaluation for every moving argument: with tangents in both the generators and
    # X the kernel takes both in the same sweep
    gens_in, X, layout, transpose = args
    tangents = dict(zip(argnums, gs))
    if 0 not in tangents:
        # only the batch moves: the product is linear in X, its JVP the product of the tangent
        return _forward(gens_in, tangents[1], layout, transpose)[0]
    # the forward product that returned ans has just run (autograd builds the JVP right
    # after it) and left its sweeps: reuse them rather than sweep the input again. The
    # entry is left in place for a VJP of the same product.
    entry = getattr(_saved, "value", None)
    if entry is not None and entry[0]() is ans:
        gens, Xt, xt, yt = entry[1]
    else:
        _, (gens, Xt, xt, yt) = _forward(gens_in, X, layout, transpose)
    dtype = gens["D"].dtype
    dgens = _tangent_buffers(tangents[0], layout, dtype)
    dXt = _to_tree_order(tangents[1], layout, dtype) if 1 in tangents else _no_tangent(Xt)
    dYt = _sweep(_tangent.tangent, Xt, layout.tree.arrays, *_roles(layout, gens, transpose),
                 *_tangent_roles(dgens, transpose), Xt, xt, yt, dXt)
    return _to_caller_order(dYt, layout)


defjvp_argnums(_hss_product, _product_jvp)

# autograd defines no JVP for the dict it builds from boxed values (autograd.builtins.dict,
# with which hss_apply and HSSLinear.generators box a plain dict holding boxes): without
# one, forward mode would stop there. Its values arrive as one list; so does their tangent.
if _make_dict not in primitive_jvps:
    defjvp(_make_dict, lambda g, ans, keys, vals: dict(zip(keys, g)), argnums=(1,))


def hss_apply(gens, X, layout, transpose=False):
    """Y = X op(A)ᵀ: every row of the batch X multiplied by A (or by Aᵀ).

    Differentiable (reverse and forward mode, first order) with respect to X and
    to every generator buffer. The vector-Jacobian product with respect to X is the
    transposed product; those with respect to the generators are outer products of
    the sweep quantities of the forward product and of the transposed product of
    the cotangent (see :mod:`hssalg._kernels.grad`), all from one numba sweep.

    Threads: from 2^15 numbers in X on, every sweep runs on numba's threads
    (``numba.set_num_threads``), subtrees in parallel, with BLAS held at one
    thread meanwhile; the result is the same bit for bit on any number of threads.

    Parameters
    ----------
    gens : dict
        kind -> 1-D array (or autograd box) of length ``layout.sizes[kind]``,
        kinds ``"D", "U", "V", "R", "W", "B12", "B21"``; one float dtype. Pass
        the dict itself when differentiating with respect to it (its gradient is
        then a dict built in one piece); a plain dict holding boxes works too.
    X : (s, n) array_like
        A batch of s vectors as rows, in the caller's (original) index order.
    layout : HSSLayout
        Static: tree, ranks and offsets of the buffers (not differentiated).
    transpose : bool
        Multiply by Aᵀ instead of A.

    Returns
    -------
    Y : (s, n) array
        Row i is A x_i (or Aᵀ x_i), in the caller's order, in the generators' dtype.
    """
    if not isinstance(layout, HSSLayout):
        raise TypeError(f"layout must be an HSSLayout, got {type(layout).__name__}")
    check_gens(gens, layout)
    shape = onp.shape(X)
    if len(shape) != 2 or shape[1] != layout.n:
        raise ValueError(f"X must be a batch of shape (s, {layout.n}) (one vector per row), got shape {shape}")
    if not isinstance(gens, Box) and any(isinstance(gens[k], Box) for k in KINDS):
        # a plain dict holding boxes: make it one boxed dict (per-key gradients, no zero dicts)
        gens = _boxed_dict({k: gens[k] for k in KINDS})
    return _hss_product(gens, X, layout, bool(transpose))


def hss_apply_jvp(gens, dgens, X, layout, transpose=False, dX=None):
    """Y = X op(A)ᵀ and its directional derivative dY, both from one sweep.

    dY = X op(dA)ᵀ + dX op(A)ᵀ, where dA is the first-order change of A along
    the tangent generators ``dgens`` (A is multilinear in the generators, not
    linear: dA is not the matrix of ``dgens``; see :mod:`hssalg._kernels.tangent`
    for the sweep). This is the Jacobian-vector product J v of
    :func:`hss_apply` for the direction v = (dgens, dX), as plain arrays (not
    differentiable); its cost is about 2.5 times that of the product. For a layer
    with symmetric or shared parameters the tangent generators of a parameter
    direction dp are ``layer.generators(dp)`` (that map is linear).

    Parameters
    ----------
    gens : dict
        kind -> 1-D array of length ``layout.sizes[kind]`` (as for :func:`hss_apply`;
        boxes are unboxed).
    dgens : dict or None
        The tangent: kind -> 1-D array of the same length, float64 or float32 (one
        dtype, cast to the generators'). Keys other than the seven kinds are ignored. None
        means no change in the generators.
    X : (s, n) array_like
        A batch of s vectors as rows, in the caller's order.
    layout : HSSLayout
    transpose : bool
        Differentiate the product with Aᵀ instead.
    dX : (s, n) array_like or None
        Tangent of X; None means X is fixed (its products are skipped).

    Returns
    -------
    Y : (s, n) array
        As :func:`hss_apply` returns it.
    dY : (s, n) array
        The directional derivative, in the caller's order and the generators' dtype.
    """
    if not isinstance(layout, HSSLayout):
        raise TypeError(f"layout must be an HSSLayout, got {type(layout).__name__}")
    bufs = check_gens(gens, layout, unbox=True)
    dtype = onp.result_type(bufs["D"])
    X = _plain_batch(X, layout, "X")
    if dgens is None:
        dbufs = _tangent_buffers({}, layout, dtype)
    else:
        dbufs = _tangent_buffers(check_gens(dgens, layout, unbox=True, name="dgens"), layout, dtype)
    if dX is not None:
        dX = _plain_batch(dX, layout, "dX")
        if onp.shape(dX) != onp.shape(X):
            raise ValueError(f"dX must have the shape of X, {onp.shape(X)}, got shape {onp.shape(dX)}")
    bufs = {k: _readonly(bufs[k], dtype) for k in KINDS}
    Xt = _to_tree_order(X, layout, dtype)
    dXt = _no_tangent(Xt) if dX is None else _to_tree_order(dX, layout, dtype)
    Yt, dYt = _sweep(_tangent.forward_tangent, Xt, layout.tree.arrays, *_roles(layout, bufs, transpose),
                     *_tangent_roles(dbufs, transpose), Xt, dXt)
    return _to_caller_order(Yt, layout), _to_caller_order(dYt, layout)


class Linearization:
    """The product Y = X Aᵀ at fixed generators, with its JVPs and VJPs in the generators.

    For optimisers that take many Jacobian products at one point (Gauss-Newton,
    Levenberg-Marquardt): the forward sweep runs once, here; every
    :meth:`jvp` is then one tangent sweep reusing its x̂, ŷ
    (:func:`hssalg._kernels.tangent.tangent`) and every :meth:`vjp` one reverse
    sweep (:func:`hssalg._kernels.grad.backward`), without autograd's
    bookkeeping. X is data: no derivative with respect to it.

    Parameters
    ----------
    gens : dict
        kind -> 1-D array, as for :func:`hss_apply` (plain arrays).
    X : (s, n) array_like
        The batch, rows are vectors, caller's order.
    layout : HSSLayout
    diagonal : bool
        False: linearize the matrix *without* its diagonal blocks (``gens["D"]``
        is not read): Y = A_off X, the JVPs hold D fixed and :meth:`vjp` returns
        an empty "D". The leaf products with D, most of the leaf work, are
        skipped (for optimisers that solve for D separately, :mod:`hssalg_nn.lm`).

    Attributes
    ----------
    Y : (s, n) array
        The product, caller's order.
    """

    def __init__(self, gens, X, layout, diagonal=True):
        if not isinstance(layout, HSSLayout):
            raise TypeError(f"layout must be an HSSLayout, got {type(layout).__name__}")
        bufs = check_gens(gens, layout, unbox=True)
        self.dtype = onp.result_type(bufs["D"])
        self.layout = layout
        self.diagonal = bool(diagonal)
        self.gens = {k: _readonly(bufs[k], self.dtype) for k in KINDS}
        if not self.diagonal:
            self.gens["D"] = _readonly(onp.empty(0, self.dtype), self.dtype)
        self.Xt = _to_tree_order(_plain_batch(X, layout, "X"), layout, self.dtype)
        Yt, self.xt, self.yt = _sweep(_grad.forward, self.Xt, layout.tree.arrays,
                                      *_roles(layout, self.gens, False), self.Xt)
        self.Y = _to_caller_order(Yt, layout)

    def jvp(self, dgens):
        """dY (s, n) along the tangent generators ``dgens`` (dict kind -> 1-D array;
        without the diagonal, ``dgens["D"]`` is not read)."""
        dbufs = _tangent_buffers(check_gens(dgens, self.layout, unbox=True, name="dgens"), self.layout,
                                 self.dtype)
        if not self.diagonal:
            dbufs["D"] = self.gens["D"]
        dYt = _sweep(_tangent.tangent, self.Xt, self.layout.tree.arrays, *_roles(self.layout, self.gens, False),
                     *_tangent_roles(dbufs, False), self.Xt, self.xt, self.yt, _no_tangent(self.Xt))
        return _to_caller_order(dYt, self.layout)

    def vjp(self, G):
        """The gradient of <G, Y> with respect to the seven generator buffers (a dict;
        "D" is empty without the diagonal)."""
        G = _plain_batch(G, self.layout, "G")
        if onp.shape(G) != self.Xt.shape:
            raise ValueError(f"G must have the shape of Y, {self.Xt.shape}, got shape {onp.shape(G)}")
        Gt = _to_tree_order(G, self.layout, self.dtype)
        _, d_bin, d_tin, d_bout, d_tout, d_cab, d_cba, dD = _sweep(
            _grad.backward, self.Xt, self.layout.tree.arrays, *_roles(self.layout, self.gens, False), self.Xt,
            self.xt, self.yt, Gt, False)
        return dict(D=dD, V=d_bin, W=d_tin, U=d_bout, R=d_tout, B12=d_cab, B21=d_cba)


def _plain_batch(X, layout, name):
    """X unboxed as an array, checked to be an (s, n) batch of real numbers."""
    X = onp.asarray(getattr(X, "_value", X))
    shape = onp.shape(X)
    if len(shape) != 2 or shape[1] != layout.n:
        raise ValueError(f"{name} must be a batch of shape (s, {layout.n}) (one vector per row), got shape "
                         f"{shape}")
    kind = onp.result_type(X).kind
    if kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {onp.result_type(X)}")
    return X


# -- a permutation along the last axis ------------------------------------------------------

@primitive
def permute_last(x, idx, inv_idx):
    """``x[..., idx]`` for a permutation ``idx`` (with inverse ``inv_idx``).

    Differentiable in x; the VJP is the inverse gather, which is much faster
    than the scatter-add autograd uses for general fancy indexing.
    """
    return onp.take(x, idx, axis=-1)


defvjp(permute_last, lambda ans, x, idx, inv_idx: lambda g: onp.take(g, inv_idx, axis=-1))
# linear in x: the tangent is permuted alike
defjvp(permute_last, lambda g, ans, x, idx, inv_idx: onp.take(g, idx, axis=-1))


def inverse_permutation(idx):
    """The inverse of a permutation given as an int array."""
    inv = onp.empty_like(idx)
    inv[idx] = onp.arange(idx.size, dtype=idx.dtype)
    return inv
