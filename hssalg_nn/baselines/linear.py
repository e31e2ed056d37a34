"""Dense linear operators: a trainable one, and the minimum-norm least-squares fit.

With N training pairs (x_i, y_i) of a *linear* problem the best any linear
model can do from the data alone is to get A right on span{x_i}; the
minimum-norm solution ``A = Y^T (X^T)^+`` does exactly that and is zero on the
orthogonal complement. For smooth random-field inputs most of the energy of a
new input lies in the span of a few training inputs, so this plain operator is
a strong low-data baseline (issue 6 measured it well ahead of FNO on 2-D
Poisson at N = 10 and 20); it costs n^2 memory, which is what limits it.
"""

import numbers

import autograd.numpy as anp
import numpy as onp

from hssalg._validation import check_positive_int

from ._nn import Count, check_batch

__all__ = ["DenseLinear", "LinearOperatorModel", "least_squares_operator"]


class DenseLinear:
    """A trainable dense linear (or affine) map, ``Y = X A^T (+ b)``.

    Parameters
    ----------
    n : int >= 1
        Input size (columns of X).
    n_out : int >= 1, optional
        Output size; default n.
    bias : bool
        Add a trainable bias b (n_out,).
    init_scale : float >= 0
        ``A ~ N(0, init_scale^2 / n)`` at init. The default 0 starts from A = 0:
        gradient steps on a loss of ``X A^T`` then keep A in the row space of
        X, so plain gradient descent converges to the minimum-norm least-squares
        solution (Adam only approximately: its per-entry scaling leaves that
        space).

    Notes
    -----
    Parameters: ``{"A": (n_out, n)}`` and, with bias, ``"b": (n_out,)``.
    Memory and work O(n n_out): a dense operator on a 64^2 grid already holds
    16.8 million numbers.
    """

    def __init__(self, n, n_out=None, bias=False, init_scale=0.0):
        self.n_in = check_positive_int(n, "n")
        self.n_out = self.n_in if n_out is None else check_positive_int(n_out, "n_out")
        self.bias = bool(bias)
        if isinstance(init_scale, bool) or not isinstance(init_scale, numbers.Real) or not init_scale >= 0:
            raise ValueError(f"init_scale must be a number >= 0, got {init_scale!r}")
        self.init_scale = float(init_scale)

    @property
    def n(self):
        """Input size."""
        return self.n_in

    @property
    def n_params(self):
        """Number of trainable scalars (an int; ``n_params(params)`` counts a pytree)."""
        return Count(self.n_out * self.n_in + (self.n_out if self.bias else 0))

    def __repr__(self):
        return (f"{type(self).__name__}(n={self.n_in}, n_out={self.n_out}, bias={self.bias}, "
                f"n_params={int(self.n_params)})")

    def init(self, seed=0):
        """``{"A": ...}`` (and ``"b"``): see ``init_scale``."""
        rng = onp.random.default_rng(seed)
        A = rng.standard_normal((self.n_out, self.n_in)) * (self.init_scale / onp.sqrt(self.n_in))
        params = {"A": A}
        if self.bias:
            params["b"] = onp.zeros(self.n_out)
        return params

    def apply(self, params, X):
        """Y = X A^T (+ b).

        Parameters
        ----------
        params : dict from :meth:`init`
        X : (batch, n) array_like

        Returns
        -------
        Y : (batch, n_out) array
        """
        check_batch(X, self.n_in)
        Y = anp.dot(X, params["A"].T)
        if self.bias:
            Y = Y + params["b"]
        return Y

    __call__ = apply


