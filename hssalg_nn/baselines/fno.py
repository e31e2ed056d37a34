"""The Fourier neural operator (Li et al., ICLR 2021) in 1, 2 and 3 dimensions.

Z. Li, N. Kovachki, K. Azizzadenesheli, B. Liu, K. Bhattacharya, A. Stuart,
A. Anandkumar, "Fourier Neural Operator for Parametric Partial Differential
Equations", ICLR 2021 (arXiv 2010.08895). The architecture follows the paper:
a pointwise lift P of the input value and the grid coordinates to ``width``
channels, L Fourier layers ``v <- sigma(W v + K v + b)`` in which K multiplies
the lowest Fourier modes of every channel by learned complex ``width x width``
matrices (one per mode) and drops the others, and a pointwise projection Q with
one hidden layer.

The kernel integral K is one autograd primitive (:func:`spectral_conv`) with
hand-written adjoints built from the truncated transform of :class:`SpectralGrid`:
only the retained modes are transformed, the channel mixing is one batched
complex matmul over the modes, and nothing of size (modes x grid) is ever
formed. Any grid size works (autograd's own ``rfftn`` gradient needs even sizes).
"""

import autograd.numpy as anp
import numpy as onp
from autograd.extend import defvjp_argnums, primitive

from hssalg._validation import check_positive_int

from ._nn import (ACTIVATION_DERIVATIVES, FAST_ACTIVATIONS, Count, GridScatter, as_batch, check_activation,
                  check_grid_shape, check_mask, dense_init, grid_coordinates)

__all__ = ["FNO", "SpectralGrid", "spectral_conv", "project"]


class SpectralGrid:
    """The truncated real Fourier transform of a grid and its inverse.

    Retained modes: ``k_j in {0..m_j-1} U {n_j-m_j..n_j-1}`` on every axis but
    the last (positive and negative frequencies, the corners of the spectrum)
    and ``k_d in {0..m_d-1}`` on the last axis (the half spectrum of ``rfftn``;
    the other half is the complex conjugate), ``K = prod_j (2 m_j) * m_d / 2``
    modes in all, flattened in C order of the shape :attr:`kshape`.

    :meth:`forward` maps a real batch v (B, C, N) (N the grid points in C order)
    to its retained DFT coefficients ``V_k = sum_x v_x exp(-2 pi i k.x / n)``,
    a complex array (K, B, C); :meth:`inverse` maps such coefficients Z back to
    the grid, ``y_x = (1/N) sum_k c_k Re(Z_k exp(2 pi i k.x / n))`` with
    ``c_k = 1`` when ``k_d = 0`` or ``k_d = n_d / 2`` (the Nyquist frequency) and
    2 otherwise -- ``irfftn`` of the zero-filled half spectrum.

    Both are real-linear (Z as the pair Re Z, Im Z). Their adjoints, used by the
    VJP of :func:`spectral_conv`, are ``F^T Z = N * inverse(Z / c)`` and
    ``I^T g = (c / N) * forward(g)``: expand the sums above and exchange them.

    Parameters
    ----------
    grid_shape : tuple of 1 to 3 ints
    modes : tuple of ints, one per axis
        ``1 <= m_j <= n_j // 2`` on the leading axes (so that the positive and
        negative corners do not overlap; ``2 m_j = n_j`` keeps every
        frequency) and ``1 <= m_d <= n_d // 2 + 1`` on the last (all of the
        half spectrum).
    """

    def __init__(self, grid_shape, modes):
        self.grid_shape = check_grid_shape(grid_shape)
        self.modes = _check_modes(modes, self.grid_shape)
        self.ndim = len(self.grid_shape)
        self.N = int(onp.prod(self.grid_shape))
        self.kshape = tuple(2 * m for m in self.modes[:-1]) + (self.modes[-1],)
        self.K = int(onp.prod(self.kshape))
        c = onp.full(self.kshape, 2.0)
        c[..., 0] = 1.0
        if self.grid_shape[-1] % 2 == 0 and self.modes[-1] == self.grid_shape[-1] // 2 + 1:
            c[..., -1] = 1.0        # the Nyquist coefficient is its own conjugate, as k_d = 0
        self.c = c.reshape(self.K, 1, 1)

    def forward(self, v):
        """(B, C, N) real -> (K, B, C) complex: the retained DFT coefficients."""
        B, C = v.shape[0], v.shape[1]
        Z = onp.fft.rfft(onp.reshape(v, (B, C) + self.grid_shape), axis=-1)[..., :self.modes[-1]]
        for j in range(self.ndim - 1):
            ax, n, m = 2 + j, self.grid_shape[j], self.modes[j]
            Z = onp.fft.fft(Z, axis=ax)
            if 2 * m < n:   # keep the two corners, low positive and low negative frequencies
                Z = onp.concatenate([_take(Z, ax, 0, m), _take(Z, ax, n - m, n)], axis=ax)
        return Z.reshape(B, C, self.K).transpose(2, 0, 1)

    def inverse(self, Z):
        """(K, B, C) complex -> (B, C, N) real: the grid function with these retained coefficients."""
        K, B, C = Z.shape
        Zc = Z.transpose(1, 2, 0).reshape((B, C) + self.kshape)
        for j in reversed(range(self.ndim - 1)):
            ax, n, m = 2 + j, self.grid_shape[j], self.modes[j]
            if 2 * m < n:   # zero-fill the middle (high) frequencies
                shape = list(Zc.shape)
                shape[ax] = n - 2 * m
                Zc = onp.concatenate([_take(Zc, ax, 0, m), onp.zeros(shape, dtype=Zc.dtype),
                                      _take(Zc, ax, m, 2 * m)], axis=ax)
            Zc = onp.fft.ifft(Zc, axis=ax)
        # irfft zero-pads the m_d retained coefficients to n_d // 2 + 1 and drops Im of k_d = 0
        y = onp.fft.irfft(Zc, n=self.grid_shape[-1], axis=-1)
        return y.reshape(B, C, self.N)


