"""Constant-coefficient problems on the unit box with Dirichlet conditions, solved by DST-I.

All three are ``(s I + b (-Delta_h)) u = c f`` with ``-Delta_h`` the standard
second-order (2d+1)-point finite-difference Laplacian on the interior grid
``x_j = (j + 1) h``, ``h = 1 / (grid + 1)``, and ``u = 0`` on the boundary:

* poisson   : s = 0,        b = 1,  c = rhs_scale (default d pi^2)
* helmholtz : s = -kappa^2, b = 1,  c = rhs_scale (default d pi^2 - kappa^2)
* heat      : s = 1,        b = dt, c = 1 (one implicit Euler step of u_t = Delta u)

The type-I sine transform diagonalises ``-Delta_h`` (eigenvalues
``sum_a (4/h^2) sin^2(k_a pi h / 2)``), so a solve costs O(n log n) per sample
and never forms a matrix: a 64^3 grid takes well under a second per sample.
The right-hand-side scale c is the smallest eigenvalue of the *continuous*
operator, so the solution map has norm close to one and Y is O(1) like X.
"""

import numpy as np

from ._checks import check_real
from .grids import (axis_coordinates, box_points, dirichlet_symbol, neg_laplacian_stencil,
                    sine_multiply)
from .problem import Problem, relative_rows

__all__ = ["DirichletBoxProblem", "poisson", "helmholtz", "heat"]


class DirichletBoxProblem(Problem):
    """``(shift I + beta (-Delta_h)) u = rhs_scale f`` on the interior grid of the unit box.

    The operator is symmetric, so ``solve_adjoint`` is ``solve``.
    """

    def __init__(self, pde, dim, grid, options, shift, beta, rhs_scale, summary):
        super().__init__(pde, dim, grid, options)
        self.h = 1.0 / (grid + 1)
        self.grid_shape = (grid,) * dim
        self.points = box_points([axis_coordinates(grid, self.h)] * dim)
        self.linear = True
        self.symmetric = True
        self.shift, self.beta, self.rhs_scale = shift, beta, rhs_scale
        self._summary = summary
        eig = shift + beta * dirichlet_symbol(dim, grid, self.h)
        if np.min(np.abs(eig)) <= 1e-12 * np.max(np.abs(eig)):
            raise ValueError(f"{pde}: the discrete operator is singular on this grid "
                             f"(an eigenvalue is {np.min(np.abs(eig)):.3g})")
        self.min_eigenvalue = float(np.min(eig))
        self._multiplier = rhs_scale / eig

    def _solve(self, F):
        return sine_multiply(F, self._multiplier)

    _solve_adjoint = _solve

    def apply_operator(self, U):
        """``(shift I + beta (-Delta_h)) U`` by the stencil, (N, n) -> (N, n)."""
        return self.shift * U + self.beta * neg_laplacian_stencil(U, self.grid_shape, self.h)

    def _residual(self, U, F):
        rhs = self.rhs_scale * F
        return relative_rows(self.apply_operator(U) - rhs, rhs)

    def describe(self):
        return (f"{self.pde} {self.dim}-D: {self._summary}; second-order "
                f"{2 * self.dim + 1}-point finite differences on {self.grid}^{self.dim} interior "
                f"points of the unit {'interval square cube'.split()[self.dim - 1]}, "
                f"h = 1/{self.grid + 1}, zero Dirichlet boundary; exact solve by type-I DST")


def poisson(dim, grid, options):
    """``-Delta u = c f``, c = ``rhs_scale`` (default ``dim * pi^2``)."""
    c = options["rhs_scale"]
    c = dim * np.pi**2 if c is None else check_real(c, "rhs_scale", positive=True)
    options["rhs_scale"] = c
    return DirichletBoxProblem("poisson", dim, grid, options, 0.0, 1.0, c,
                               f"-Delta u = {c:.6g} f")


poisson.DEFAULTS = {"rhs_scale": None}


def helmholtz(dim, grid, options):
    """``-Delta u - kappa^2 u = c f`` below the first eigenvalue (well posed, definite).

    Default ``kappa = 0.9 pi sqrt(dim)`` (kappa^2 = 81 % of the first continuous
    eigenvalue ``dim pi^2``, so the problem is close to but safely below
    resonance on every grid); ``kappa^2`` must stay below the first *discrete*
    eigenvalue. Default ``rhs_scale = dim pi^2 - kappa^2``.
    """
    kappa = options["kappa"]
    kappa = 0.9 * np.pi * np.sqrt(dim) if kappa is None else check_real(kappa, "kappa",
                                                                       nonnegative=True)
    h = 1.0 / (grid + 1)
    lam_min = dim * (4.0 / h**2) * np.sin(0.5 * np.pi * h) ** 2
    if kappa**2 >= lam_min:
        raise ValueError(f"kappa^2 must be below the first discrete Dirichlet eigenvalue "
                         f"{lam_min:.6g} of this grid (dim {dim}, grid {grid}) for a "
                         f"well-posed definite problem, got kappa = {kappa} "
                         f"(kappa^2 = {kappa**2:.6g})")
    c = options["rhs_scale"]
    c = dim * np.pi**2 - kappa**2 if c is None else check_real(c, "rhs_scale", positive=True)
    options["kappa"], options["rhs_scale"] = float(kappa), float(c)
    return DirichletBoxProblem("helmholtz", dim, grid, options, -kappa**2, 1.0, c,
                               f"-Delta u - {kappa:.6g}^2 u = {c:.6g} f")


helmholtz.DEFAULTS = {"kappa": None, "rhs_scale": None}


def heat(dim, grid, options):
    """One implicit Euler step ``(I - dt Delta_h) u1 = u0`` of ``u_t = Delta u``, u = 0 on the boundary.

    Default ``dt = 0.01`` (decay factor ``1 / (1 + dt d pi^2)`` of the slowest mode).
    """
    dt = check_real(options["dt"], "dt", positive=True)
    options["dt"] = dt
    return DirichletBoxProblem("heat", dim, grid, options, 1.0, dt, 1.0,
                               f"(I - {dt:.6g} Delta) u1 = u0 (one implicit Euler step)")


heat.DEFAULTS = {"dt": 0.01}