class LinearOperatorModel(DenseLinear):
    """A dense linear model holding fitted parameters (what :func:`least_squares_operator` returns).

    ``init()`` returns (a copy of) the fitted parameters, so the model can be
    evaluated like any other (``model.apply(model.init(), X)``, or
    ``model.predict(X)``) and even fine-tuned by :func:`hssalg_nn.fit`.

    Attributes
    ----------
    A : (n_out, n) ndarray
        The operator.
    singular_values : (min(N, n),) ndarray
        Singular values of the training inputs X, descending.
    rank : int
        How many of them were inverted (above the cut-off).
    cutoff : float
        The absolute cut-off ``rcond * singular_values[0]``.
    """

    def __init__(self, A, singular_values=None, rank=None, cutoff=None):
        A = onp.array(A, dtype=onp.float64)
        if A.ndim != 2:
            raise ValueError(f"A must be a 2-D array, got shape {A.shape}")
        super().__init__(A.shape[1], A.shape[0], bias=False)
        self.A = A
        self.singular_values = singular_values
        self.rank = rank
        self.cutoff = cutoff

    @property
    def params(self):
        """The fitted parameters ``{"A": A}`` (the arrays themselves; do not modify)."""
        return {"A": self.A}

    def init(self, seed=0):
        """A copy of the fitted parameters (``seed`` is ignored)."""
        return {"A": self.A.copy()}

    def predict(self, X):
        """``X A^T`` for a batch X (batch, n)."""
        return self.apply(self.params, X)


def least_squares_operator(X, Y, rcond=None):
    """The minimum-norm linear operator with ``A x_i ~ y_i``: ``A = Y^T (X^T)^+``.

    Parameters
    ----------
    X : (N, n) array_like
        Training inputs, rows are samples.
    Y : (N, n_out) array_like
        Training outputs.
    rcond : float in [0, 1), optional
        Singular values of X below ``rcond * sigma_max`` are treated as zero.
        Default ``max(N, n) * eps`` (eps of float64): the size of the rounding
        errors of the SVD of X itself (its backward error is a modest multiple
        of ``eps ||X||_2``), the threshold of ``numpy.linalg.lstsq`` and
        ``matrix_rank``. Smaller singular values are indistinguishable from
        noise and inverting them would amplify rounding errors by up to
        ``1 / (rcond)``; larger values of rcond regularise (a truncated SVD
        fit), which can help when the inputs are noisy but loses accuracy on
        exactly linear data.

    Returns
    -------
    LinearOperatorModel
        ``A`` (n_out, n) with ``A X^T = Y^T`` on the span of the retained
        singular vectors of X and ``A v = 0`` for v orthogonal to the rows of
        X: the least-squares solution of least Frobenius norm. With N >= n
        and X of full rank it is the unique least-squares fit, so an exactly
        linear map is recovered.

    Notes
    -----
    Computed from the thin SVD ``X = U S V^T`` as ``A^T = V S^+ U^T Y``
    (O(N n min(N, n)) work), not from the normal equations, whose condition
    number is the square of that of X.
    """
    X = _as_matrix(X, "X")
    Y = _as_matrix(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} samples (rows) but Y has {Y.shape[0]}")
    N, n = X.shape
    if rcond is None:
        rcond = max(N, n) * onp.finfo(onp.float64).eps
    elif isinstance(rcond, bool) or not isinstance(rcond, numbers.Real) or not 0.0 <= rcond < 1.0:
        raise ValueError(f"rcond must be a number in [0, 1), got {rcond!r}")
    U, s, Vt = onp.linalg.svd(X, full_matrices=False)
    cutoff = float(rcond) * (s[0] if s.size else 0.0)
    r = int(onp.count_nonzero(s > cutoff))
    At = Vt[:r].T @ ((U[:, :r].T @ Y) / s[:r, None])           # (n, n_out)
    return LinearOperatorModel(At.T, singular_values=s, rank=r, cutoff=cutoff)


def _as_matrix(a, name):
    arr = onp.asarray(a)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(f"{name} must be a non-empty 2-D array (samples, features), got shape {arr.shape}")
    arr = arr.astype(onp.float64)
    if not onp.all(onp.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite entries (NaN or inf)")
    return arr
