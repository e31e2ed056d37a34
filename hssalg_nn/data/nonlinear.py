"""Nonlinear time-step maps: Fisher-KPP reaction-diffusion (biology) and 2-D vorticity (fluids).

Both are semi-implicit (IMEX) time steps: diffusion implicit, solved exactly by
the type-I sine transform (zero Dirichlet values), the nonlinear term explicit
(forward Euler for Fisher-KPP, RK4 for the vorticity advection).
``n_steps`` repeats the step; Y is the state after the last step and
``residual`` checks the equation of the last step, given the state before it.
"""

import numpy as np
import scipy.special

from ._checks import check_int, check_real
from .grids import (axis_coordinates, box_points, dirichlet_symbol, neg_laplacian_stencil,
                    sine_multiply)
from .problem import Problem, relative_rows

__all__ = ["reaction_diffusion", "vorticity", "arakawa_jacobian"]


class _ImexProblem(Problem):
    """``(I + dt nu (-Delta_h)) u_{k+1} = u_k + dt N(u_k)``, k = 0 .. n_steps-1."""

    def __init__(self, pde, dim, grid, options, dt, nu, n_steps):
        super().__init__(pde, dim, grid, options)
        self.h = 1.0 / (grid + 1)
        self.grid_shape = (grid,) * dim
        self.points = box_points([axis_coordinates(grid, self.h)] * dim)
        self.linear = False
        self.dt, self.nu, self.n_steps = dt, nu, n_steps
        self._multiplier = 1.0 / (1.0 + dt * nu * dirichlet_symbol(dim, grid, self.h))

    def _nonlinear(self, U):
        raise NotImplementedError

    def _step_rhs(self, U):
        return U + self.dt * self._nonlinear(U)

    def _march(self, U, steps):
        for _ in range(steps):
            U = sine_multiply(self._step_rhs(U), self._multiplier)
        return U

    def _solve(self, F):
        return self._march(F, self.n_steps)

    def _solve_adjoint(self, G):
        raise ValueError(f"solve_adjoint is defined for linear pdes only; {self.pde!r} is "
                         f"nonlinear")

    def _residual(self, U, F):
        before = self._march(F, self.n_steps - 1)
        rhs = self._step_rhs(before)
        lhs = U + self.dt * self.nu * neg_laplacian_stencil(U, self.grid_shape, self.h)
        return relative_rows(lhs - rhs, rhs)


# ---- Fisher-KPP ------------------------------------------------------------------------

class _FisherKPP(_ImexProblem):
    def __init__(self, dim, grid, options):
        o = options
        dt = check_real(o["dt"], "dt", positive=True)
        D = check_real(o["D"], "D", positive=True)
        self.rho = check_real(o["rho"], "rho", nonnegative=True)
        self.input_gain = check_real(o["input_gain"], "input_gain", positive=True)
        n_steps = check_int(o["n_steps"], "n_steps", 1)
        o.update(dt=dt, D=D, rho=self.rho, input_gain=self.input_gain, n_steps=n_steps)
        super().__init__("reaction_diffusion", dim, grid, o, dt, D, n_steps)

    def _nonlinear(self, U):
        return self.rho * U * (1.0 - U)

    def inputs(self, n_samples, seed):
        g = self._box_fields(n_samples, seed)
        # a population density in (0, 1): the logistic of a smooth field
        return scipy.special.expit(self.input_gain * g)     # 1 / (1 + exp(-gain g)), no overflow

    def describe(self):
        return (f"reaction_diffusion {self.dim}-D: Fisher-KPP u_t = {self.nu:g} Delta u + "
                f"{self.rho:g} u (1 - u), {self.n_steps} semi-implicit step(s) "
                f"(I - dt D Delta_h) u1 = u0 + dt rho u0 (1 - u0), dt = {self.dt:g}; "
                f"{2 * self.dim + 1}-point finite differences on {self.grid}^{self.dim} interior "
                f"points, h = 1/{self.grid + 1}, u = 0 on the boundary (lethal exterior); "
                f"exact implicit solve by type-I DST")


def reaction_diffusion(dim, grid, options):
    """Fisher-KPP ``u_t = D Delta u + rho u (1 - u)``, u = 0 on the boundary, IMEX Euler steps.

    Defaults: D = 0.1, rho = 10, dt = 0.05 (so ``dt rho = 0.5``: the logistic
    growth changes a sample by tens of percent and the map is clearly
    nonlinear), n_steps = 1. Inputs: ``u0 = 1 / (1 + exp(-input_gain g))``
    with g the GRF (input_gain = 2), a density in (0, 1).
    """
    return _FisherKPP(dim, grid, options)


reaction_diffusion.DEFAULTS = {"D": 0.1, "rho": 10.0, "dt": 0.05, "n_steps": 1,
                               "input_gain": 2.0}


# ---- 2-D vorticity -----------------------------------------------------------------------