def _take(a, axis, lo, hi):
    idx = [slice(None)] * a.ndim
    idx[axis] = slice(lo, hi)
    return a[tuple(idx)]


@primitive
def spectral_conv(v, wr, wi, sg):
    """The Fourier layer's kernel integral K v: ``inverse(forward(v) @ (wr + i wi))``.

    Parameters
    ----------
    v : (B, C_in, N) array
    wr, wi : (K, C_in, C_out) arrays
        Real and imaginary parts of one complex C_in x C_out matrix per mode.
    sg : SpectralGrid

    Returns
    -------
    (B, C_out, N) array

    Notes
    -----
    One primitive with all three gradients: with ``G = (c / N) forward(g)``
    (the adjoint of the inverse transform applied to the output gradient g),
    ``dv = N inverse((G W^H) / c)`` and ``dW = conj(forward(v))^T G`` per mode,
    whose real and imaginary parts are dwr and dwi.
    """
    return sg.inverse(sg.forward(v) @ (wr + 1j * wi))


def _spectral_conv_vjp(argnums, ans, args, kwargs):
    v, wr, wi, sg = args

    def vjp(g):
        G = sg.forward(g)
        G *= sg.c / sg.N
        out = {}
        if 0 in argnums:
            GW = G @ (wr - 1j * wi).transpose(0, 2, 1)
            GW /= sg.c
            out[0] = sg.N * sg.inverse(GW)
        if 1 in argnums or 2 in argnums:
            dW = onp.conj(sg.forward(v)).transpose(0, 2, 1) @ G
            out[1], out[2] = dW.real.copy(), dW.imag.copy()
        return tuple(out[i] for i in argnums)
    return vjp


defvjp_argnums(spectral_conv, _spectral_conv_vjp)


# columns of the hidden (P, chunk) block of the fused projection: about 1 MB, so it stays in cache
_PROJECT_BLOCK = 1 << 17


