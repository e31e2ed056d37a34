"""hssalg: hierarchically semi-separable (HSS) matrices, accelerated with numba.

Quick start::

    import numpy as np
    import hssalg as hs
    A = hs.gallery.toeplitz_inverse_distance(2048)
    H = hs.HSSMatrix.from_dense(A, leaf_size=64, rtol=1e-8)
    y = H @ np.ones(2048)

See the README and docs/ for the format, the algorithms and benchmarks.
"""

from importlib.metadata import PackageNotFoundError, version as _version

from . import arithmetic, gallery, kernels, testing, ulv
from .io import load, save
from .matrix import HSSMatrix
from .plot import plot_ranks, plot_tree
from .tree import ClusterTree

try:
    __version__ = _version("hssalg")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["ClusterTree", "HSSMatrix", "arithmetic", "gallery", "kernels", "testing", "ulv", "save", "load", "plot_ranks",
           "plot_tree", "__version__"]
