"""Names, default hyperparameters and a factory for the trainable baselines.

Defaults (``DEFAULTS``), meant for small low-data problems on a CPU:

* ``fno``: the papers' settings per dimension, 4 Fourier layers and a
  projection of hidden width 128 (Li et al. 2021): 1-D modes 16 / width 64
  (their Burgers setup), 2-D modes 12 / width 32 (Darcy), 3-D modes 8 / width
  20 (their 3-D Navier-Stokes); modes are capped at ``n_j // 2`` on small grids.
* ``deeponet``: branch and trunk with 3 hidden layers of width 64 and p = 64
  basis functions, every unknown a sensor (Lu et al. use widths 40-100 and
  p of the same order on their 1-D and 2-D examples).
* ``cnn``: 8 residual 3^d blocks of width 32 (receptive field 17 points).
* ``dense``: :class:`DenseLinear` from A = 0 (its closed-form minimum-norm fit
  is :func:`least_squares_operator`, not in the registry because it is not
  trained).
"""

import numpy as onp

from ._nn import check_grid_shape, check_mask, grid_coordinates
from .cnn import CNN
from .deeponet import DeepONet
from .fno import FNO
from .linear import DenseLinear

__all__ = ["BASELINES", "DEFAULTS", "make_baseline"]

BASELINES = {"fno": FNO, "deeponet": DeepONet, "cnn": CNN, "dense": DenseLinear}

_FNO_BY_DIM = {1: {"modes": 16, "width": 64}, 2: {"modes": 12, "width": 32}, 3: {"modes": 8, "width": 20}}

DEFAULTS = {
    "fno": {"n_layers": 4, "activation": "gelu", "proj_width": 128},     # + modes, width by dimension
    "deeponet": {"width": 64, "depth": 3, "p": 64, "activation": "gelu", "sensors": None},
    "cnn": {"width": 32, "n_layers": 8, "kernel_size": 3, "activation": "gelu", "residual": True},
    "dense": {"bias": False, "init_scale": 0.0},
}


def _field(data, key, default=None):
    if isinstance(data, dict):
        return data.get(key, default)
    return getattr(data, key, default)


def make_baseline(name, dataset_like, **hyper):
    """Build the baseline ``name`` for the grid described by ``dataset_like``.

    Parameters
    ----------
    name : {"fno", "deeponet", "cnn", "dense"}
    dataset_like : object or dict
        Anything with ``grid_shape`` (1 to 3 ints) and optionally ``mask``
        (bool array of grid_shape; the unknowns are its True points in C
        order) and ``points`` ((n, d) coordinates of the unknowns, for
        DeepONet's trunk; default the grid coordinates in [0, 1]^d).
    **hyper
        Overrides of :data:`DEFAULTS` (and of FNO's per-dimension ``modes``
        and ``width``), passed to the constructor.

    Returns
    -------
    model
        An instance of ``BASELINES[name]``.
    """
    if name not in BASELINES:
        raise ValueError(f"name must be one of {sorted(BASELINES)}, got {name!r}")
    grid_shape = _field(dataset_like, "grid_shape")
    if grid_shape is None:
        raise ValueError("dataset_like must give grid_shape (an attribute or a dict key)")
    grid_shape = check_grid_shape(grid_shape, "dataset_like.grid_shape")
    mask = check_mask(_field(dataset_like, "mask"), grid_shape)
    kw = dict(DEFAULTS[name])
    if name == "fno":
        kw.update(_FNO_BY_DIM[len(grid_shape)])
        if "modes" not in hyper:
            kw["modes"] = tuple(max(1, min(kw["modes"], n // 2)) for n in grid_shape)
        kw.update(hyper)
        return FNO(grid_shape, mask=mask, **kw)
    kw.update(hyper)
    if name == "cnn":
        return CNN(grid_shape, mask=mask, **kw)
    n = int(onp.prod(grid_shape)) if mask is None else int(mask.sum())
    if name == "dense":
        return DenseLinear(n, **kw)
    points = _field(dataset_like, "points")
    if points is None:
        C = grid_coordinates(grid_shape).reshape(len(grid_shape), -1).T
        points = C if mask is None else C[mask.ravel()]
    elif onp.ndim(points) not in (1, 2) or onp.shape(points)[0] != n:
        raise ValueError(f"dataset_like.points must have {n} rows, one per unknown of the grid "
                         f"{grid_shape}{' and mask' if mask is not None else ''}, got shape "
                         f"{onp.shape(points)}")
    return DeepONet(points, **kw)