def _column_chunks(P, N):
    step = max(16, _PROJECT_BLOCK // max(P, 1))
    return [slice(s, min(s + step, N)) for s in range(0, N, step)]


@primitive
def project(v, W1, b1, w2, b2, activation):
    """The pointwise projection Q with one hidden layer, fused: ``y = w2 sigma(W1 v + b1) + b2``.

    Parameters
    ----------
    v : (B, c, N) array
    W1 : (P, c), b1 : (P,), w2 : (1, P), b2 : (1,) arrays
    activation : str, a key of ``ACTIVATION_DERIVATIVES``

    Returns
    -------
    y : (B, N) array

    Notes
    -----
    Computed one sample and one cache-sized block of points at a time, and
    the hidden layer is recomputed in the backward pass instead of kept: the
    (B, P, N) hidden state of a wide projection is the largest array of an
    FNO (128 x 4096 per sample on a 64^2 grid), and streaming it through
    memory made the projection the most expensive part of a training step
    (measured on a 64^2 grid, batch 10, width 32 -> 128: forward and backward
    took 170 ms unblocked, 110 ms blocked).
    """
    sigma = FAST_ACTIVATIONS[activation]
    y = onp.empty((v.shape[0], v.shape[2]))
    for b in range(v.shape[0]):
        for cols in _column_chunks(W1.shape[0], v.shape[2]):
            pre = W1 @ v[b, :, cols]
            pre += b1[:, None]
            y[b, cols] = w2[0] @ sigma(pre)
    y += b2[0]
    return y


def _project_vjp(argnums, ans, args, kwargs):
    v, W1, b1, w2, b2, activation = args
    sigma = ACTIVATION_DERIVATIVES[activation]

    def vjp(g):
        dv = onp.empty_like(v)
        dW1, db1, dw2 = onp.zeros_like(W1), onp.zeros_like(b1), onp.zeros_like(w2)
        for b in range(v.shape[0]):
            for cols in _column_chunks(W1.shape[0], v.shape[2]):
                vb, gb = v[b, :, cols], g[b, cols]
                pre = W1 @ vb
                pre += b1[:, None]
                h, dh = sigma(pre)
                dw2[0] += h @ gb
                dh *= w2[0][:, None]
                dh *= gb[None, :]                 # d loss / d pre, (P, chunk)
                dW1 += dh @ vb.T
                db1 += dh.sum(axis=1)
                dv[b, :, cols] = W1.T @ dh
        grads = {0: dv, 1: dW1, 2: db1, 3: dw2, 4: onp.array([g.sum()])}
        return tuple(grads[i] for i in argnums)
    return vjp


defvjp_argnums(project, _project_vjp)


def _check_modes(modes, grid_shape):
    if isinstance(modes, (int, onp.integer)) and not isinstance(modes, bool):
        modes = (int(modes),) * len(grid_shape)
    try:
        modes = tuple(modes)
    except TypeError:
        raise TypeError(f"modes must be an int or one int per grid axis ({len(grid_shape)}), "
                        f"got {type(modes).__name__} {modes!r}") from None
    if len(modes) != len(grid_shape):
        raise ValueError(f"modes must be an int or one int per grid axis ({len(grid_shape)}), got {modes!r}")
    out = []
    last = len(grid_shape) - 1
    for j, (m, n) in enumerate(zip(modes, grid_shape)):
        m = check_positive_int(m, f"modes[{j}]")
        if j < last and m > n // 2:
            raise ValueError(f"modes[{j}] = {m} exceeds half the grid size along axis {j} "
                             f"(grid_shape[{j}] // 2 = {n // 2}); the retained positive and negative "
                             f"frequencies would overlap")
        if j == last and m > n // 2 + 1:
            raise ValueError(f"modes[{j}] = {m} exceeds the {n // 2 + 1} frequencies of the real FFT "
                             f"along the last axis (grid_shape[{j}] = {n})")
        out.append(m)
    return tuple(out)


class FNO:
    """Fourier neural operator on a 1-, 2- or 3-D grid (optionally masked).

    Parameters
    ----------
    grid_shape : tuple of 1 to 3 ints
        The box grid (n_1, ..., n_d); the n unknowns are its points in C order,
        or the True points of ``mask``.
    modes : int or tuple of ints
        Fourier modes kept per axis: ``2 m_j`` on the leading axes (positive
        and negative, ``1 <= m_j <= n_j // 2``) and ``m_d`` of the half
        spectrum on the last (``1 <= m_d <= n_d // 2 + 1``).
    width : int >= 1
        Channels of the hidden state.
    n_layers : int >= 0
        Fourier layers L.
    activation : {"gelu", "relu", "tanh", "identity"}
        sigma, as in :class:`hssalg_nn.NeuralHSS` (GELU in Li et al.).
    mask : bool array of grid_shape, optional
        Unknowns of a non-rectangular domain; the input is scattered into the
        box with zeros outside, the output gathered back.
    coords : bool
        Append the grid coordinates (in [0, 1], :func:`grid_coordinates`) to
        the input as d extra channels, as in the paper. Without them the model
        is equivariant to periodic shifts of the grid.
    proj_width : int >= 1
        Hidden width of the projection Q (128 in Li et al.).

    Notes
    -----
    Parameters::

        {"lift": {"w": (width, 1 + d), "b": (width,)},          # d = 0 without coords
         "layers": {"0": {"wr": (K, width, width), "wi": (K, width, width),
                          "w": (width, width), "b": (width,)}, ...},
         "proj": {"0": {"w": (proj_width, width), "b": (proj_width,)},
                  "1": {"w": (1, proj_width), "b": (1,)}}}

    ``wr + i wi`` are the complex mode multipliers, mode index first in the C
    order of :attr:`SpectralGrid.kshape`. Initialisation: Glorot-normal lift
    and projection; per layer ``w ~ N(0, 1/(2 width))`` and ``wr, wi ~ N(0,
    1/(4 width))``, so the pointwise and the spectral part each carry about half
    of the output variance (as the blocks of NeuralHSS); biases zero. Every
    Fourier layer applies sigma (Li et al.'s equation (2)).

    Cost per sample and layer: two truncated FFTs of the ``width`` channels,
    O(width N log N), a ``width x width`` matmul per retained mode, O(K width^2),
    and the pointwise W, O(N width^2).
    """

    def __init__(self, grid_shape, modes, width, n_layers=4, activation="gelu", mask=None, coords=True,
                 proj_width=128):
        self.grid_shape = check_grid_shape(grid_shape)
        self.modes = _check_modes(modes, self.grid_shape)
        self.width = check_positive_int(width, "width")
        self.n_layers = check_positive_int(n_layers, "n_layers", minimum=0)
        self._sigma = check_activation(activation)
        self.activation = activation
        self.mask = check_mask(mask, self.grid_shape)
        self.coords = bool(coords)
        self.proj_width = check_positive_int(proj_width, "proj_width")
        self.ndim = len(self.grid_shape)
        self._grid = GridScatter(self.grid_shape, self.mask)
        self._spectral = SpectralGrid(self.grid_shape, self.modes)
        self._coords = grid_coordinates(self.grid_shape).reshape(self.ndim, -1)

    @property
    def n(self):
        """Number of unknowns (columns of X)."""
        return self._grid.n

    @property
    def n_params(self):
        """Number of trainable scalars (an int; ``n_params(params)`` counts a pytree)."""
        c, K, P = self.width, self._spectral.K, self.proj_width
        n_in = 1 + (self.ndim if self.coords else 0)
        per_layer = 2 * K * c * c + c * c + c
        return Count(c * (n_in + 1) + self.n_layers * per_layer + P * (c + 1) + P + 1)

    def __repr__(self):
        masked = f", masked n={self.n}" if self.mask is not None else ""
        return (f"FNO(grid_shape={self.grid_shape}, modes={self.modes}, width={self.width}, "
                f"n_layers={self.n_layers}, activation={self.activation!r}{masked}, "
                f"n_params={int(self.n_params)})")

    def init(self, seed=0):
        """Random parameters (see the class notes); a nested dict of float64 arrays."""
        rng = onp.random.default_rng(seed)
        c, K = self.width, self._spectral.K
        n_in = 1 + (self.ndim if self.coords else 0)
        params = {"lift": dense_init(rng, n_in, c), "layers": {}}
        for l in range(self.n_layers):
            params["layers"][str(l)] = {
                "wr": rng.standard_normal((K, c, c)) / onp.sqrt(4.0 * c),
                "wi": rng.standard_normal((K, c, c)) / onp.sqrt(4.0 * c),
                "w": rng.standard_normal((c, c)) / onp.sqrt(2.0 * c),
                "b": onp.zeros(c)}
        params["proj"] = {"0": dense_init(rng, c, self.proj_width), "1": dense_init(rng, self.proj_width, 1)}
        return params

    def spectral_conv(self, layer, v):
        """K v for one layer's parameters; v (B, width, N) -> (B, width, N)."""
        return spectral_conv(v, layer["wr"], layer["wi"], self._spectral)

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
        x = anp.reshape(self._grid.to_box(X), (B, 1, self._grid.size))
        lift = params["lift"]
        w = lift["w"]
        v = w[None, :, :1] * x                                      # (B, c, N)
        if self.coords:
            v = v + anp.dot(w[:, 1:], self._coords)[None]
        v = v + lift["b"][None, :, None]
        # every container is read once: autograd's gradient of a dict lookup starts from a zero copy
        # of the whole dict, which for the spectral weights is most of the parameters
        layers = params["layers"]
        for l in range(self.n_layers):
            layer = layers[str(l)]
            z = anp.matmul(layer["w"], v) + self.spectral_conv(layer, v) + layer["b"][None, :, None]
            v = self._sigma(z)
        p0, p1 = params["proj"]["0"], params["proj"]["1"]
        y = project(v, p0["w"], p0["b"], p1["w"], p1["b"], self.activation)   # (B, N)
        return self._grid.from_box(y)

    __call__ = apply

