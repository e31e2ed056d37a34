"""Seeded input/solution pairs of discretised PDEs for operator learning.

``make_dataset(pde, dim, grid, n_samples, seed, **options)`` returns a
:class:`Dataset`: inputs X and solutions Y as (N, n) float64 blocks in natural
(C) grid order, the coordinates of the unknowns, the exact discrete solution
map, its transpose and a residual check that does not use the solver. Inputs
are smooth Gaussian random fields (:func:`grf`, covariance
``(-Delta + tau^2)^(-alpha)``, alpha = 2, tau = 3, unit mean square). All
discretisations are second-order finite differences on uniform grids of the
unit box, solved exactly; no n x n dense matrix is formed anywhere.

=================== ====== ==================================================================
pde                 dims   equation and solver
=================== ====== ==================================================================
poisson             1-3    -Delta u = c f, u = 0 on the boundary; type-I DST
poisson_mixed       1-3    -Delta u = c f, u = 0 on x_a = 0, du/dn = 0 on x_a = 1; sparse LU
poisson_lshape      2      -Delta u = c f on [0,1]^2 minus [1/2,1]^2 (masked grid); sparse LU
diffusion           1-3    -div(a grad u) = c f, a fixed by coef_seed; flux form, sparse LU
helmholtz           1-3    -Delta u - kappa^2 u = c f, kappa^2 below the first eigenvalue; DST
heat                1-3    (I - dt Delta) u1 = u0, one implicit Euler step; DST
reaction_diffusion  1-3    Fisher-KPP (I - dt D Delta) u1 = u0 + dt rho u0 (1 - u0); DST
vorticity           2      Navier-Stokes, vorticity-streamfunction, free-slip walls, RK4
                           Arakawa advection + implicit viscosity, up to t = 1; DST
=================== ====== ==================================================================

``c`` is the smallest eigenvalue of the continuous operator (``rhs_scale``
option), so that Y is O(1) like X.
"""

from .dataset import PDES, Dataset, make_dataset
from .grf import grf
from .sparse import LSHAPE_FIRST_EIGENVALUE, diffusion_coefficient, lshape_mask

__all__ = ["make_dataset", "Dataset", "PDES", "grf", "diffusion_coefficient", "lshape_mask",
           "LSHAPE_FIRST_EIGENVALUE"]
