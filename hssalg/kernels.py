"""Kernel functions on point sets, evaluated block by block.

A kernel object gives any block ``K(I, J)`` of the kernel matrix
``K[i, j] = k(x_i, x_j) + shift * [i == j]`` of a point set without forming
the rest, which is what :func:`hssalg.HSSMatrix.from_kernel` needs. The
built-in kernels are functions of the distance ``r = |x - y|`` (Euclidean,
points in 1, 2 or 3 dimensions) compiled with numba:

=========================== ========================================== =============
class                       k(x, y)                                    parameters
=========================== ========================================== =============
``Gaussian(h)``             exp(-r^2 / (2 h^2))                        h > 0
``Exponential(length)``     exp(-r / length)  (Matérn 1/2)             length > 0
``Matern(nu, length)``      nu = 1.5: (1 + a) exp(-a), a = sqrt(3) r/l  length > 0
                            nu = 2.5: (1 + a + a^2/3) exp(-a),
                            a = sqrt(5) r / l
``InverseMultiquadric(c)``  1 / sqrt(r^2 + c^2)                        c > 0
``Laplace()``               d = 1: -r;  d = 2: -log r;  d = 3: 1 / r   self_value
``CallableKernel(fn)``      any ``fn(X, Y) -> (p, q) block``           symmetric
=========================== ========================================== =============

Every kernel takes ``shift`` (default 0): ``shift * I`` is added to the
*matrix*, on the diagonal ``i == j`` only -- duplicate points at other indices
do not get it. ``Gaussian(0.1, shift=1.0)`` is the regularised kernel matrix
of kernel ridge regression and Gaussian processes.

The Laplace kernel (the free-space Green's function up to the constants
1/2, 1/(2 pi), 1/(4 pi)) is singular at r = 0 in 2-D and 3-D; there every pair
at distance 0 -- the diagonal, and pairs of duplicate points -- gets the value
``self_value`` (default 0, the usual choice of a collocation or N-body code
that drops self-interaction). In 1-D, -|x - y| is finite and
``self_value`` is not used.

Examples
--------
>>> import numpy as np
>>> from hssalg import kernels
>>> pts = np.random.default_rng(0).random((1000, 2))
>>> k = kernels.Gaussian(0.1, shift=1.0)
>>> k.block(pts, [0, 1, 2], [5, 6]).shape
(3, 2)
>>> k(pts[:3], pts[5:7]).shape        # the kernel function itself, no shift
(3, 2)
"""

import numbers

import numpy as np

from ._kernels import kernels as _ck
from ._validation import as_finite_array

__all__ = ["Kernel", "Gaussian", "Exponential", "Matern", "InverseMultiquadric", "Laplace",
           "CallableKernel", "as_kernel", "as_points"]


def as_points(points, name="points"):
    """Validate a point set and return it as a C-contiguous (n, d) float64 array.

    Parameters
    ----------
    points : (n,) or (n, d) array_like
        A 1-D array is n points on a line. ``n >= 1`` and ``d`` in 1, 2, 3.

    Raises
    ------
    ValueError
        For NaN or inf, no points, or a dimension other than 1, 2, 3.
    """
    pts = as_finite_array(points, name, ndim=(1, 2), dtype=np.float64)
    if pts.ndim == 1:
        pts = pts.reshape(-1, 1)
    if pts.shape[0] == 0:
        raise ValueError(f"{name} must contain at least one point, got shape {np.shape(points)}")
    if pts.shape[1] not in (1, 2, 3):
        raise ValueError(f"{name} must be points in 1, 2 or 3 dimensions, an (n, d) array with "
                         f"d = 1, 2, 3; got shape {pts.shape}")
    return pts


