"""DeepONet (Lu et al., Nature Machine Intelligence 2021).

L. Lu, P. Jin, G. Pang, Z. Zhang, G. E. Karniadakis, "Learning nonlinear
operators via DeepONet based on the universal approximation theorem of
operators", Nat. Mach. Intell. 3, 218-229 (2021). The unstacked DeepONet: a
*branch* MLP encodes the input function sampled at m sensor points into p
coefficients b_k(u), a *trunk* MLP maps an output location y to p basis values
t_k(y), and ``G(u)(y) = sum_k b_k(u) t_k(y) + b_0``. Here the output locations
are the n unknowns themselves, so the trunk is evaluated once per call on the
fixed points and the output is one (batch x p) @ (p x n) product.
"""

import numbers

import autograd.numpy as anp
import numpy as onp

from hssalg._validation import check_positive_int

from ._nn import Count, as_batch, check_activation, mlp_apply, mlp_init, mlp_n_params

__all__ = ["DeepONet"]


def _check_points(points):
    P = onp.asarray(points, dtype=onp.float64)
    if P.ndim == 1:
        P = P[:, None]
    if P.ndim != 2 or P.shape[0] < 1 or not 1 <= P.shape[1] <= 3:
        raise ValueError(f"points must be an (n, d) array with d in 1..3, got shape {onp.shape(points)}")
    if not onp.all(onp.isfinite(P)):
        raise ValueError("points contains non-finite entries")
    return P


def _check_sensors(sensors, n):
    if sensors is None:
        return onp.arange(n)
    if isinstance(sensors, numbers.Integral) and not isinstance(sensors, bool):
        m = int(sensors)
        if not 1 <= m <= n:
            raise ValueError(f"sensors (a count) must lie in 1..n = 1..{n}, got {m}")
        # evenly spaced through the index order of the unknowns: deterministic, and it
        # covers the domain when the unknowns are in grid (C) order
        return onp.unique(onp.round(onp.linspace(0, n - 1, m)).astype(onp.int64))
    idx = onp.asarray(sensors)
    if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
        raise ValueError(f"sensors must be None, a count, or a 1-D array of point indices, got {sensors!r:.80}")
    if idx.min() < 0 or idx.max() >= n:
        raise ValueError(f"sensors holds indices outside 0..{n - 1} (min {idx.min()}, max {idx.max()})")
    if onp.unique(idx).size != idx.size:
        raise ValueError("sensors holds repeated indices")
    return idx.astype(onp.int64)


class DeepONet:
    """Unstacked DeepONet evaluated at the n unknowns.

    Parameters
    ----------
    points : (n, d) array_like, d in 1..3
        Coordinates of the unknowns, in the column order of X. They are mapped
        affinely to [0, 1]^d (per coordinate, from their bounding box) before
        entering the trunk.
    sensors : None, int or (m,) int array
        Where the branch reads the input function: None, every unknown
        (m = n); an int m, m indices evenly spaced through 0..n-1; or the
        indices themselves.
    width : int >= 1
        Hidden width of both MLPs.
    depth : int >= 0
        Hidden layers of both MLPs.
    p : int >= 1
        Number of basis functions (output width of branch and trunk).
    activation : {"gelu", "relu", "tanh", "identity"}
        tanh in Lu et al.; GELU by default here, as for the other models.

    Notes
    -----
    Parameters::

        {"branch": MLP m -> width (x depth) -> p,
         "trunk":  MLP d -> width (x depth) -> p   (activation also on its output, as in Lu et al.),
         "bias": (1,)}

    where an MLP is ``{"0": {"w": (out, in), "b": (out,)}, "1": ...}``,
    Glorot-normal weights and zero biases. The output is divided by sqrt(p) so
    that it starts at the scale of one basis function.
    """

    def __init__(self, points, sensors=None, width=64, depth=2, p=64, activation="gelu"):
        self.points = _check_points(points)
        n, d = self.points.shape
        self.sensors = _check_sensors(sensors, n)
        self.width = check_positive_int(width, "width")
        self.depth = check_positive_int(depth, "depth", minimum=0)
        self.p = check_positive_int(p, "p")
        self._sigma = check_activation(activation)
        self.activation = activation
        lo, hi = self.points.min(axis=0), self.points.max(axis=0)
        span = onp.where(hi > lo, hi - lo, 1.0)
        self._y = (self.points - lo) / span
        self._branch_sizes = [self.sensors.size] + [self.width] * self.depth + [self.p]
        self._trunk_sizes = [d] + [self.width] * self.depth + [self.p]

    @property
    def n(self):
        """Number of unknowns (columns of X)."""
        return self.points.shape[0]

    @property
    def n_params(self):
        """Number of trainable scalars (an int; ``n_params(params)`` counts a pytree)."""
        return Count(mlp_n_params(self._branch_sizes) + mlp_n_params(self._trunk_sizes) + 1)

    def __repr__(self):
        return (f"DeepONet(n={self.n}, d={self.points.shape[1]}, sensors={self.sensors.size}, width={self.width}, "
                f"depth={self.depth}, p={self.p}, activation={self.activation!r}, n_params={int(self.n_params)})")

    def init(self, seed=0):
        """Random parameters (see the class notes); a nested dict of float64 arrays."""
        rng = onp.random.default_rng(seed)
        return {"branch": mlp_init(rng, self._branch_sizes), "trunk": mlp_init(rng, self._trunk_sizes),
                "bias": onp.zeros(1)}

    def apply(self, params, X):
        """Model output for a batch.

        Parameters
        ----------
        params : nested dict from :meth:`init`
        X : (batch, n) array_like
            Input functions at the unknowns, rows are samples.

        Returns
        -------
        Y : (batch, n) array
        """
        X, _ = as_batch(X, self.n)
        b = mlp_apply(params["branch"], X[:, self.sensors], self._sigma)                 # (B, p)
        t = mlp_apply(params["trunk"], self._y, self._sigma, final_activation=True)       # (n, p)
        return anp.dot(b, t.T) / onp.sqrt(self.p) + params["bias"]

    __call__ = apply
