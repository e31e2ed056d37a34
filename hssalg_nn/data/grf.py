"""Gaussian random fields on the interior grid of the unit box, by the sine series.

The field is the truncated Karhunen-Loeve series of the covariance operator
``C = (-Delta + tau^2 I)^(-alpha)`` with homogeneous Dirichlet conditions on the
unit box (the smoothness family of the FNO paper's inputs, alpha = 2, tau = 3):

    g(x) = sigma * sum_k (pi^2 |k|^2 + tau^2)^(-alpha/2) xi_k phi_k(x),
    phi_k(x) = prod_a sqrt(2) sin(k_a pi x_a),  k_a = 1 .. grid,  xi_k ~ N(0, 1),

evaluated at the grid points ``x_j = (j + 1) / (grid + 1)`` by one type-I sine
transform, O(n log n) per sample. ``sigma`` makes the expected mean square of g
over the box equal to one, ``E ||g||_{L2}^2 = 1``, whatever alpha, tau, dim and
grid: inputs are O(1) and comparable across settings. The fields vanish on the
boundary, which matches the Dirichlet problems they drive.
"""

import numpy as np
import scipy.fft

from ._checks import check_int, check_real
from . import grids

__all__ = ["grf", "rng_for"]

# Stream tags: the generator of stream t for seed s is default_rng([s, t]), so
# inputs, coefficient fields and anything else drawn from "the same" seed are
# independent streams (numpy SeedSequence hashes the whole entropy list).
STREAM_INPUTS = 0x1F0
STREAM_COEFFICIENT = 0x2C0


def rng_for(seed, stream, name="seed"):
    """The numpy Generator of stream ``stream`` for a user seed (an int >= 0)."""
    seed = check_int(seed, name, 0)
    return np.random.default_rng([seed, stream])


def grf(dim, grid, n_samples, seed, alpha=2.0, tau=3.0, mean=0.0):
    """Sample smooth Gaussian random fields on the interior grid of the unit box.

    Parameters
    ----------
    dim : int, 1 <= dim <= 3
    grid : int >= 1
        Interior points per dimension; ``n = grid**dim``.
    n_samples : int >= 0
    seed : int >= 0
        Samples depend only on (seed, alpha, tau, mean, dim, grid); the first
        ``m`` samples of a call with ``n_samples >= m`` are those of a call
        with ``n_samples = m``.
    alpha : float > dim / 2
        Smoothness exponent of the covariance ``(-Delta + tau^2)^(-alpha)``;
        ``alpha > dim / 2`` makes the continuous field square integrable.
    tau : float >= 0
        Inverse length scale: larger tau means rougher, less correlated fields.
    mean : float
        Constant added to every sample.

    Returns
    -------
    X : (n_samples, grid**dim) ndarray, float64
        One field per row, C-order flattening of the grid ``(grid,) * dim``.
    """
    dim = check_int(dim, "dim", 1)
    if dim > 3:
        raise ValueError(f"dim must be 1, 2 or 3, got {dim}")
    grid = check_int(grid, "grid", 1)
    n_samples = check_int(n_samples, "n_samples", 0)
    alpha = check_real(alpha, "alpha")
    if alpha <= dim / 2:
        raise ValueError(f"alpha must be > dim / 2 = {dim / 2} for a square-integrable field, "
                         f"got {alpha}")
    tau = check_real(tau, "tau", nonnegative=True)
    mean = check_real(mean, "mean")
    rng = rng_for(seed, STREAM_INPUTS)

    shape = (grid,) * dim
    k2 = np.zeros(shape)
    for a in range(dim):
        ax = [1] * dim
        ax[a] = grid
        k2 = k2 + (np.pi * np.arange(1, grid + 1, dtype=np.float64)).reshape(ax) ** 2
    # the weights (k2 + tau^2)^-alpha, relative to the largest (k = 1), in logarithms: the
    # plain power underflows to 0 (alpha ~ 300, a 0/0 field) and tau^2 overflows (tau > 1e154)
    log_k2 = np.log(k2)
    log_tau2 = 2.0 * np.log(tau) if tau > 0 else -np.inf
    log_w = -alpha * np.logaddexp(log_k2, log_tau2)
    eig = np.exp(log_w - log_w.max())
    sqrt_eig = np.sqrt(eig / eig.sum())           # normalised: E ||g||^2 = sum eig = 1
    # sum_k c_k sqrt(2) sin(k pi x_j) = sqrt(grid + 1) (S c)_j with S the orthonormal DST-I
    sqrt_eig *= (grid + 1) ** (dim / 2)

    n = grid**dim
    X = np.empty((n_samples, n))
    step = max(1, grids._CHUNK_ENTRIES // n)
    axes = tuple(range(1, dim + 1))
    for s in range(0, n_samples, step):
        m = min(step, n_samples - s)
        xi = rng.standard_normal((m,) + shape)     # drawn in row order: prefixes agree
        X[s:s + m] = scipy.fft.idstn(xi * sqrt_eig, type=1, axes=axes,
                                     norm="ortho").reshape(m, n)
    if mean != 0.0:
        X += mean
    return X
