"""Argument checks shared by the public functions.

Every check raises with a message that names the argument, what was expected and
what was given, so that a user never has to decode a shape error from deep inside
a kernel.
"""

import numbers

import numpy as np

SUPPORTED_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


def check_positive_int(value, name, minimum=1):
    """Return ``value`` as a Python int, requiring an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def check_optional_rank(value, name="max_rank"):
    """Return None or a non-negative int."""
    if value is None:
        return None
    return check_positive_int(value, name, minimum=0)


def check_tolerance(value, name, allow_zero=True):
    """Return ``value`` as a float in [0, 1] (or (0, 1] when zero is not allowed)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    low_ok = value >= 0.0 if allow_zero else value > 0.0
    if not low_ok or value > 1.0:
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must lie in {interval}, got {value:g}")
    return value


def check_nonnegative(value, name):
    """Return ``value`` as a finite float >= 0 (absolute tolerances)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0.0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value:g}")
    return value


def check_dtype(dtype, name="dtype"):
    """Return a supported floating dtype (float64 or float32)."""
    dt = np.dtype(dtype)
    if dt not in SUPPORTED_DTYPES:
        raise TypeError(f"{name} must be float64 or float32, got {dt}")
    return dt


def as_finite_array(a, name, ndim=None, dtype=None):
    """Convert to a C-contiguous float array, rejecting NaN/inf and wrong ranks.

    Integer and boolean inputs are converted to float64; complex input is refused
    (the library works in real arithmetic).
    """
    arr = np.asarray(a)
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if dtype is None:
        dtype = arr.dtype if arr.dtype in SUPPORTED_DTYPES else np.float64
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name} must be a {want} array, got shape {arr.shape}")
    # NaN and inf propagate through a sum, so one reduction clears the common case;
    # only a sum that is not finite (bad entries, or an overflow) needs the full check
    if not np.isfinite(np.sum(arr)) and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} non-finite entr{'y' if bad == 1 else 'ies'} (NaN or inf)")
    return arr


def as_block(x, n, dtype, name="x"):
    """Return ``(X, was_vector)``: ``x`` as a C-contiguous ``(n, s)`` block.

    Parameters
    ----------
    x : (n,) or (n, s) array_like
    n : int
        Required number of rows.
    dtype : numpy dtype
        Working dtype of the operator; ``x`` is converted to it (a float32
        matrix computes in float32 whatever the dtype of ``x``).
    """
    arr = np.asarray(x)
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be a vector (n,) or a block (n, s), got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} rows but the matrix has {n} columns")
    X = as_finite_array(arr, name, dtype=dtype)
    was_vector = X.ndim == 1
    if was_vector:
        X = X.reshape(n, 1)
    return X, was_vector
