"""Argument checks shared by the data generators.

Every message names the argument, what was expected and what was given
(docs/design/ARCHITECTURE.md section 4).
"""

import numbers

import numpy as np

from hssalg._validation import as_finite_array


def check_int(value, name, minimum):
    """Return ``value`` as an int, or raise if it is not an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, "
                        f"got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_real(value, name, *, positive=False, nonnegative=False):
    """Return ``value`` as a finite float, optionally required to be > 0 or >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0.0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if nonnegative and value < 0.0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def check_dim(dim, supported, pde):
    """Return ``dim`` as an int, or raise if ``pde`` does not support it."""
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"dim must be an integer, got {type(dim).__name__} {dim!r}")
    if int(dim) not in supported:
        raise ValueError(f"dim = {dim} is not supported for pde {pde!r}; "
                         f"supported dims are {tuple(supported)}")
    return int(dim)


def as_block(F, n, name="F"):
    """Validate samples ``F`` of shape (n,) or (N, n); return a float64 (N, n) block.

    Returns
    -------
    block : (N, n) ndarray, float64
        A new array or a read-only view; callers never write into it.
    was_vector : bool
        True when ``F`` was one sample of shape (n,).
    """
    shape = np.shape(F)
    if len(shape) not in (1, 2) or shape[-1] != n:
        raise ValueError(f"{name} must have shape ({n},) or (N, {n}) with one sample per row, "
                         f"got shape {shape}")
    arr = as_finite_array(F, name, dtype=np.float64)
    was_vector = arr.ndim == 1
    return (arr.reshape(1, n) if was_vector else arr), was_vector
