"""The :class:`Dataset` container and :func:`make_dataset`, the one entry point."""

import numpy as np

from ._checks import as_block, check_dim, check_int
from .dirichlet import heat, helmholtz, poisson
from .nonlinear import reaction_diffusion, vorticity
from .problem import INPUT_DEFAULTS, Problem
from .sparse import diffusion, poisson_lshape, poisson_mixed

__all__ = ["Dataset", "make_dataset", "PDES"]

# name -> (builder, supported dims)
_REGISTRY = {
    "poisson": (poisson, (1, 2, 3)),
    "poisson_mixed": (poisson_mixed, (1, 2, 3)),
    "poisson_lshape": (poisson_lshape, (2,)),
    "diffusion": (diffusion, (1, 2, 3)),
    "helmholtz": (helmholtz, (1, 2, 3)),
    "heat": (heat, (1, 2, 3)),
    "reaction_diffusion": (reaction_diffusion, (1, 2, 3)),
    "vorticity": (vorticity, (2,)),
}

# largest number of entries handed to one residual evaluation
_RESIDUAL_CHUNK = 1 << 22

#: Names accepted by :func:`make_dataset`.
PDES = tuple(_REGISTRY)


class Dataset:
    """Input/solution pairs of one discretised PDE, in natural grid order.

    Attributes
    ----------
    X : (N, n) ndarray, float64
        Inputs (right-hand sides or initial states), one sample per row.
    Y : (N, n) ndarray, float64
        Solutions, ``Y[i] = solve(X[i])``.
    points : (n, d) ndarray
        Coordinates of the unknowns, in the column order of X and Y: the C-order
        flattening of the box grid, restricted to ``mask`` when there is one.
    grid_shape : tuple of ints
        Shape of the box grid.
    mask : bool ndarray of shape grid_shape, or None
        True at the unknowns; None when every box point is one (then a row of X
        reshapes to grid_shape).
    linear : bool
        True when Y depends linearly on X.
    pde : str
    dim, grid, seed : int
    options : dict
        Every option with its effective value (defaults filled in).

    Notes
    -----
    X and Y are read-only. Indexing (``ds[:10]``, ``ds[[0, 3]]``) returns a
    Dataset with fewer samples sharing the operator (and its cached factors).
    """

    def __init__(self, problem, X, Y, seed):
        if not isinstance(problem, Problem):
            raise TypeError(f"problem must be a hssalg_nn.data Problem, got {type(problem).__name__}")
        X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
        n = problem.n
        if X.ndim != 2 or X.shape[1] != n or X.shape != Y.shape:
            raise ValueError(f"X and Y must have shape (N, {n}), one sample per row, and the same "
                             f"shape; got X {X.shape} and Y {Y.shape}")
        self._problem = problem
        self.X = X
        self.Y = Y
        self.X.flags.writeable = False
        self.Y.flags.writeable = False
        self.seed = seed

    # ---- description ---------------------------------------------------------
    pde = property(lambda self: self._problem.pde)
    dim = property(lambda self: self._problem.dim)
    grid = property(lambda self: self._problem.grid)
    points = property(lambda self: self._problem.points)
    grid_shape = property(lambda self: self._problem.grid_shape)
    mask = property(lambda self: self._problem.mask)
    linear = property(lambda self: self._problem.linear)
    options = property(lambda self: dict(self._problem.options))

    @property
    def n(self):
        """Number of unknowns (columns of X and Y)."""
        return self._problem.n

    @property
    def problem(self):
        """The discretised problem (operator, cached factors) shared by slices."""
        return self._problem

    def __len__(self):
        return self.X.shape[0]

    @property
    def n_samples(self):
        """Number of samples (rows of X and Y)."""
        return self.X.shape[0]

    def describe(self):
        """One line: the equation, its discretisation and the sample count."""
        return f"{self._problem.describe()}; n = {self.n}, {len(self)} samples from seed {self.seed}"

    def __repr__(self):
        return (f"Dataset(pde={self.pde!r}, dim={self.dim}, grid={self.grid}, n={self.n}, "
                f"n_samples={len(self)}, seed={self.seed})")

    # ---- subsets ----------------------------------------------------------------
    def subset(self, idx):
        """The samples ``idx`` (slice, int array or boolean array) as a new Dataset."""
        if isinstance(idx, tuple):
            raise TypeError(f"a Dataset is indexed by its samples only (a slice, an int or a 1-D "
                            f"int or bool array), got the tuple {idx!r}")
        if isinstance(idx, (int, np.integer)):
            idx = [idx]
        elif not isinstance(idx, slice) and np.ndim(idx) != 1:
            raise IndexError(f"a Dataset is indexed by its samples only (a slice, an int or a 1-D "
                             f"int or bool array), got an index of shape {np.shape(idx)}")
        X = np.array(self.X[idx], ndmin=2)
        Y = np.array(self.Y[idx], ndmin=2)
        return Dataset(self._problem, X, Y, self.seed)

    __getitem__ = subset

    # ---- the discrete problem --------------------------------------------------------
    def solve(self, F):
        """The exact discrete solution map applied to F.

        Parameters
        ----------
        F : (n,) or (N, n) array_like
            Inputs in natural order.

        Returns
        -------
        U : ndarray, same shape as F
        """
        B, vec = as_block(F, self.n, "F")
        U = self._problem._solve(B)
        return U[0] if vec else U

    def solve_adjoint(self, G):
        """The transpose of the (linear) solution map applied to G.

        ``<solve(f), g> = <f, solve_adjoint(g)>``; equal to ``solve`` for the
        symmetric problems. Raises ValueError for nonlinear pdes.

        Parameters
        ----------
        G : (n,) or (N, n) array_like

        Returns
        -------
        ndarray, same shape as G
        """
        B, vec = as_block(G, self.n, "G")
        Z = self._problem._solve_adjoint(B)
        return Z[0] if vec else Z

    def residual(self, U, F):
        """Relative residual ``||L u - rhs(f)|| / ||rhs(f)||`` of the discrete equations, per sample.

        The operator is applied by its stencil or sparse matrix, not by the
        solver, so this checks ``solve`` independently. For the nonlinear
        maps with ``n_steps > 1`` it checks the equation of the last step,
        given the state before it (recomputed by ``n_steps - 1`` steps).
        Exact solves give about ``cond(L) * eps``: below 1e-12 on 64^2 and
        64^3 grids, about 1e-10 in 1-D at grid 1024.

        Parameters
        ----------
        U, F : (n,) or (N, n) array_like
            Candidate solutions and their inputs.

        Returns
        -------
        float or (N,) ndarray
        """
        Ub, vec = as_block(U, self.n, "U")
        Fb, _ = as_block(F, self.n, "F")
        if Fb.shape != Ub.shape:
            raise ValueError(f"U and F must have the same shape, got {np.shape(U)} and "
                             f"{np.shape(F)}")
        # rows in chunks: the stencil pads a copy of its block, keep that bounded at 128^3
        step = max(1, _RESIDUAL_CHUNK // self.n)
        r = np.concatenate([self._problem._residual(Ub[s:s + step], Fb[s:s + step])
                            for s in range(0, Ub.shape[0], step)] or [np.zeros(0)])
        return float(r[0]) if vec else r

    def tree(self, leaf_size=64):
        """``hssalg.ClusterTree.from_points(points, leaf_size)`` of the unknowns."""
        from hssalg import ClusterTree
        return ClusterTree.from_points(self.points, leaf_size=leaf_size)

    def to_grid(self, V, fill=0.0):
        """Scatter rows of V (N, n) or (n,) into the box: (N,) + grid_shape (fill where masked)."""
        B, vec = as_block(V, self.n, "V")
        out = np.full((B.shape[0],) + tuple(self.grid_shape), float(fill))
        if self.mask is None:
            out[...] = B.reshape(out.shape)
        else:
            out[:, self.mask] = B
        return out[0] if vec else out


def make_dataset(pde, dim=2, grid=64, n_samples=100, seed=0, **options):
    """Generate ``n_samples`` input/solution pairs of a discretised PDE.

    Parameters
    ----------
    pde : str
        One of :data:`PDES`: ``"poisson"`` (Dirichlet; dims 1-3), ``"poisson_mixed"``
        (Dirichlet on the faces x_a = 0, Neumann on x_a = 1; dims 1-3),
        ``"poisson_lshape"`` (dim 2), ``"diffusion"`` (-div(a grad u) = f; dims 1-3),
        ``"helmholtz"`` (dims 1-3), ``"heat"`` (implicit Euler step; dims 1-3),
        ``"reaction_diffusion"`` (Fisher-KPP step, nonlinear; dims 1-3),
        ``"vorticity"`` (2-D Navier-Stokes steps, nonlinear; dim 2).
    dim : int
    grid : int >= 2
        Unknowns per dimension (n = grid**dim for box problems).
    n_samples : int >= 0
        0 gives an empty data set whose ``solve`` still works (an operator only).
    seed : int >= 0
        Seed of the inputs; different seeds give independent samples. The
        operator (e.g. the diffusion coefficient) never depends on it.
    **options
        Inputs: ``alpha`` (2.0), ``tau`` (3.0), ``mean`` (0.0) of the Gaussian
        random fields (see :func:`grf`). Per pde: ``rhs_scale`` (poisson,
        poisson_mixed, poisson_lshape, diffusion, helmholtz), ``kappa``
        (helmholtz), ``dt`` (heat, reaction_diffusion),
        ``coef_seed``, ``coef_contrast``, ``coef_modes``, ``coefficient``
        (diffusion), ``D``, ``rho``, ``n_steps``, ``input_gain``
        (reaction_diffusion), ``nu``, ``t_final``, ``n_steps`` (vorticity). See each
        generator's docstring for the discretisation and the defaults.

    Returns
    -------
    Dataset
    """
    if not isinstance(pde, str):
        raise TypeError(f"pde must be a string, one of {PDES}, got {type(pde).__name__}")
    if pde not in _REGISTRY:
        raise ValueError(f"unknown pde {pde!r}; expected one of {PDES}")
    builder, dims = _REGISTRY[pde]
    dim = check_dim(dim, dims, pde)
    grid = check_int(grid, "grid", 2)
    n_samples = check_int(n_samples, "n_samples", 0)
    seed = check_int(seed, "seed", 0)
    accepted = {**INPUT_DEFAULTS, **builder.DEFAULTS}
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for pde {pde!r}; accepted options are "
                        f"{sorted(accepted)}")
    merged = {**accepted, **options}
    Problem._check_input_options(merged)
    problem = builder(dim, grid, merged)
    X = problem.inputs(n_samples, seed)
    Y = problem._solve(X)
    return Dataset(problem, X, Y, seed)
