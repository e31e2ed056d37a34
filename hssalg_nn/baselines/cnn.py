"""A ResNet-type convolutional network on 1-, 2- and 3-D grids.

The local baseline: a pointwise lift to ``width`` channels, L residual blocks
``v <- v + sigma(conv(v) + b)`` (He et al., "Deep residual learning for image
recognition", CVPR 2016; the convolution-only ResNet used as a baseline in the
FNO and Neural-HSS papers) and a pointwise projection. Convolutions use zero
padding, i.e. a homogeneous Dirichlet condition outside the grid; with a mask
the state is set to zero outside the domain after every block, so the
boundary of an L-shaped domain is a Dirichlet boundary too.

A convolution is a sum over the ``kernel_size^d`` stencil offsets of shifted
views of the zero-padded state, each contracted with a (c_in, c_out) weight
matrix; it is one autograd primitive (:func:`conv`) whose adjoints are the same
sums transposed. The receptive field
grows by ``kernel_size - 1`` points per block: a CNN of L blocks cannot
represent a global solution operator such as Poisson's, which is why it is a
baseline.
"""

import itertools

import autograd.numpy as anp
import numpy as onp
from autograd.extend import defvjp, primitive

from hssalg._validation import check_positive_int

from ._nn import Count, GridScatter, as_batch, check_activation, check_grid_shape, check_mask, dense_init

__all__ = ["CNN", "conv"]


def _views(kernel_size, grid):
    """Index tuples of the shifted views of a padded (B, *grid, c) array, offsets in C order."""
    return [(slice(None),) + tuple(slice(o, o + n) for o, n in zip(off, grid)) + (slice(None),)
            for off in itertools.product(range(kernel_size), repeat=len(grid))]


def _pad(v, r):
    d = v.ndim - 2
    return onp.pad(v, [(0, 0)] + [(r, r)] * d + [(0, 0)])


