"""The HSS oracle: the true discrete solution operator of a linear PDE, compressed to HSS form.

For a linear problem the solution operator S (u = S f) is known through its
solver. :func:`hss_oracle` compresses S to near machine precision, black-box
from products with S and S^T (:meth:`hssalg.HSSMatrix.from_matvec`), and then
truncates that representation to the requested rank
(:meth:`hssalg.HSSMatrix.recompress`): an estimate of the best error an HSS
model of that rank on that tree can reach, without any training data. Wrapped
as a model, its test error is measured exactly like that of the trained models.

Why build-then-truncate: a randomised sketch at a fixed rank k is accurate only
when the singular values beyond k are negligible. For the 2-D Poisson operator
on a 64^2 grid (leaf size 64) the fixed-rank sketch gave test errors 5.7e-3,
1.3e-2 at ranks 32, 8, against 5.4e-5, 3.7e-3 for the truncation of the
converged compression -- the latter equals the error of truncating the dense
operator (``HSSMatrix.from_dense(..., max_rank=k)``) to two digits.
"""

import numpy as onp

from hssalg._validation import check_positive_int, check_tolerance
from hssalg.matrix import HSSMatrix
from hssalg.tree import ClusterTree

from ._nn import Count, check_batch

__all__ = ["HSSOracle", "hss_oracle", "dataset_oracle"]


