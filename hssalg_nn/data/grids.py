"""Uniform grids on the unit box: coordinates, the Dirichlet sine transform, stencils.

Conventions shared by every generator:

* ``grid`` is the number of unknowns per dimension. For Dirichlet problems the
  unknowns are the interior points ``x_j = (j + 1) h``, ``j = 0 .. grid - 1``,
  with ``h = 1 / (grid + 1)``; the boundary values (zero) are not unknowns.
* Arrays of samples are (N, n) blocks; a sample reshapes to the box shape
  ``(grid,) * dim`` in C order (axis 0 is the coordinate ``x_0``).
* Nothing here forms an n x n dense matrix; sparse operators are CSR/CSC.
"""

import numpy as np
import scipy.fft
import scipy.sparse as sp

# Work on at most this many float64 entries at a time in batched transforms, so a
# 128^3 grid (2M unknowns) with many samples never needs more than ~64 MB of
# temporaries beyond the input and output blocks.
_CHUNK_ENTRIES = 1 << 23


def axis_coordinates(grid, h):
    """Interior coordinates ``(j + 1) h`` of one axis, (grid,) float64."""
    return h * np.arange(1, grid + 1, dtype=np.float64)


def box_points(axes):
    """Coordinates of a tensor grid in C order.

    Parameters
    ----------
    axes : sequence of d (g_a,) arrays
        Coordinates along each axis.

    Returns
    -------
    points : (prod g_a, d) ndarray
        ``points[i]`` is the point of the i-th entry of a C-order flattening of
        the grid of shape ``(g_0, ..., g_{d-1})``.
    """
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


def dirichlet_symbol_1d(grid, h):
    """Eigenvalues of the 1-D Dirichlet second difference ``-D2``, (grid,) float64.

    ``mu_k = (4 / h^2) sin^2(k pi h / 2)``, ``k = 1 .. grid``, for the eigenvector
    ``sin(k pi x_j)``: exactly the vectors the type-I sine transform diagonalises.
    """
    k = np.arange(1, grid + 1, dtype=np.float64)
    return (4.0 / h**2) * np.sin(0.5 * np.pi * k * h) ** 2


def dirichlet_symbol(dim, grid, h):
    """Eigenvalues of the d-D Dirichlet 2d+1-point ``-Delta_h``, array of shape (grid,)*dim."""
    mu = dirichlet_symbol_1d(grid, h)
    total = np.zeros((grid,) * dim)
    for a in range(dim):
        shape = [1] * dim
        shape[a] = grid
        total = total + mu.reshape(shape)
    return total


def sine_multiply(F, multiplier):
    """Apply ``S diag(multiplier) S`` to each row of F, with S the orthonormal DST-I.

    S is symmetric and orthogonal (its own inverse), so this applies the
    function of the Dirichlet Laplacian whose eigenvalues are ``multiplier``.
    Cost O(n log n) per sample; rows are processed in chunks to bound memory.

    Parameters
    ----------
    F : (N, n) ndarray
        Samples, each a C-order flattening of ``multiplier.shape``.
    multiplier : ndarray of the box shape, n entries

    Returns
    -------
    (N, n) ndarray, new
    """
    shape = multiplier.shape
    n = multiplier.size
    N = F.shape[0]
    out = np.empty((N, n))
    axes = tuple(range(1, len(shape) + 1))
    step = max(1, _CHUNK_ENTRIES // max(n, 1))
    for s in range(0, N, step):
        block = F[s:s + step].reshape((-1,) + shape)
        coef = scipy.fft.dstn(block, type=1, axes=axes, norm="ortho")
        coef *= multiplier
        out[s:s + step] = scipy.fft.idstn(coef, type=1, axes=axes, norm="ortho").reshape(-1, n)
    return out


def neg_laplacian_stencil(U, shape, h):
    """Matrix-free ``-Delta_h U`` with zero Dirichlet values outside the box.

    The 2d+1-point stencil ``sum_a (2 u_i - u_{i+e_a} - u_{i-e_a}) / h^2``,
    evaluated by shifted slices: independent of the sine transform, so it
    serves as the residual check of the fast solvers.

    Parameters
    ----------
    U : (N, n) ndarray
    shape : tuple of d ints, prod = n
    h : float

    Returns
    -------
    (N, n) ndarray
    """
    N = U.shape[0]
    d = len(shape)
    G = U.reshape((N,) + tuple(shape))
    pad = np.pad(G, [(0, 0)] + [(1, 1)] * d)
    out = 2.0 * d * G
    for a in range(1, d + 1):
        lo = [slice(1, -1)] * (d + 1)
        hi = [slice(1, -1)] * (d + 1)
        lo[0] = hi[0] = slice(None)
        lo[a] = slice(0, -2)
        hi[a] = slice(2, None)
        out = out - pad[tuple(lo)] - pad[tuple(hi)]
    return (out / h**2).reshape(N, U.shape[1])


def kron_sum(ops):
    """Sparse Kronecker sum ``sum_a I x .. x T_a x .. x I`` in C order (axis 0 slowest).

    Parameters
    ----------
    ops : sequence of d sparse (g_a, g_a) matrices

    Returns
    -------
    (n, n) scipy.sparse CSR matrix, n = prod g_a
    """
    sizes = [op.shape[0] for op in ops]
    total = None
    for a, op in enumerate(ops):
        left = sp.identity(int(np.prod(sizes[:a], dtype=np.int64)), format="csr")
        right = sp.identity(int(np.prod(sizes[a + 1:], dtype=np.int64)), format="csr")
        term = sp.kron(sp.kron(left, op, format="csr"), right, format="csr")
        total = term if total is None else total + term
    return total.tocsr()


def second_difference_1d(grid, h):
    """Sparse 1-D Dirichlet ``-D2``: tridiag(-1, 2, -1) / h^2, (grid, grid) CSR."""
    main = np.full(grid, 2.0)
    off = np.full(grid - 1, -1.0)
    return sp.diags([off, main, off], [-1, 0, 1], format="csr") / h**2
