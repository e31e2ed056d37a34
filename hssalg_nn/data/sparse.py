"""Problems solved by one sparse LU factorisation: mixed conditions, the L-shape, diffusion.

Each builds a sparse matrix ``A`` (n x n, never dense) and a right-hand-side
weight vector ``w`` (n,); the discrete equations are ``A u = w * f`` and the
solution map is ``u = A^{-1} (w * f)``. ``A`` is factored once by
``scipy.sparse.linalg.splu`` (cached on the problem), so every further solve
costs two triangular solves. The transposed map ``w * A^{-T} g`` uses the same
factors.
"""

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ._checks import check_int, check_real
from .grf import STREAM_COEFFICIENT, grf, rng_for
from .grids import axis_coordinates, box_points, kron_sum, second_difference_1d
from .problem import Problem, relative_rows

__all__ = ["SparseProblem", "poisson_mixed", "poisson_lshape", "diffusion",
           "diffusion_coefficient", "LSHAPE_FIRST_EIGENVALUE"]

# First Dirichlet eigenvalue of the L-shaped domain [0,1]^2 minus [1/2,1]^2: four
# times the classic 9.6397238 of the L of side 2 (Fox, Henrici and Moler 1967).
LSHAPE_FIRST_EIGENVALUE = 4 * 9.6397238440219


class SparseProblem(Problem):
    """``A u = w * f`` with a sparse ``A``; solved by a cached sparse LU factorisation."""

    def __init__(self, pde, dim, grid, options, A, w, summary, symmetric):
        super().__init__(pde, dim, grid, options)
        self.A = sp.csr_matrix(A)
        self.w = np.asarray(w, dtype=np.float64)
        self.linear = True
        self.symmetric = symmetric
        self._summary = summary
        self._lu = None

    @property
    def lu(self):
        """The ``splu`` factors of A, computed on first use."""
        if self._lu is None:
            self._lu = spla.splu(self.A.tocsc())
        return self._lu

    def _solve(self, F):
        if F.shape[0] == 0:
            return np.zeros_like(F)
        return np.ascontiguousarray(self.lu.solve(np.asfortranarray((F * self.w).T)).T)

    def _solve_adjoint(self, G):
        if G.shape[0] == 0:
            return np.zeros_like(G)
        Z = self.lu.solve(np.asfortranarray(G.T), trans="T").T
        return np.ascontiguousarray(Z * self.w)

    def _residual(self, U, F):
        rhs = F * self.w
        return relative_rows((self.A @ U.T).T - rhs, rhs)

    def describe(self):
        return f"{self.pde} {self.dim}-D: {self._summary}; sparse LU (splu) solve"


def _scale(options, default):
    c = options["rhs_scale"]
    c = float(default) if c is None else check_real(c, "rhs_scale", positive=True)
    options["rhs_scale"] = c
    return c


# ---- mixed Dirichlet / Neumann ------------------------------------------------------

def mixed_second_difference_1d(grid):
    """1-D ``-u''`` with u(0) = 0 and u'(1) = 0 on the nodes ``x_j = (j + 1) / grid``.

    Rows 0 .. grid-2 are the usual (-1, 2, -1) / h^2; the last node sits on
    x = 1 and uses the ghost value ``u_{grid} = u_{grid-2}`` of the reflected
    (second-order) Neumann condition: (-2, 2) / h^2. (grid, grid) CSR, h = 1/grid.
    """
    h = 1.0 / grid
    T = second_difference_1d(grid, h).tolil()
    T[grid - 1, grid - 2] = -2.0 / h**2
    return T.tocsr()


class _MixedProblem(SparseProblem):
    """Mixed problem: inputs restricted from a doubled box, so they are free on x_a = 1."""

    def inputs(self, n_samples, seed):
        o, g, d = self.options, self.grid, self.dim
        # nodes (j+1)/g of [0, 2]^d are the doubled box's interior grid of 2g-1 points;
        # on [0, 2] the covariance (-Delta + tau^2)^-alpha is that of the unit box with 2 tau
        big = grf(d, 2 * g - 1, n_samples, seed, alpha=o["alpha"], tau=2 * o["tau"],
                  mean=o["mean"])
        big = big.reshape((n_samples,) + (2 * g - 1,) * d)
        return big[(slice(None),) + (slice(0, g),) * d].reshape(n_samples, g**d)