class HSSOracle:
    """A fixed HSS matrix with the model protocol (nothing to train).

    Parameters
    ----------
    H : hssalg.HSSMatrix
        The operator; inputs and outputs in its caller (original) order.
    H_full : hssalg.HSSMatrix, optional
        The untruncated compression H was derived from (default H itself);
        :meth:`at_rank` truncates it.

    Notes
    -----
    ``init()`` returns ``{}`` and ``apply(params, X)`` ignores ``params``:
    ``Y = X H^T``, i.e. row i of Y is ``H x_i``. It is evaluated with plain
    numpy, so it cannot be differentiated (there is nothing to train).
    ``n_params`` is the number of stored generator entries, the size of the
    equivalent trained HSS model.
    """

    def __init__(self, H, H_full=None):
        if not isinstance(H, HSSMatrix):
            raise TypeError(f"H must be a hssalg.HSSMatrix, got {type(H).__name__}")
        if H_full is not None and not isinstance(H_full, HSSMatrix):
            raise TypeError(f"H_full must be a hssalg.HSSMatrix or None, got {type(H_full).__name__}")
        self.H = H
        self.H_full = H if H_full is None else H_full

    @property
    def n(self):
        return self.H.shape[1]

    @property
    def tree(self):
        return self.H.tree

    @property
    def n_params(self):
        """Stored generator entries of H (an int; ``n_params(params)`` counts a pytree)."""
        return Count(self.H.nbytes // self.H.dtype.itemsize)

    def __repr__(self):
        return f"HSSOracle(n={self.n}, max_rank={self.H.max_rank}, n_params={int(self.n_params)})"

    def at_rank(self, rank):
        """The oracle truncated to HSS rank ``rank`` (from the converged compression).

        Parameters
        ----------
        rank : int >= 0

        Returns
        -------
        HSSOracle
            Its ``H`` is ``H_full.recompress(rtol=0, max_rank=rank)``; ``H_full``
            is shared, so one expensive compression serves every rank.
        """
        rank = check_positive_int(rank, "rank", minimum=0)
        return HSSOracle(self.H_full.recompress(rtol=0.0, max_rank=rank), H_full=self.H_full)

    def init(self, seed=0):
        """No parameters: ``{}``."""
        return {}

    def apply(self, params, X):
        """``X H^T``: the oracle's prediction for a batch.

        Parameters
        ----------
        params : ignored (``{}``)
        X : (batch, n) array_like, rows are samples in the caller's order

        Returns
        -------
        Y : (batch, n) ndarray
        """
        check_batch(X, self.n)
        return onp.asarray(self.H.matvec(onp.asarray(X, dtype=onp.float64).T)).T

    __call__ = apply


def hss_oracle(solve, tree, rank=None, rtol=None, solve_adjoint=None, symmetric=False, seed=0):
    """Compress the solution operator of a linear problem into an HSS matrix.

    Parameters
    ----------
    solve : callable
        ``solve(F) -> U``: the exact discrete solutions U (N, n) of a batch of
        right-hand sides F (N, n), rows are samples in the natural order of
        the unknowns (the order of ``tree``'s original indices).
    tree : hssalg.ClusterTree
        Tree on the n unknowns (e.g. ``ClusterTree.from_points(points)``);
        its permutation is applied inside the compression, the oracle takes
        and returns the natural order.
    rank : int >= 0, optional
        Truncate to this HSS rank (every node rank at most ``rank``). Default
        None: the converged compression itself.
    rtol : float in (0, 1], optional
        Relative Frobenius tolerance of the black-box compression of S that is
        then truncated; default 1e-10 (near exact, so that the truncation error
        is all that remains). The sketch grows until the randomised error
        estimate meets it.
    solve_adjoint : callable, optional
        ``solve_adjoint(G)``: solutions of the adjoint problem, the same
        conventions (rows of G are right-hand sides): products with S^T.
        Required unless ``symmetric``.
    symmetric : bool
        The operator is symmetric (self-adjoint PDE with a symmetric
        discretisation, e.g. Poisson with the 5-point stencil): only ``solve``
        is called, half the solves, and the result is exactly symmetric.
    seed : int
        Seed of the random sketch.

    Returns
    -------
    HSSOracle
        ``.H`` the truncated HSSMatrix, ``.H_full`` the converged compression
        (``H_full.info`` records the number of solves and an a-posteriori
        error estimate); ``oracle.at_rank(r)`` truncates again at another rank
        without new solves.

    Notes
    -----
    Cost: ``max(m, 2k) + k`` solves and O(n s^2) work for the compression, k
    the numerical rank of S at ``rtol`` and m the leaf size (for 2-D Poisson
    on 64^2 points and leaf size 64: 232 solves, under 2 s), plus the
    truncation; S is never formed. The truncation is the standard HSS
    recompression (truncated SVDs of the nested bases, bottom-up), near but not
    exactly optimal among HSS matrices of that rank.
    """
    if not callable(solve):
        raise TypeError(f"solve must be a callable solve(F) -> U, got {type(solve).__name__}")
    if not isinstance(tree, ClusterTree):
        raise TypeError(f"tree must be a hssalg.ClusterTree, got {type(tree).__name__}")
    symmetric = bool(symmetric)
    if solve_adjoint is None and not symmetric:
        raise ValueError("hss_oracle needs solve_adjoint (solutions of the adjoint problem) unless "
                         "symmetric=True")
    if solve_adjoint is not None and not callable(solve_adjoint):
        raise TypeError(f"solve_adjoint must be a callable or None, got {type(solve_adjoint).__name__}")
    if rank is not None:
        rank = check_positive_int(rank, "rank", minimum=0)
    if rtol is not None:
        rtol = check_tolerance(rtol, "rtol", allow_zero=False)

    def matvec(F):             # (n, s) columns -> S @ F: the solver works on rows
        return onp.asarray(solve(onp.ascontiguousarray(F.T))).T

    def rmatvec(G):            # S^T @ G through the adjoint solver
        return onp.asarray(solve_adjoint(onp.ascontiguousarray(G.T))).T

    adjoint = None if symmetric else rmatvec
    H_full = HSSMatrix.from_matvec(matvec, adjoint, tree, rtol=1e-10 if rtol is None else rtol, seed=seed,
                                   symmetric=symmetric)
    oracle = HSSOracle(H_full)
    return oracle if rank is None else oracle.at_rank(rank)


def dataset_oracle(dataset, rank=None, leaf_size=64, rtol=None, seed=0):
    """:func:`hss_oracle` of a linear data set's solution operator (a :class:`hssalg_nn.data.Dataset`).

    Parameters
    ----------
    dataset : object
        With ``solve``, ``solve_adjoint``, ``tree(leaf_size)``, ``linear`` and
        optionally ``problem.symmetric`` (then only ``solve`` is called).
    rank, rtol, seed
        As in :func:`hss_oracle`.
    leaf_size : int
        Leaf size of the geometric tree of the data set's points.

    Returns
    -------
    HSSOracle
    """
    if not getattr(dataset, "linear", False):
        raise ValueError("dataset_oracle needs a linear problem (dataset.linear is True); "
                         f"got {getattr(dataset, 'pde', type(dataset).__name__)!r}, which is not linear")
    symmetric = bool(getattr(getattr(dataset, "problem", None), "symmetric", False))
    return hss_oracle(dataset.solve, dataset.tree(leaf_size=leaf_size), rank=rank, rtol=rtol,
                      solve_adjoint=None if symmetric else dataset.solve_adjoint, symmetric=symmetric, seed=seed)