def _positive(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def _finite(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _indices(idx, n, name):
    a = np.asarray(idx)
    if a.dtype == bool:
        if a.shape != (n,):
            raise ValueError(f"{name} as a boolean mask must have shape ({n},), got {a.shape}")
        return np.flatnonzero(a)
    if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
        raise ValueError(f"{name} must be a 1-D array of integer indices, got shape {a.shape} "
                         f"and dtype {a.dtype}")
    a = a.astype(np.int64, copy=False)
    if a.size and (a.min() < -n or a.max() >= n):
        raise IndexError(f"{name} has indices outside 0..{n - 1}")
    return np.where(a < 0, a + n, a)


class Kernel:
    """Base class: a kernel function plus a diagonal shift.

    Subclasses implement :meth:`_eval` (the block of two point sets). Every
    public method validates its arguments and returns a new array.

    Attributes
    ----------
    shift : float
        Added to the matrix diagonal (``i == j``).
    symmetric : bool
        True when k(x, y) = k(y, x); :func:`~hssalg.HSSMatrix.from_kernel` then
        compresses rows and columns with one basis (half the work).
    """

    symmetric = True

    def __init__(self, shift=0.0):
        self.shift = _finite(shift, "shift")

    # -- the function ------------------------------------------------------------------

    def __call__(self, X, Y):
        """The block ``k(X_i, Y_j)`` of two point sets (no shift: no indices here).

        Parameters
        ----------
        X : (p, d) or (p,) array_like
        Y : (q, d) or (q,) array_like

        Returns
        -------
        K : (p, q) float64 ndarray
        """
        X = self._points(X, "X")
        Y = self._points(Y, "Y")
        if X.shape[1] != Y.shape[1]:
            raise ValueError(f"X has points in {X.shape[1]} dimensions but Y in {Y.shape[1]}")
        return self._eval(X, Y)

    def block(self, points, I, J):
        """The block ``K(I, J)`` of the kernel matrix of ``points``, shift included.

        Only the requested entries are evaluated.

        Parameters
        ----------
        points : (n, d) or (n,) array_like
        I, J : 1-D integer arrays (or boolean masks of length n)
            Row and column indices into ``points``.

        Returns
        -------
        K : (len(I), len(J)) float64 ndarray
        """
        pts = as_points(points)
        n = pts.shape[0]
        I = _indices(I, n, "I")
        J = _indices(J, n, "J")
        return self._block(pts, I, J)

    def matmat(self, points, X):
        """The exact product ``K @ X`` with the kernel matrix, never formed.

        Entries are evaluated on the fly, in blocks of rows of about a million
        entries (O(n^2) work, O(n + 10^6) extra memory), each multiplied by X
        with BLAS: the
        reference against which an HSS approximation is checked at sizes where
        the dense matrix does not fit in memory.

        Parameters
        ----------
        points : (n, d) or (n,) array_like
        X : (n,) or (n, s) array_like

        Returns
        -------
        Y : float64 ndarray, same shape as X
        """
        pts = as_points(points)
        n = pts.shape[0]
        Xb = np.asarray(X)
        if Xb.ndim not in (1, 2) or Xb.shape[0] != n:
            raise ValueError(f"X must have shape ({n},) or ({n}, s) for {n} points, got {Xb.shape}")
        was_vector = Xb.ndim == 1
        Xb = np.ascontiguousarray(Xb.reshape(n, -1), dtype=np.float64)
        if not np.all(np.isfinite(Xb)):
            raise ValueError("X contains non-finite entries (NaN or inf)")
        Y = self._matmat_rows(pts, np.arange(n), Xb)
        return Y[:, 0] if was_vector else Y

    def matrix(self, points):
        """The whole (n, n) kernel matrix, shift included: O(n^2) memory, for small n."""
        pts = as_points(points)
        idx = np.arange(pts.shape[0])
        return self._block(pts, idx, idx)

    # -- internal hooks (validated arrays) ----------------------------------------------

    @staticmethod
    def _points(X, name):
        return as_points(X, name)

    def _block(self, pts, I, J):
        """K(I, J) for validated (n, d) points and int64 index arrays."""
        K = self._eval(pts[I], pts[J])
        # most blocks of a build have disjoint I and J: a cheap test spares the (p, q) mask
        if self.shift != 0.0 and I.size and J.size and np.intersect1d(I, J).size:
            K = K + self.shift * (I[:, None] == J[None, :])
        return K

    def _matmat_rows(self, pts, rows, Omega):
        """(K Omega)[rows] for the whole kernel matrix, shift included.

        Row blocks of about a million entries (8 MB) are formed and multiplied
        by Omega with BLAS: faster than a fused scalar loop, which cannot use
        numpy's vectorised exp.
        """
        n = pts.shape[0]
        step = max(1, (1 << 20) // max(n, 1))
        out = np.empty((rows.size, Omega.shape[1]))
        for s0 in range(0, rows.size, step):
            r = rows[s0:s0 + step]
            out[s0:s0 + step] = self._eval(pts[r], pts) @ Omega
        if self.shift != 0.0:
            out += self.shift * Omega[rows]
        return out

    def _eval(self, X, Y):
        raise TypeError(f"{type(self).__name__} defines no kernel function: use a built-in kernel "
                        "or CallableKernel(fn)")

    def _describe(self):
        return ""

    def __repr__(self):
        extra = self._describe()
        sh = f"shift={self.shift:g}" if self.shift else ""
        args = ", ".join(a for a in (extra, sh) if a)
        return f"{type(self).__name__}({args})"


def _phi_inplace(kind, p0, p1, R2):
    """phi of squared distances, overwriting R2 (a fresh array of the caller's) and returning it.

    The same formulas as :func:`hssalg._kernels.kernels.phi`, with numpy's
    SIMD ufuncs: numba has no vectorised exp or log here, and the scalar ones
    made kernel evaluation a third of the build time. The transcendental
    functions may differ from the scalar ones in the last bit; all kernel
    entries go through this one function, so blocks stay consistent (and
    symmetric).
    """
    if kind == _ck.GAUSSIAN:
        np.multiply(R2, -p0, out=R2)
        return np.exp(R2, out=R2)
    if kind == _ck.IMQ:
        np.add(R2, p0, out=R2)
        np.sqrt(R2, out=R2)
        return np.divide(1.0, R2, out=R2)
    zero = (R2 == 0.0) if kind in (_ck.LAPLACE2, _ck.LAPLACE3) else None
    if kind == _ck.LAPLACE2:
        with np.errstate(divide="ignore"):
            np.log(R2, out=R2)
        np.multiply(R2, -0.5, out=R2)
    else:
        np.sqrt(R2, out=R2)                       # r
        if kind == _ck.LAPLACE1:
            np.negative(R2, out=R2)
        elif kind == _ck.LAPLACE3:
            with np.errstate(divide="ignore"):
                np.divide(1.0, R2, out=R2)
        else:
            np.multiply(R2, p0, out=R2)           # a = r p0
            if kind == _ck.EXPONENTIAL:
                np.negative(R2, out=R2)
                return np.exp(R2, out=R2)
            e = np.exp(-R2)
            if kind == _ck.MATERN32:
                np.add(R2, 1.0, out=R2)
            else:                                 # MATERN52: (1 + a) + a^2 / 3
                t = R2 * R2 / 3.0
                np.add(R2, 1.0, out=R2)
                R2 += t
            return np.multiply(R2, e, out=R2)
    if zero is not None and zero.any():
        R2[zero] = p1
    return R2


# kinds whose phi needs only sqrt and division: evaluated in one compiled pass (vectorised by the
# compiler; measured 3-D Laplace blocks at 1.5 instead of 7 ns per entry); the others need exp or
# log, which only numpy has in vector form here
_ALGEBRAIC = (_ck.IMQ, _ck.LAPLACE1, _ck.LAPLACE3)


class _DistanceKernel(Kernel):
    """A built-in kernel phi(|x - y|), evaluated by :mod:`hssalg._kernels.kernels`."""

    def _params(self, d):
        """``(kind, p0, p1)`` for points in ``d`` dimensions."""
        raise TypeError(f"{type(self).__name__} defines no kernel function")

    def _eval(self, X, Y):
        kind, p0, p1 = self._params(X.shape[1])
        X, Y = np.ascontiguousarray(X), np.ascontiguousarray(Y)
        if kind in _ALGEBRAIC:
            return _ck.algebraic_block(kind, p0, p1, X, Y)
        return _phi_inplace(kind, p0, p1, _ck.sqdist(X, Y))



class Gaussian(_DistanceKernel):
    """Gaussian (squared-exponential) kernel exp(-r^2 / (2 h^2)).

    Parameters
    ----------
    h : float > 0
        Bandwidth (length scale).
    shift : float
        Added to the matrix diagonal.
    """

    def __init__(self, h, shift=0.0):
        super().__init__(shift)
        self.h = _positive(h, "h")

    def _params(self, d):
        return _ck.GAUSSIAN, 1.0 / (2.0 * self.h * self.h), 0.0

    def _describe(self):
        return f"h={self.h:g}"


class Exponential(_DistanceKernel):
    """Exponential kernel exp(-r / length) (Matérn with nu = 1/2).

    Parameters
    ----------
    length : float > 0
    shift : float
    """

    def __init__(self, length, shift=0.0):
        super().__init__(shift)
        self.length = _positive(length, "length")

    def _params(self, d):
        return _ck.EXPONENTIAL, 1.0 / self.length, 0.0

    def _describe(self):
        return f"length={self.length:g}"


class Matern(_DistanceKernel):
    """Matérn kernel with smoothness nu = 3/2 or 5/2.

    nu = 1.5: (1 + a) exp(-a) with a = sqrt(3) r / length;
    nu = 2.5: (1 + a + a^2 / 3) exp(-a) with a = sqrt(5) r / length.
    (nu = 1/2 is :class:`Exponential`.)

    Parameters
    ----------
    nu : 1.5 or 2.5
    length : float > 0
    shift : float
    """

    def __init__(self, nu, length, shift=0.0):
        super().__init__(shift)
        nu = _positive(nu, "nu")
        if nu not in (1.5, 2.5):
            raise ValueError(f"nu must be 1.5 or 2.5 (use Exponential for 0.5), got {nu:g}")
        self.nu = nu
        self.length = _positive(length, "length")

    def _params(self, d):
        if self.nu == 1.5:
            return _ck.MATERN32, np.sqrt(3.0) / self.length, 0.0
        return _ck.MATERN52, np.sqrt(5.0) / self.length, 0.0

    def _describe(self):
        return f"nu={self.nu:g}, length={self.length:g}"


class InverseMultiquadric(_DistanceKernel):
    """Inverse multiquadric kernel 1 / sqrt(r^2 + c^2).

    Parameters
    ----------
    c : float > 0
    shift : float
    """

    def __init__(self, c, shift=0.0):
        super().__init__(shift)
        self.c = _positive(c, "c")

    def _params(self, d):
        return _ck.IMQ, self.c * self.c, 0.0

    def _describe(self):
        return f"c={self.c:g}"


class Laplace(_DistanceKernel):
    """Laplace kernel: -|x - y| in 1-D, -log|x - y| in 2-D, 1/|x - y| in 3-D.

    These are the free-space Green's functions of -Delta up to the constants
    1/2, 1/(2 pi) and 1/(4 pi), which are left to the user (a scale does not
    change the compression).

    Parameters
    ----------
    self_value : float
        Value at r = 0 in 2-D and 3-D, where the kernel is singular: the
        diagonal, and any pair of duplicate points. Default 0 (self-interaction
        dropped). Unused in 1-D, where -r is 0 at r = 0.
    shift : float
        Added to the diagonal (on top of ``self_value``).
    """

    def __init__(self, self_value=0.0, shift=0.0):
        super().__init__(shift)
        self.self_value = _finite(self_value, "self_value")

    def _params(self, d):
        kind = {1: _ck.LAPLACE1, 2: _ck.LAPLACE2, 3: _ck.LAPLACE3}[d]
        return kind, 0.0, self.self_value

    def _describe(self):
        return f"self_value={self.self_value:g}" if self.self_value else ""


class CallableKernel(Kernel):
    """A user-supplied kernel ``fn(X, Y) -> (p, q) block``.

    Parameters
    ----------
    fn : callable
        Called with two C-contiguous float64 arrays ``X`` (p, d) and ``Y`` (q, d)
        (``p`` or ``q`` may be 0) and returning the (p, q) block
        ``k(X_i, Y_j)``. A Python function (vectorised with numpy) or a numba
        ``@njit`` function both work. It must not modify its inputs.
    symmetric : bool
        Declare k(x, y) = k(y, x) to halve the work of ``from_kernel``.
        Default False (rows and columns are compressed separately, which is
        always correct).
    shift : float
        Added to the matrix diagonal.

    Notes
    -----
    Every block returned is checked for its shape and for non-finite entries:
    a kernel that is singular at r = 0 must handle that case itself.
    """

    def __init__(self, fn, symmetric=False, shift=0.0):
        if not callable(fn):
            raise TypeError(f"fn must be callable as fn(X, Y) -> block, got {type(fn).__name__}")
        super().__init__(shift)
        self.fn = fn
        self.symmetric = bool(symmetric)

    def _eval(self, X, Y):
        X = np.ascontiguousarray(X)
        Y = np.ascontiguousarray(Y)
        K = self.fn(X, Y)
        K = np.asarray(K)
        if K.shape != (X.shape[0], Y.shape[0]):
            raise ValueError(f"the kernel callable {getattr(self.fn, '__name__', self.fn)!r} returned a block "
                             f"of shape {K.shape} for X of shape {X.shape} and Y of shape {Y.shape}; "
                             f"expected ({X.shape[0]}, {Y.shape[0]})")
        return as_finite_array(K, "the block returned by the kernel callable", dtype=np.float64)

    def _describe(self):
        name = getattr(self.fn, "__name__", type(self.fn).__name__)
        return f"{name}, symmetric={self.symmetric}"


def as_kernel(kernel):
    """A :class:`Kernel` from a Kernel (returned as is) or a callable ``fn(X, Y)``.

    A plain callable becomes ``CallableKernel(fn)`` (not assumed symmetric).
    """
    if isinstance(kernel, Kernel):
        return kernel
    if callable(kernel):
        return CallableKernel(kernel)
    raise TypeError("kernel must be a hssalg.kernels.Kernel or a callable fn(X, Y) -> block, "
                    f"got {type(kernel).__name__}")
