"""The HSSMatrix container and its operator protocol.

An :class:`HSSMatrix` is immutable: generators live in seven flat read-only
buffers (see :mod:`hssalg._layout`) and every operation returns a new object.
The transpose is the same buffers with a flag flipped, so ``H.T`` costs O(1).
"""

import numbers

import numpy as np

from . import _interp, _layout
from ._kernels import matvec as _matvec
from ._validation import as_block

__all__ = ["HSSMatrix"]


def _frozen(a):
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


class HSSMatrix:
    """A square hierarchically semi-separable matrix on a :class:`ClusterTree`.

    Build one with :meth:`from_dense`, :meth:`from_generators` or a function
    of :mod:`hssalg.gallery`; the constructor is private.

    The matrix acts on vectors in the caller's (original) index order; the
    tree permutation is applied inside every product.

    Attributes
    ----------
    shape : (int, int)
    dtype : numpy dtype (float64 or float32)
    tree : ClusterTree
    ranks : (n_nodes,) int64 array
        HSS rank of every node: the larger of its row rank (columns of U_i)
        and column rank (columns of V_i); 0 for the root.
    row_ranks, col_ranks : (n_nodes,) int64 arrays
    max_rank : int
    nbytes : int
        Bytes of generator storage.
    storage : str
        How the generators are stored: ``"explicit"`` (every basis and
        transfer as a full block), ``"interpolative"`` or
        ``"interpolative-symmetric"`` (see :attr:`storage`).
    """

    __slots__ = ("_tree", "_kU", "_kV", "_bufs", "_offs", "_transposed", "_dtype", "_info", "_form")
    # numpy must hand `ndarray @ H` to __rmatmul__ instead of treating H as a 0-d object
    __array_ufunc__ = None

    def __init__(self, tree, kU, kV, buffers, transposed=False, _offsets=None, _form="explicit"):
        # private: buffers must already match the layout; public builders validate
        self._tree = tree
        self._form = _form
        self._kU = _frozen(np.asarray(kU, dtype=np.int64))
        self._kV = _frozen(np.asarray(kV, dtype=np.int64))
        if _offsets is None:
            _offsets = (_layout.offsets(tree, self._kU, self._kV) if _form == "explicit" else
                        _layout.interp_offsets(tree, self._kU, self._kV, self._symmetric_form))
        self._offs = _offsets
        for off in self._offs.values():
            off.setflags(write=False)
        kinds = _layout.KINDS if _form == "explicit" else _layout.INTERP_KINDS
        self._bufs = {kind: _frozen(buffers[kind]) for kind in kinds}
        self._dtype = self._bufs["D"].dtype
        self._transposed = bool(transposed)
        self._info = None

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_generators(cls, tree, D, U, V, R=None, W=None, B12=None, B21=None, dtype=None):
        """Assemble an HSS matrix from per-node generators.

        Parameters
        ----------
        tree : ClusterTree
        D, U, V : sequences of length ``tree.n_nodes``
            ``D[i]`` (m_i, m_i), ``U[i]`` (m_i, kU_i) and ``V[i]`` (m_i, kV_i) for
            every leaf i; entries of inner nodes are ignored (use None).
        R, W : sequences of length ``tree.n_nodes``
            ``R[i]`` (kU_i, kU_parent) and ``W[i]`` (kV_i, kV_parent) for every
            node whose parent is not the root; entries of the root and of its
            children are ignored (None). May be None for a single-leaf tree.
        B12, B21 : sequences of length ``tree.n_nodes``
            For every inner node i with children a, b: ``B12[i]`` (kU_a, kV_b) and
            ``B21[i]`` (kU_b, kV_a), so that A(a, b) = U_a B12 V_b^T. May be None
            for a single-leaf tree.
        dtype : float64 or float32, optional
            Default: float64 unless every generator is float32.

        Returns
        -------
        HSSMatrix

        Notes
        -----
        The ranks of inner nodes are read from R and W (their row count), the
        ranks of leaves from U and V; every other shape is checked against them.
        """
        from .construct import from_generators
        return from_generators(tree, D, U, V, R, W, B12, B21, dtype=dtype)

    @classmethod
    def from_dense(cls, A, tree=None, leaf_size=64, rtol=1e-10, atol=0.0, max_rank=None, progress=False):
        """Compress a dense square matrix (Xia, Chandrasekaran, Gu, Li 2010).

        See :func:`hssalg.construct.from_dense` for the parameters.
        """
        from .construct import from_dense
        return from_dense(A, tree=tree, leaf_size=leaf_size, rtol=rtol, atol=atol,
                          max_rank=max_rank, progress=progress)

    @classmethod
    def from_kernel(cls, kernel, points, leaf_size=64, rtol=1e-8, atol=0.0, max_rank=None, seed=0,
                    progress=False, n_probes=8, max_error_rows=1024, recompress=False,
                    basis="interpolative"):
        """Compress a kernel matrix on a point set in near-linear time, never forming it.

        Recursive skeletonisation with proxy points on the geometric tree of the
        points; see :func:`hssalg.construct.from_kernel` for the parameters. The
        a-posteriori error estimate is ``H.info.error_estimate``.
        """
        from .construct import from_kernel
        return from_kernel(kernel, points, leaf_size=leaf_size, rtol=rtol, atol=atol,
                           max_rank=max_rank, seed=seed, progress=progress, n_probes=n_probes,
                           max_error_rows=max_error_rows, recompress=recompress, basis=basis)

    @classmethod
    def from_matvec(cls, matvec, rmatvec, tree, rank=None, rtol=1e-8, seed=0, symmetric=False,
                    max_rank=None, oversampling=10, n_probes=8, max_samples=None):
        """Compress a matrix known only through products with A and A^T.

        Black-box randomised compression of Levitt and Martinsson (SISC 2024): one
        sketch of O(k) columns serves every level, no entry of A is read. See
        :func:`hssalg.construct.from_matvec` for the parameters. The number of
        products used and an a-posteriori error estimate are in ``H.info``.
        """
        from .construct import from_matvec
        return from_matvec(matvec, rmatvec, tree, rank=rank, rtol=rtol, seed=seed, symmetric=symmetric,
                           max_rank=max_rank, oversampling=oversampling, n_probes=n_probes,
                           max_samples=max_samples)

    def _with_info(self, info):
        """The same matrix (shared buffers) carrying a record of how it was built."""
        out = HSSMatrix(self._tree, self._kU, self._kV, self._bufs, transposed=self._transposed,
                        _offsets=self._offs, _form=self._form)
        out._info = info
        return out

    # -- attributes ---------------------------------------------------------------

    @property
    def info(self):
        """How the matrix was built, for the builders that measure it, else None.

        ``from_kernel`` records the a-posteriori error estimate, kernel evaluations
        and timings (:class:`hssalg.construct.KernelInfo`); ``from_matvec`` the
        number of products and an error estimate (:class:`hssalg.construct.MatvecInfo`).
        Operations that return new matrices (transpose, arithmetic) do not carry it over.
        """
        return self._info

    @property
    def shape(self):
        n = self._tree.n
        return (n, n)

    @property
    def dtype(self):
        return self._dtype

    @property
    def tree(self):
        return self._tree

    @property
    def row_ranks(self):
        """(n_nodes,) columns of each node's (nested) row basis U_i."""
        return self._kV if self._transposed else self._kU

    @property
    def col_ranks(self):
        """(n_nodes,) columns of each node's (nested) column basis V_i."""
        return self._kU if self._transposed else self._kV

    @property
    def ranks(self):
        """(n_nodes,) HSS rank of each node, max(row rank, column rank)."""
        return np.maximum(self._kU, self._kV)

    @property
    def max_rank(self):
        """Largest HSS rank over all nodes (0 for a block-diagonal matrix)."""
        return int(self.ranks.max()) if self._kU.size else 0

    @property
    def nbytes(self):
        """Bytes held by the generators (excluding the tree); a buffer shared by two kinds counts once."""
        # from_kernel shares U / V and R / W between kinds for symmetric kernels
        unique = {id(b): b for b in self._bufs.values()}
        return int(sum(b.nbytes for b in unique.values()))

    @property
    def storage(self):
        """How the generators are stored.

        - ``"explicit"``: every leaf basis U_i, V_i and transfer R_i, W_i as a
          full block (what :meth:`from_generators`, :meth:`from_dense`,
          :meth:`from_matvec`, the transpose of an explicit matrix and the
          arithmetic return).
        - ``"interpolative"``: the bases of :meth:`from_kernel`, kept as the
          interpolation matrices ``P_i = Pi_i [I; T_i]`` that recursive
          skeletonisation finds, storing only T_i and a row order (about half
          the memory of the bases; STRUMPACK and H2Pack store them so too).
        - ``"interpolative-symmetric"``: the same for a symmetric kernel, with
          U = V, R = W, B21 = B12^T and symmetric D_i stored once (the lower
          triangles).

        Products use any form directly; the other operations read the
        explicit form, materialised for the call (:meth:`generator_buffers`).
        :meth:`to_interpolative` and :meth:`to_explicit` convert, and
        :meth:`recompress` keeps the form.
        """
        return self._form

    @property
    def _symmetric_form(self):
        return self._form == "interpolative-symmetric"

    @property
    def ndim(self):
        return 2

    @property
    def size(self):
        n = self._tree.n
        return n * n

    def __repr__(self):
        n = self._tree.n
        return (f"HSSMatrix(shape=({n}, {n}), dtype={self._dtype}, depth={self._tree.depth}, "
                f"leaf_size={self._tree.leaf_size}, max_rank={self.max_rank}, storage={self._form}, "
                f"{self.nbytes / 2**20:.2f} MiB vs {n * n * self._dtype.itemsize / 2**20:.2f} MiB dense)")

    # -- generators -------------------------------------------------------------------

    def generator_buffers(self):
        """The flat generator buffers and offsets of this matrix, as stored.

        Returns
        -------
        bufs, offs : dict
            kind -> read-only 1-D array, and kind -> (n_nodes + 1,) int64 offsets,
            kinds ``"D", "U", "V", "R", "W", "B12", "B21"``. For a transposed
            matrix (``H.T``) these are materialised in transposed form (a copy of
            the same size as the generators, never a dense matrix), and for a
            matrix in interpolative storage (:attr:`storage`) in explicit form
            (new buffers of the explicit size: U_i = P_i of each leaf, R_a, R_b
            the row blocks of each inner node's P_i; not orthonormal).
        """
        if self._form != "explicit":
            return self._explicit().generator_buffers()
        if not self._transposed:
            return dict(self._bufs), dict(self._offs)
        bufs, offs = self._bufs, self._offs
        shapes = _layout.block_shapes(self._tree, self._kU, self._kV)
        out = {
            "U": bufs["V"], "V": bufs["U"], "R": bufs["W"], "W": bufs["R"],
            "D": _transpose_blocks(bufs["D"], offs["D"], *shapes["D"]),
            "B12": _transpose_blocks(bufs["B21"], offs["B21"], *shapes["B21"]),
            "B21": _transpose_blocks(bufs["B12"], offs["B12"], *shapes["B12"]),
        }
        new_offs = _layout.offsets(self._tree, self._kV, self._kU)
        return out, new_offs

    def generators(self):
        """Per-node generators as read-only views.

        Returns
        -------
        dict
            kind -> list of length ``tree.n_nodes``: the (rows, cols) block of
            each node that has one, None elsewhere. Suitable for
            :meth:`from_generators`.
        """
        bufs, offs = self.generator_buffers()
        kU, kV = self.row_ranks, self.col_ranks
        shapes = _layout.block_shapes(self._tree, kU, kV)
        has = {
            "D": self._tree.is_leaf, "U": self._tree.is_leaf & (self._tree.parent >= 0),
            "V": self._tree.is_leaf & (self._tree.parent >= 0),
            "R": self._tree.parent > 0, "W": self._tree.parent > 0,
            "B12": ~self._tree.is_leaf, "B21": ~self._tree.is_leaf,
        }
        # children of the root carry zero-size R, W; they are reported as None
        out = {}
        for kind in _layout.KINDS:
            rows, cols = shapes[kind]
            buf, off = bufs[kind], offs[kind]
            out[kind] = [buf[off[i]:off[i + 1]].reshape(rows[i], cols[i]) if has[kind][i] else None
                         for i in range(self._tree.n_nodes)]
        return out

    # -- storage forms ----------------------------------------------------------------

    def to_interpolative(self):
        """The same matrix in interpolative storage (:attr:`storage`), itself if it already is.

        Every nested basis is rewritten as ``U_i = P_i S_i`` with
        ``P_i = Pi_i [I; T_i]``: the skeleton rows are the pivots of a
        column-pivoted QR of the basis (of ``[S_a R_a; S_b R_b]`` above the
        leaves), and the factors S move into the couplings
        (``B12 <- S_a B12 S_b^T``). The matrix is unchanged up to rounding;
        a basis that is numerically rank-deficient (pivots below
        ``max(rows, cols) * eps`` times the largest) loses the dependent
        columns, so ranks never grow. A matrix whose generators are exactly
        symmetric (U = V, R = W, B21 = B12^T, D = D^T) gets the symmetric form.

        Costs O(n k^2) time; the result typically needs half the memory of
        orthonormal bases and its products are faster
        (docs/benchmarks.md, ``bench_storage``).

        Returns
        -------
        HSSMatrix
        """
        if self._form != "explicit":
            return self
        g = self.generators()
        symmetric = _interp.is_exactly_symmetric(g)
        kU, kV, ibufs, ioffs = _interp.from_explicit(self._tree, g, symmetric)
        form = "interpolative-symmetric" if symmetric else "interpolative"
        return HSSMatrix(self._tree, kU, kV, ibufs, _offsets=ioffs, _form=form)

    def to_explicit(self):
        """The same matrix in explicit storage (new buffers), itself if it already is.

        For a matrix from :meth:`from_kernel` or :meth:`to_interpolative` the
        bases are the interpolation matrices written out in full (not
        orthonormal; :meth:`recompress` gives orthonormal ones).
        """
        return self._explicit()

    def _interp_buffers(self):
        """Buffers of the interpolative form of the matrix as it acts (``H.T`` transposed: new buffers).

        Only for a matrix in interpolative storage; the row and column ranks
        are ``row_ranks``, ``col_ranks``.
        """
        if self._form == "explicit":
            raise ValueError("the matrix is in explicit storage: it has no interpolative buffers")
        if not self._transposed or self._symmetric_form:
            return dict(self._bufs)
        b, o = self._bufs, self._offs
        shapes = _layout.interp_block_shapes(self._tree, self._kU, self._kV, False)
        # (A^T)(a, b) = V_a B21^T U_b^T: the sides swap, D and the couplings are transposed
        return {"TU": b["TV"], "pU": b["pV"], "TV": b["TU"], "pV": b["pU"],
                "D": _transpose_blocks(b["D"], o["D"], *shapes["D"]),
                "B12": _transpose_blocks(b["B21"], o["B21"], *shapes["B21"]),
                "B21": _transpose_blocks(b["B12"], o["B12"], *shapes["B12"])}

    def _explicit(self):
        """The same matrix in explicit storage (new buffers; self if it already is)."""
        if self._form == "explicit":
            return self
        bufs = _interp.to_explicit(self._tree, self._kU, self._kV, self._bufs, self._offs, self._symmetric_form)
        return HSSMatrix(self._tree, self._kU, self._kV, bufs, transposed=self._transposed)

    # -- products -------------------------------------------------------------------

    def _apply(self, X, transpose):
        """Y = op(A) X with X (n, s) C-contiguous in tree order."""
        if self._form != "explicit":
            return _interp.apply(self._tree, self._kU, self._kV, self._bufs, self._offs,
                                 self._symmetric_form, transpose != self._transposed, X)
        b, o = self._bufs, self._offs
        threads = _matvec.threads_for(*X.shape)
        if transpose == self._transposed:
            # A @ X with the stored orientation: columns compressed by (V, W)
            return _matvec.run_parallel(_matvec.apply, threads, self._tree.arrays, self._kV, self._kU,
                                        b["V"], o["V"], b["W"], o["W"], b["U"], o["U"], b["R"], o["R"],
                                        b["B12"], o["B12"], b["B21"], o["B21"], False,
                                        b["D"], o["D"], False, X)
        return _matvec.run_parallel(_matvec.apply, threads, self._tree.arrays, self._kU, self._kV,
                                    b["U"], o["U"], b["R"], o["R"], b["V"], o["V"], b["W"], o["W"],
                                    b["B21"], o["B21"], b["B12"], o["B12"], True,
                                    b["D"], o["D"], True, X)

    def _product(self, x, transpose, name):
        n = self._tree.n
        X, was_vector = as_block(x, n, self._dtype, name=name)
        if self._tree.has_identity_perm:
            Y = self._apply(X, transpose)
        else:
            Y = self._apply(np.take(X, self._tree.perm, axis=0), transpose)
            Y = np.take(Y, self._tree.iperm, axis=0)
        return Y[:, 0] if was_vector else Y

    def matvec(self, x):
        """Return A @ x.

        Parameters
        ----------
        x : (n,) or (n, s) array_like
            Right-hand side(s) in the caller's index order; converted to the
            matrix dtype.

        Returns
        -------
        y : ndarray, same shape as x
        """
        return self._product(x, False, "x")

    def rmatvec(self, x):
        """Return A.T @ x (the adjoint product; real arithmetic).

        Parameters
        ----------
        x : (n,) or (n, s) array_like

        Returns
        -------
        y : ndarray, same shape as x
        """
        return self._product(x, True, "x")

    def matmat(self, X):
        """Return A @ X for a block X of shape (n, s)."""
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"X must be a 2-D block (n, s), got shape {X.shape}")
        return self._product(X, False, "X")

    def __matmul__(self, other):
        if isinstance(other, HSSMatrix):
            from .arithmetic import multiply
            return multiply(self, other)
        return self._product(other, False, "x")

    def __rmatmul__(self, other):
        # X @ A = (A^T X^T)^T for a dense X of shape (s, n) or a vector (n,)
        if isinstance(other, HSSMatrix):
            return NotImplemented
        X = np.asarray(other)
        if X.ndim == 1:
            return self._product(X, True, "x")
        if X.ndim != 2:
            raise ValueError(f"the left factor must be a vector (n,) or a block (s, n), got shape {X.shape}")
        if X.shape[1] != self._tree.n:
            raise ValueError(f"the left factor has {X.shape[1]} columns but the matrix has {self._tree.n} rows")
        return self._product(X.T, True, "x").T

    # -- algebra (hssalg.arithmetic) and solvers (hssalg.ulv) -------------------------

    def __add__(self, other):
        if not isinstance(other, HSSMatrix):
            return NotImplemented
        from .arithmetic import add
        return add(self, other)

    def __sub__(self, other):
        if not isinstance(other, HSSMatrix):
            return NotImplemented
        from .arithmetic import subtract
        return subtract(self, other)

    def __mul__(self, alpha):
        if not isinstance(alpha, numbers.Real) or isinstance(alpha, bool):
            return NotImplemented
        from .arithmetic import scale
        return scale(self, alpha)

    __rmul__ = __mul__

    def __truediv__(self, alpha):
        if not isinstance(alpha, numbers.Real) or isinstance(alpha, bool):
            return NotImplemented
        if alpha == 0:
            raise ZeroDivisionError("cannot divide an HSSMatrix by zero")
        from .arithmetic import scale
        return scale(self, 1.0 / alpha)

    def __neg__(self):
        from .arithmetic import scale
        return scale(self, -1.0)

    def __pos__(self):
        return self

    def shift(self, sigma):
        """Return A + sigma I (only the leaf blocks D change; ranks are unchanged)."""
        from .arithmetic import shift
        return shift(self, sigma)

    def recompress(self, rtol=1e-10, atol=0.0, max_rank=None):
        """Return the same matrix with orthonormal bases truncated at the tolerances.

        Ranks never grow, and recompressing the result again changes nothing; see
        :func:`hssalg.arithmetic.recompress` for the algorithm and the error bound.
        """
        from .arithmetic import recompress
        return recompress(self, rtol=rtol, atol=atol, max_rank=max_rank)

    def factorize(self, spd=False):
        """Stored ULV factorisation, reusable for many solves, with ``logdet``.

        ``spd=True`` gives the generalised Cholesky variant for symmetric positive
        definite matrices. See :func:`hssalg.ulv.factorize`.
        """
        from .ulv import factorize
        return factorize(self, spd=spd)

    def solve(self, b, transpose=False, spd=False):
        """Solve A x = b (or A^T x = b) by factorising A; keep ``factorize()`` to solve again."""
        return self.factorize(spd=spd).solve(b, transpose=transpose)

    def aslinearoperator(self):
        """This matrix as a :class:`scipy.sparse.linalg.LinearOperator` (products only)."""
        from scipy.sparse.linalg import LinearOperator
        return LinearOperator(self.shape, matvec=self.matvec, rmatvec=self.rmatvec,
                              matmat=self.matvec, rmatmat=self.rmatvec, dtype=self._dtype)

    @property
    def T(self):
        """The transpose, sharing this matrix's buffers (O(1), no copy)."""
        return HSSMatrix(self._tree, self._kU, self._kV, self._bufs,
                         transposed=not self._transposed, _offsets=self._offs, _form=self._form)

    def transpose(self):
        """Same as :attr:`T`."""
        return self.T

    # -- dense views ---------------------------------------------------------------

    def todense(self):
        """The full matrix as an ndarray, in the caller's index order.

        Costs O(n^2) memory and O(n^2 (m + k)) time: meant for tests and small n.

        Returns
        -------
        A : (n, n) ndarray
        """
        n = self._tree.n
        A = self._apply(np.eye(n, dtype=self._dtype), False)
        iperm = self._tree.iperm
        return np.ascontiguousarray(A[np.ix_(iperm, iperm)])

    toarray = todense

    def diagonal(self):
        """The diagonal in the caller's order, from the leaf blocks D_i only.

        Returns
        -------
        d : (n,) ndarray
        """
        d = _interp.diagonal(self._tree, self._bufs, self._offs, self._symmetric_form)
        return d[self._tree.iperm]


def _transpose_blocks(buf, off, rows, cols):
    """Copy of a flat buffer with every node's block transposed."""
    out = np.empty_like(buf)
    for i in np.flatnonzero(rows * cols):
        out[off[i]:off[i + 1]] = buf[off[i]:off[i + 1]].reshape(rows[i], cols[i]).T.ravel()
    return out