def arakawa_jacobian(psi, omega, h):
    """Arakawa's energy- and enstrophy-conserving ``J(psi, omega) = psi_x omega_y - psi_y omega_x``.

    Second-order average of the three centred forms J++, J+x, Jx+ (Arakawa
    1966), with zero values outside the grid (psi = omega = 0 on the wall).

    Parameters
    ----------
    psi, omega : (N, g0, g1) ndarray
    h : float

    Returns
    -------
    (N, g0, g1) ndarray
    """
    p = np.pad(psi, ((0, 0), (1, 1), (1, 1)))
    w = np.pad(omega, ((0, 0), (1, 1), (1, 1)))

    def at(a, di, dj):        # a shifted by (di, dj) on the interior
        n0, n1 = a.shape[1] - 2, a.shape[2] - 2
        return a[:, 1 + di:1 + di + n0, 1 + dj:1 + dj + n1]

    jpp = ((at(p, 1, 0) - at(p, -1, 0)) * (at(w, 0, 1) - at(w, 0, -1))
           - (at(p, 0, 1) - at(p, 0, -1)) * (at(w, 1, 0) - at(w, -1, 0)))
    jpx = (at(p, 1, 0) * (at(w, 1, 1) - at(w, 1, -1))
           - at(p, -1, 0) * (at(w, -1, 1) - at(w, -1, -1))
           - at(p, 0, 1) * (at(w, 1, 1) - at(w, -1, 1))
           + at(p, 0, -1) * (at(w, 1, -1) - at(w, -1, -1)))
    jxp = (at(w, 0, 1) * (at(p, 1, 1) - at(p, -1, 1))
           - at(w, 0, -1) * (at(p, 1, -1) - at(p, -1, -1))
           - at(w, 1, 0) * (at(p, 1, 1) - at(p, 1, -1))
           + at(w, -1, 0) * (at(p, -1, 1) - at(p, -1, -1)))
    return (jpp + jpx + jxp) / (12.0 * h * h)


class _Vorticity(_ImexProblem):
    def __init__(self, dim, grid, options):
        o = options
        t_final = check_real(o["t_final"], "t_final", positive=True)
        nu = check_real(o["nu"], "nu", nonnegative=True)
        n_steps = o["n_steps"]
        # default: dt about h, so the CFL number max|u| dt / h is about 0.3 (at most ~0.55,
        # measured at 64^2 over 50 samples) for the unit-RMS inputs, well inside RK4's
        # stability region
        n_steps = (int(np.ceil(t_final * (grid + 1))) if n_steps is None
                   else check_int(n_steps, "n_steps", 1))
        o.update(t_final=t_final, nu=nu, n_steps=n_steps)
        super().__init__("vorticity", dim, grid, o, t_final / n_steps, nu, n_steps)
        # streamfunction solve -Delta_h psi = omega, exact by DST
        self._inv_laplacian = 1.0 / dirichlet_symbol(dim, grid, self.h)

    def streamfunction(self, W):
        """``psi = (-Delta_h)^{-1} omega`` for (N, n) vorticities, (N, n)."""
        return sine_multiply(W, self._inv_laplacian)

    def _nonlinear(self, W):
        # omega_t + u . grad omega = 0 with u = (psi_y, -psi_x): omega_t = J(psi, omega)
        N = W.shape[0]
        shape = (N,) + self.grid_shape
        psi = self.streamfunction(W).reshape(shape)
        return arakawa_jacobian(psi, W.reshape(shape), self.h).reshape(N, W.shape[1])

    def _step_rhs(self, W):
        # classical RK4 for the inviscid advection over dt (Lie splitting with the
        # implicit viscous step); forward Euler would amplify the advective modes
        dt, f = self.dt, self._nonlinear
        k1 = f(W)
        k2 = f(W + 0.5 * dt * k1)
        k3 = f(W + 0.5 * dt * k2)
        k4 = f(W + dt * k3)
        return W + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

    def describe(self):
        return (f"vorticity 2-D: incompressible Navier-Stokes in vorticity-streamfunction form "
                f"omega_t + u.grad omega = {self.nu:g} Delta omega, -Delta psi = omega, "
                f"u = (psi_y, -psi_x), free-slip walls (psi = omega = 0), up to t = "
                f"{self.dt * self.n_steps:g} in {self.n_steps} split steps of dt = {self.dt:.4g}: "
                f"RK4 advection with Arakawa's Jacobian, then (I - dt nu Delta_h) w1 = w*; "
                f"5-point Laplacians on {self.grid}^2 interior points, h = 1/{self.grid + 1}, "
                f"type-I DST solves")


def vorticity(dim, grid, options):
    """2-D vorticity-streamfunction Navier-Stokes in the unit square with free-slip walls.

    Free slip on a straight wall (no penetration, no tangential stress) is
    exactly ``psi = 0`` and ``omega = 0`` there, so both the Poisson solve for
    psi and the implicit viscous step are Dirichlet problems solved by the sine
    transform. Each of the ``n_steps`` steps of ``dt = t_final / n_steps`` is a
    Lie splitting: a classical RK4 step of the inviscid advection
    ``omega_t = J(psi, omega)`` (Arakawa's Jacobian, which conserves discrete
    energy and enstrophy), then an implicit Euler viscous step
    ``(I - dt nu Delta_h) omega_{k+1} = omega*``.

    Defaults: nu = 1e-3 (Reynolds number about 150 for the RMS velocity 0.15 of
    unit-RMS input vorticity), t_final = 1 (about a sixth of an eddy turnover:
    the map is clearly but not wildly nonlinear), n_steps = ceil(t_final (grid+1))
    so dt is about h and the CFL number is about 0.3 (at most ~0.55). Inputs: GRF vorticity.
    Cost: n_steps x (4 Jacobians + 5 sine transforms) per sample, about 0.1 s
    per sample on a 64^2 grid (65 steps); ``residual`` re-runs all but the
    last step, so it costs as much.
    """
    return _Vorticity(dim, grid, options)


vorticity.DEFAULTS = {"nu": 1e-3, "t_final": 1.0, "n_steps": None}
