"""Seeded input/solution pairs of discretised PDEs for operator learning.

``make_dataset(pde, dim, grid, n_samples, seed, **options)`` returns a
:class:`Dataset`: inputs X and solutions Y as (N, n) float64 blocks in natural
(C) grid order, the coordinates of the unknowns, the exact discrete solution
map, its transpose and an independent residual check. Inputs are smooth
Gaussian random fields (:func:`grf`). Every generator documents its
discretisation; all are second-order finite differences on uniform grids of
the unit box, solved exactly (sine transform or sparse LU). No n x n dense
matrix is formed anywhere.
"""

from .dataset import PDES, Dataset, make_dataset
from .grf import grf
from .sparse import LSHAPE_FIRST_EIGENVALUE, diffusion_coefficient, lshape_mask

__all__ = ["make_dataset", "Dataset", "PDES", "grf", "diffusion_coefficient", "lshape_mask",
           "LSHAPE_FIRST_EIGENVALUE"]