def poisson_mixed(dim, grid, options):
    """``-Delta u = c f``; u = 0 on the faces ``x_a = 0``, du/dn = 0 on the faces ``x_a = 1``.

    Unknowns: ``x_j = (j + 1) / grid`` per axis (h = 1/grid), so the Neumann
    faces carry unknowns and the Dirichlet faces do not. The operator is the
    Kronecker sum of :func:`mixed_second_difference_1d` (second order
    everywhere; not symmetric, so ``solve_adjoint`` differs from ``solve``).
    Default ``c = dim pi^2 / 4``, the first eigenvalue of the continuous mixed
    problem (eigenfunction ``prod_a sin(pi x_a / 2)``). Inputs: Gaussian random
    fields on the box ``[0, 2]^dim`` restricted to the unit box, so they vanish
    on the Dirichlet faces only (``tau`` is doubled internally to keep the
    covariance ``(-Delta + tau^2)^(-alpha)`` in the unit box's units).
    """
    h = 1.0 / grid
    c = _scale(options, dim * np.pi**2 / 4)
    A = kron_sum([mixed_second_difference_1d(grid)] * dim)
    prob = _MixedProblem("poisson_mixed", dim, grid, options, A, np.full(grid**dim, c),
                         f"-Delta u = {c:.6g} f, u = 0 on x_a = 0, du/dn = 0 on x_a = 1; "
                         f"second-order finite differences (reflected ghost points on the "
                         f"Neumann faces) on the nodes (j+1) h, j < {grid}, h = 1/{grid}, of "
                         f"the unit box",
                         symmetric=False)
    prob.grid_shape = (grid,) * dim
    prob.points = box_points([h * np.arange(1, grid + 1, dtype=np.float64)] * dim)
    return prob


poisson_mixed.DEFAULTS = {"rhs_scale": None}


# ---- L-shaped domain -------------------------------------------------------------------

def lshape_mask(grid):
    """Unknowns of the L-shape ``[0,1]^2 \\ [1/2,1]^2`` on the (grid, grid) interior grid.

    A point ``((i+1) h, (j+1) h)`` is removed when both coordinates are >= 1/2
    (points on the re-entrant edges are boundary points, where u = 0); the
    comparison is done in integers, ``2 (i + 1) >= grid + 1``.
    """
    big = 2 * np.arange(1, grid + 1) >= grid + 1
    return ~(big[:, None] & big[None, :])


def poisson_lshape(dim, grid, options):
    """``-Delta u = c f`` on the L-shape with u = 0 on its boundary (masked 5-point grid).

    The box grid is that of the unit square (h = 1/(grid+1)); the operator is
    the 5-point Laplacian restricted to the unmasked points, i.e. neighbours
    in the removed quadrant count as zero Dirichlet values. Default
    ``c = LSHAPE_FIRST_EIGENVALUE`` (about 38.56). Inputs: box GRFs at the
    unmasked points. The solution has the r^(2/3) corner singularity at
    (1/2, 1/2).
    """
    h = 1.0 / (grid + 1)
    c = _scale(options, LSHAPE_FIRST_EIGENVALUE)
    mask = lshape_mask(grid)
    keep = np.flatnonzero(mask.ravel())
    full = kron_sum([second_difference_1d(grid, h)] * 2)
    A = full[keep][:, keep]
    prob = SparseProblem("poisson_lshape", 2, grid, options, A, np.full(keep.size, c),
                         f"-Delta u = {c:.6g} f on [0,1]^2 minus [1/2,1]^2, u = 0 on the "
                         f"boundary; 5-point finite differences on the {grid}^2 interior grid "
                         f"(h = 1/{grid + 1}) masked to {keep.size} unknowns",
                         symmetric=True)
    prob.grid_shape = (grid, grid)
    prob.mask = mask
    prob.points = box_points([axis_coordinates(grid, h)] * 2)[keep]
    return prob


poisson_lshape.DEFAULTS = {"rhs_scale": None}


# ---- variable-coefficient diffusion -------------------------------------------------

