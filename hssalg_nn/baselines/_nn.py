"""Shared pieces of the baselines: argument checks, grids and masks, dense layers, MLPs.

Everything that runs inside ``apply`` is written in ``autograd.numpy`` (or is
an autograd primitive with its own VJP), so :func:`hssalg_nn.fit` can
differentiate the models. Parameters are nested dicts of float64 arrays.
"""

import numbers

import autograd.numpy as anp
import numpy as onp
from autograd.extend import defvjp, primitive

from hssalg._validation import check_positive_int

from ..activations import ACTIVATION_DERIVATIVES, ACTIVATIONS, FAST_ACTIVATIONS, gelu
from ..layers import _Count

__all__ = ["ACTIVATIONS", "FAST_ACTIVATIONS", "ACTIVATION_DERIVATIVES", "gelu", "Count", "check_activation",
           "check_grid_shape", "check_mask", "check_batch", "as_batch", "grid_coordinates", "GridScatter", "dense_init",
           "mlp_init", "mlp_apply", "mlp_n_params"]

Count = _Count


def check_activation(activation):
    """Return the activation function named ``activation`` (a key of ``ACTIVATIONS``)."""
    if not isinstance(activation, str) or activation not in FAST_ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(FAST_ACTIVATIONS)}, got {activation!r}")
    return FAST_ACTIVATIONS[activation]


def check_grid_shape(grid_shape, name="grid_shape"):
    """Return ``grid_shape`` as a tuple of 1 to 3 positive ints."""
    if isinstance(grid_shape, numbers.Integral) and not isinstance(grid_shape, bool):
        grid_shape = (grid_shape,)
    try:
        shape = tuple(grid_shape)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of 1 to 3 positive ints, got {grid_shape!r}") from None
    if not 1 <= len(shape) <= 3:
        raise ValueError(f"{name} must have 1, 2 or 3 entries (the grid dimension), got {shape!r}")
    return tuple(check_positive_int(s, f"{name}[{i}]") for i, s in enumerate(shape))


def check_mask(mask, grid_shape):
    """Return ``mask`` as a bool array of ``grid_shape`` (None stays None).

    A mask marks the grid points that are unknowns (e.g. an L-shaped domain in
    its bounding box); it must keep at least one point.
    """
    if mask is None:
        return None
    m = onp.asarray(mask)
    if m.dtype != bool:
        raise TypeError(f"mask must be a bool array of shape {grid_shape}, got dtype {m.dtype}")
    if m.shape != tuple(grid_shape):
        raise ValueError(f"mask must have the grid's shape {tuple(grid_shape)}, got shape {m.shape}")
    if not m.any():
        raise ValueError("mask selects no grid point (all False)")
    return m.copy()


def check_batch(X, n, name="X"):
    """Raise a ValueError unless X has shape (batch, n)."""
    shape = onp.shape(X)
    if len(shape) != 2 or shape[1] != n:
        raise ValueError(f"{name} must have shape (batch, {n}) (rows are samples, columns the {n} unknowns), "
                         f"got shape {shape}")
    return shape[0]


def as_batch(X, n, name="X"):
    """``(X, batch)``: X checked by :func:`check_batch`, an array_like that is not an array
    (or an autograd box) converted to a float64 array."""
    if not hasattr(X, "shape"):
        X = onp.asarray(X, dtype=onp.float64)
    return X, check_batch(X, n, name)


def grid_coordinates(grid_shape):
    """Coordinates of the box grid in [0, 1]^d, one channel per dimension.

    Returns
    -------
    C : (d, *grid_shape) float64 array
        ``C[j]`` is the j-th coordinate, ``linspace(0, 1, grid_shape[j])``
        along axis j (0.5 for an axis of one point).
    """
    axes = [onp.linspace(0.0, 1.0, s) if s > 1 else onp.full(1, 0.5) for s in grid_shape]
    return onp.stack(onp.meshgrid(*axes, indexing="ij"))


@primitive
def _scatter(X, idx, size):
    out = onp.zeros((X.shape[0], size), dtype=X.dtype)
    out[:, idx] = X
    return out


defvjp(_scatter, lambda ans, X, idx, size: lambda g: g[:, idx])


class GridScatter:
    """Moves a batch between its n unknowns and the full box grid.

    Parameters
    ----------
    grid_shape : tuple of ints
    mask : bool array of grid_shape, or None
        Unknowns are the True points, in C order; None: every grid point.
    """

    def __init__(self, grid_shape, mask=None):
        self.grid_shape = tuple(grid_shape)
        self.mask = mask
        self.size = int(onp.prod(self.grid_shape))
        self.idx = None if mask is None else onp.flatnonzero(mask.ravel())
        self.n = self.size if mask is None else int(self.idx.size)

    def to_box(self, X):
        """(batch, n) -> (batch, *grid_shape), zeros outside the mask (differentiable)."""
        if self.idx is not None:
            X = _scatter(X, self.idx, self.size)
        return anp.reshape(X, (onp.shape(X)[0],) + self.grid_shape)

    def from_box(self, V):
        """(batch, *grid_shape) -> (batch, n), the values at the unknowns."""
        V = anp.reshape(V, (onp.shape(V)[0], self.size))
        return V if self.idx is None else V[:, self.idx]


# -- dense layers and MLPs -----------------------------------------------------------------

def dense_init(rng, n_in, n_out, gain=1.0):
    """A dense layer ``{"w": (n_out, n_in), "b": (n_out,)}``: Glorot-normal weights, zero bias.

    ``w ~ N(0, gain^2 * 2 / (n_in + n_out))`` keeps the variance of the signal
    roughly constant through a stack of layers (Glorot & Bengio 2010).
    """
    std = gain * onp.sqrt(2.0 / (n_in + n_out))
    return {"w": rng.standard_normal((n_out, n_in)) * std, "b": onp.zeros(n_out)}


def mlp_init(rng, sizes):
    """An MLP with layer widths ``sizes`` (input first): ``{"0": dense, "1": dense, ...}``."""
    return {str(i): dense_init(rng, sizes[i], sizes[i + 1]) for i in range(len(sizes) - 1)}


def mlp_n_params(sizes):
    """Number of scalars of :func:`mlp_init` with these widths."""
    return sum((sizes[i] + 1) * sizes[i + 1] for i in range(len(sizes) - 1))


def mlp_apply(params, x, sigma, final_activation=False):
    """Apply an MLP to the rows of x.

    Parameters
    ----------
    params : dict from :func:`mlp_init`
    x : (batch, n_in) array
    sigma : callable activation, applied after every layer but the last
        (and after the last too with ``final_activation``)

    Returns
    -------
    (batch, n_out) array
    """
    n_layers = len(params)
    for i in range(n_layers):
        layer = params[str(i)]
        x = anp.dot(x, layer["w"].T) + layer["b"]
        if i < n_layers - 1 or final_activation:
            x = sigma(x)
    return x
