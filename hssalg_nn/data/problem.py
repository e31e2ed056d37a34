"""The discrete problem behind a data set: solution map, adjoint, residual, inputs.

A :class:`Problem` owns one discretised PDE on one grid (factorisations are
computed once and cached on it); a :class:`~hssalg_nn.data.Dataset` holds
samples and a reference to its problem, so slices of a data set share the
operator and its factors.
"""

import numpy as np

from ._checks import check_real
from .grf import grf

__all__ = ["Problem", "INPUT_DEFAULTS"]

# Defaults of the Gaussian random field inputs of every pde (see grf.grf).
INPUT_DEFAULTS = {"alpha": 2.0, "tau": 3.0, "mean": 0.0}


class Problem:
    """Base class of a discretised PDE; subclasses fill in the hooks.

    Attributes set by subclasses
    ----------------------------
    pde : str
    dim, grid : int
    grid_shape : tuple of ints
        Shape of the box of grid points.
    mask : bool ndarray of grid_shape, or None
        True at the unknowns; None when every box point is an unknown.
    points : (n, dim) ndarray
        Coordinates of the unknowns in natural (C) order.
    linear : bool
    symmetric : bool
        For linear problems, whether the solution map is its own transpose.
    options : dict
        Every option with its effective value, input options included.
    """

    # Subclasses list their own options and defaults here.
    DEFAULTS = {}

    def __init__(self, pde, dim, grid, options):
        self.pde = pde
        self.dim = dim
        self.grid = grid
        self.options = dict(options)
        self.mask = None
        self.symmetric = False

    @property
    def n(self):
        """Number of unknowns."""
        return self.points.shape[0]

    # ---- hooks (blocks are validated (N, n) float64 arrays) ----------------
    def _solve(self, F):
        raise NotImplementedError

    def _solve_adjoint(self, G):
        raise NotImplementedError

    def _residual(self, U, F):
        raise NotImplementedError

    def describe(self):
        raise NotImplementedError

    # ---- inputs --------------------------------------------------------------
    def _box_fields(self, n_samples, seed):
        """GRF samples on the box grid, (N, prod grid_shape)."""
        o = self.options
        return grf(self.dim, self.grid, n_samples, seed,
                   alpha=o["alpha"], tau=o["tau"], mean=o["mean"])

    def inputs(self, n_samples, seed):
        """Input samples X, (n_samples, n): the GRF at the unknowns by default."""
        X = self._box_fields(n_samples, seed)
        if self.mask is not None:
            X = X[:, self.mask.ravel()]
        return X

    @staticmethod
    def _check_input_options(options):
        check_real(options["alpha"], "alpha")
        check_real(options["tau"], "tau", nonnegative=True)
        check_real(options["mean"], "mean")


def relative_rows(R, B):
    """Per-row ``||R_i|| / ||B_i||`` (with 0/0 = 0), (N,) float64."""
    num = np.linalg.norm(R, axis=1)
    den = np.linalg.norm(B, axis=1)
    out = np.zeros_like(num)
    nz = den > 0
    out[nz] = num[nz] / den[nz]
    out[~nz & (num > 0)] = np.inf
    return out