@primitive
def conv(v, w, kernel_size):
    """Zero-padded 'same' convolution (cross-correlation) of a channels-last grid batch.

    Parameters
    ----------
    v : (B, *grid, c_in) array
    w : (kernel_size^d, c_in, c_out) array
        One matrix per stencil offset, offsets in C order of
        ``itertools.product(range(kernel_size), repeat=d)``; offset o reads the
        neighbour at ``x + o - kernel_size // 2``.
    kernel_size : odd int

    Returns
    -------
    (B, *grid, c_out) array

    Notes
    -----
    An autograd primitive: one BLAS product of (B N, c_in) by (c_in, c_out)
    per offset forward, two per offset backward (the input gradient is the
    transposed stencil applied to g, the weight gradient the correlation of
    the shifted inputs with g). Traced slicing would cost a scatter-add per
    offset in the backward pass.
    """
    grid = v.shape[1:-1]
    vp = _pad(v, kernel_size // 2)
    out = onp.zeros(v.shape[:-1] + (w.shape[2],))
    flat = out.reshape(-1, w.shape[2])
    for j, view in enumerate(_views(kernel_size, grid)):
        flat += onp.ascontiguousarray(vp[view]).reshape(-1, w.shape[1]) @ w[j]
    return out


def _conv_vjp_v(ans, v, w, kernel_size):
    def vjp(g):
        r = kernel_size // 2
        grid = v.shape[1:-1]
        gp = onp.zeros(v.shape[:1] + tuple(n + 2 * r for n in grid) + v.shape[-1:])
        g2 = g.reshape(-1, w.shape[2])
        for j, view in enumerate(_views(kernel_size, grid)):
            gp[view] += (g2 @ w[j].T).reshape(v.shape)
        crop = (slice(None),) + tuple(slice(r, r + n) for n in grid) + (slice(None),)
        return gp[crop]
    return vjp


def _conv_vjp_w(ans, v, w, kernel_size):
    def vjp(g):
        vp = _pad(v, kernel_size // 2)
        g2 = g.reshape(-1, w.shape[2])
        return onp.stack([onp.ascontiguousarray(vp[view]).reshape(-1, w.shape[1]).T @ g2
                          for view in _views(kernel_size, v.shape[1:-1])])
    return vjp


defvjp(conv, _conv_vjp_v, _conv_vjp_w)


class CNN:
    """Residual convolutional network (zero padding = Dirichlet), optionally masked.

    Parameters
    ----------
    grid_shape : tuple of 1 to 3 ints
        The box grid; the n unknowns are its points in C order, or the True
        points of ``mask``.
    width : int >= 1
        Channels.
    n_layers : int >= 0
        Convolutional blocks L.
    kernel_size : odd int >= 1
    activation : {"gelu", "relu", "tanh", "identity"}
    residual : bool
        ``v <- v + sigma(conv(v) + b)`` (ResNet) or ``v <- sigma(conv(v) + b)``.
    mask : bool array of grid_shape, optional
        Unknowns of a non-rectangular domain; the state is zero outside.

    Notes
    -----
    Parameters::

        {"lift": {"w": (width, 1), "b": (width,)},
         "layers": {"0": {"w": (kernel_size^d, width, width), "b": (width,)}, ...},
         "proj": {"w": (1, width), "b": (1,)}}

    Initialisation: Glorot-normal lift and projection; convolution weights
    ``N(0, 1 / (2 kernel_size^d width))`` (fan-in scaling, halved in residual
    networks so that the sum of L blocks does not blow up), biases zero.
    Cost per sample and block: ``kernel_size^d`` products of (N x width) by
    (width x width).
    """

    def __init__(self, grid_shape, width, n_layers, kernel_size=3, activation="gelu", residual=True, mask=None):
        self.grid_shape = check_grid_shape(grid_shape)
        self.width = check_positive_int(width, "width")
        self.n_layers = check_positive_int(n_layers, "n_layers", minimum=0)
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (a centred stencil), got {self.kernel_size}")
        self._sigma = check_activation(activation)
        self.activation = activation
        self.residual = bool(residual)
        self.mask = check_mask(mask, self.grid_shape)
        self.ndim = len(self.grid_shape)
        self._grid = GridScatter(self.grid_shape, self.mask)
        self._taps = self.kernel_size ** self.ndim
        self._inside = None if self.mask is None else self.mask.astype(onp.float64)[None, ..., None]

    @property
    def n(self):
        """Number of unknowns (columns of X)."""
        return self._grid.n

    @property
    def n_params(self):
        """Number of trainable scalars (an int; ``n_params(params)`` counts a pytree)."""
        c = self.width
        return Count(2 * c + self.n_layers * (self._taps * c * c + c) + c + 1)

    def __repr__(self):
        masked = f", masked n={self.n}" if self.mask is not None else ""
        return (f"CNN(grid_shape={self.grid_shape}, width={self.width}, n_layers={self.n_layers}, "
                f"kernel_size={self.kernel_size}, activation={self.activation!r}, residual={self.residual}"
                f"{masked}, n_params={int(self.n_params)})")

    def init(self, seed=0):
        """Random parameters (see the class notes); a nested dict of float64 arrays."""
        rng = onp.random.default_rng(seed)
        c = self.width
        std = 1.0 / onp.sqrt(2.0 * self._taps * c)
        params = {"lift": dense_init(rng, 1, c), "layers": {}}
        for l in range(self.n_layers):
            params["layers"][str(l)] = {"w": rng.standard_normal((self._taps, c, c)) * std, "b": onp.zeros(c)}
        params["proj"] = dense_init(rng, c, 1)
        return params

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
        X, B = as_batch(X, self.n)
        x = self._grid.to_box(X)[..., None]                                   # (B, *grid, 1)
        lift = params["lift"]
        v = x * lift["w"][:, 0] + lift["b"]                                   # (B, *grid, c)
        if self._inside is not None:
            v = v * self._inside
        layers = params["layers"]          # read once: each dict lookup costs a zero copy in the backward pass
        for l in range(self.n_layers):
            layer = layers[str(l)]
            z = self._sigma(conv(v, layer["w"], self.kernel_size) + layer["b"])
            v = v + z if self.residual else z
            if self._inside is not None:
                v = v * self._inside
        proj = params["proj"]
        y = anp.dot(v, proj["w"][0]) + proj["b"][0]                           # (B, *grid)
        return self._grid.from_box(anp.reshape(y, (B, self._grid.size)))

    __call__ = apply