def diffusion_coefficient(points, coef_seed=0, contrast=1.0, modes=4):
    """The smooth positive coefficient ``a(x) = exp(contrast * s(x))`` of the diffusion pde.

    ``s(x) = sum_k c_k prod_a cos(k_a pi x_a)`` over ``k in {0..modes-1}^d``
    without k = 0, with ``c_k ~ N(0, 1) / (1 + |k|^2)`` drawn from ``coef_seed``
    (a stream separate from every input seed) and rescaled so that s has mean
    square exactly one over the unit box. ``a`` is defined everywhere (not only
    on a grid), so it can be evaluated at cell faces.

    Parameters
    ----------
    points : (m, d) array_like
    coef_seed : int >= 0
    contrast : float >= 0
        ``log a`` has RMS ``contrast``; 0 gives ``a = 1``.
    modes : int >= 2

    Returns
    -------
    a : (m,) ndarray, positive
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2:
        raise ValueError(f"points must have shape (m, d), got {pts.shape}")
    contrast = check_real(contrast, "coef_contrast", nonnegative=True)
    modes = check_int(modes, "coef_modes", 2)
    d = pts.shape[1]
    rng = rng_for(coef_seed, STREAM_COEFFICIENT, name="coef_seed")
    ks = np.stack(np.meshgrid(*[np.arange(modes)] * d, indexing="ij"), axis=-1).reshape(-1, d)[1:]
    c = rng.standard_normal(ks.shape[0]) / (1.0 + np.sum(ks**2, axis=1))
    # mean square of prod cos(k_a pi x_a) over the box is 2^-(number of k_a > 0)
    c /= np.sqrt(np.sum(c**2 * 0.5 ** np.count_nonzero(ks, axis=1)))
    s = np.zeros(pts.shape[0])
    for ck, k in zip(c, ks):
        s += ck * np.prod(np.cos(np.pi * k * pts), axis=1)
    return np.exp(contrast * s)


def diffusion_operator(dim, grid, coefficient):
    """Sparse ``-div(a grad u)`` with u = 0 on the boundary, flux form, (n, n) CSR.

    ``sum_a D_a^T diag(a at the faces normal to axis a) D_a / h^2``, with D_a the
    forward difference from the grid+2 nodes (boundary included) to the grid+1
    faces; the boundary columns are dropped. Symmetric positive definite,
    second order for smooth a.
    """
    h = 1.0 / (grid + 1)
    x = axis_coordinates(grid, h)
    faces = h * (np.arange(grid + 1) + 0.5)
    # (grid+1, grid): u_{j+1} - u_j for interior nodes; boundary values are zero
    D = sp.diags([-np.ones(grid), np.ones(grid)], [0, -1], shape=(grid + 1, grid), format="csr")
    A = None
    for a in range(dim):
        axes = [x] * dim
        axes[a] = faces
        pts = box_points(axes)
        coef = np.asarray(coefficient(pts), dtype=np.float64).ravel()
        if coef.size != pts.shape[0] or not np.all(np.isfinite(coef) & (coef > 0)):
            raise ValueError(f"coefficient must return {pts.shape[0]} values, one finite positive "
                             f"value per point of its ({pts.shape[0]}, {dim}) argument (the faces "
                             f"normal to axis {a}), got shape {coef.shape} with min "
                             f"{np.min(coef) if coef.size else None}")
        left = sp.identity(grid**a, format="csr")
        right = sp.identity(grid ** (dim - a - 1), format="csr")
        Da = sp.kron(sp.kron(left, D), right, format="csr")
        term = Da.T @ sp.diags(coef) @ Da
        A = term if A is None else A + term
    return (A / h**2).tocsr()


def diffusion(dim, grid, options):
    """``-div(a grad u) = c f``, u = 0 on the boundary of the unit box, a fixed per data set.

    ``a = diffusion_coefficient(x, coef_seed, coef_contrast, coef_modes)`` unless
    the option ``coefficient`` (a callable (m, d) points -> (m,) positive values)
    is given. The coefficient does *not* depend on the sample seed, so train
    and test sets of the same options share the operator. Second-order flux
    form (a evaluated at face midpoints), h = 1/(grid+1). Default ``c = dim
    pi^2``. In 3-D the sparse LU fills in heavily: grids up to ~32^3 are cheap.
    """
    c = _scale(options, dim * np.pi**2)
    seed = check_int(options["coef_seed"], "coef_seed", 0)
    contrast = check_real(options["coef_contrast"], "coef_contrast", nonnegative=True)
    modes = check_int(options["coef_modes"], "coef_modes", 2)
    coefficient = options["coefficient"]
    if coefficient is None:
        def coefficient(p):
            return diffusion_coefficient(p, seed, contrast, modes)
        what = f"a = exp({contrast:g} s), s smooth from coef_seed {seed}"
    elif not callable(coefficient):
        raise TypeError(f"coefficient must be a callable (m, d) points -> (m,) values or None, "
                        f"got {type(coefficient).__name__}")
    else:
        what = "a given by the coefficient option"
    A = diffusion_operator(dim, grid, coefficient)
    h = 1.0 / (grid + 1)
    prob = SparseProblem("diffusion", dim, grid, options, A, np.full(grid**dim, c),
                         f"-div(a grad u) = {c:.6g} f, {what}; second-order flux-form finite "
                         f"differences (a at face midpoints) on {grid}^{dim} interior points, "
                         f"h = 1/{grid + 1}, zero Dirichlet boundary",
                         symmetric=True)
    prob.grid_shape = (grid,) * dim
    prob.points = box_points([axis_coordinates(grid, h)] * dim)
    return prob


diffusion.DEFAULTS = {"rhs_scale": None, "coef_seed": 0, "coef_contrast": 1.0, "coef_modes": 4,
                      "coefficient": None}
