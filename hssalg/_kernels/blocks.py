"""Blockwise transposes of a flat buffer of row-major blocks.

A symmetric neural layer (:class:`hssalg_nn.HSSLinear` with ``symmetric=True``)
builds its generators from its parameters at every step: each leaf block D_i
enters as (P_i + P_iᵀ) / 2 and every B21 block is the transpose of the node's
B12 block; the gradient goes back through the same maps. Done by gathering the
whole buffer through an index array this took 14.0 ms at n = 2^16 (leaf 64, one
thread; the layer's forward product takes about 30 ms); the loops below, which
visit one block at a time so that each is read from memory once and transposed
in cache, take 8.1 ms on one thread and 4.8 ms on two (calls alternated in one
process, the same bits out). The transposed reads cost more than the traffic:
a copy of the buffer takes 2.8 ms.

Both kernels allocate their output and never write into their input. Blocks
are stored one after the other: block j is the (rows[j], cols[j]) row-major
matrix ``buf[off[j]:off[j + 1]]``. They share the blocks out among
``n_threads`` numba threads (call them through :func:`.matvec.run_parallel`);
each block is written by one thread, so the result does not depend on the
number of threads.
"""

from numba import njit, prange

# outputs huge-page backed, as in .grad: a fresh 32 MB buffer otherwise faults in page by page
from .alloc import empty


@njit(cache=True)
def _runs(n_blocks, n_threads):
    """Number of runs of blocks to share among threads: a few per thread, so that they are
    taken as threads come free."""
    return min(n_blocks, 4 * n_threads)


@njit(cache=True)
def _run(t, n_runs, n_blocks):
    """The blocks ``lo:hi`` of run t when n_blocks are cut into n_runs runs."""
    return t * n_blocks // n_runs, (t + 1) * n_blocks // n_runs


@njit(cache=True)
def _symmetric_block(P, S, lo, hi, m):
    """S[lo:hi] = the symmetric part of the (m, m) block P[lo:hi] (S: the caller's output)."""
    # 2-D views: 10% faster than flat index arithmetic at m = 64 (6.8 against 7.6 ms for
    # 1024 blocks on one thread; a copy of the buffer takes 2.8 ms)
    Pj = P[lo:hi].reshape(m, m)
    Sj = S[lo:hi].reshape(m, m)
    for r in range(m):
        for c in range(m):
            Sj[r, c] = 0.5 * (Pj[r, c] + Pj[c, r])


@njit(cache=True)
def _transpose_block(P, T, lo, hi, nr, nc):
    """T[lo:hi] = the (nr, nc) block P[lo:hi] transposed (T: the caller's output)."""
    Pj = P[lo:hi].reshape(nr, nc)
    Tj = T[lo:hi].reshape(nc, nr)
    # rows of the transpose in turn: contiguous writes, the block's columns read from cache
    for c in range(nc):
        for r in range(nr):
            Tj[c, r] = Pj[r, c]


@njit(cache=True, parallel=True)
def _map_blocks(P, off, rows, cols, n_threads, symmetrise):
    """Every block of P transposed, or (square blocks) its symmetric part, on n_threads."""
    out = empty(P.shape[0], P.dtype)
    n_blocks = rows.shape[0]
    n_runs = _runs(n_blocks, n_threads)
    for t in prange(n_runs):
        lo, hi = _run(t, n_runs, n_blocks)
        for j in range(lo, hi):
            if symmetrise:
                _symmetric_block(P, out, off[j], off[j + 1], rows[j])
            else:
                _transpose_block(P, out, off[j], off[j + 1], rows[j], cols[j])
    return out


@njit(cache=True)
def symmetric_blocks(P, off, rows, n_threads):
    """(P_j + P_jᵀ) / 2 for every square block P_j of a flat buffer.

    Parameters
    ----------
    P : (size,) float array
        Square blocks one after the other.
    off : (n_blocks + 1,) int64 array
        Block j is ``P[off[j]:off[j + 1]]``, a (rows[j], rows[j]) row-major matrix.
    rows : (n_blocks,) int64 array
    n_threads : int
        Threads to share the blocks (:func:`.matvec.run_parallel`).

    Returns
    -------
    S : (size,) array of P's dtype
        The symmetric parts, in the same layout. Entry (r, c) of a block is
        ``0.5 * (P_j[r, c] + P_j[c, r])``, so S_j is symmetric to the last bit.
    """
    return _map_blocks(P, off, rows, rows, n_threads, True)


@njit(cache=True)
def transpose_blocks(P, off, rows, cols, n_threads):
    """Every block of a flat buffer transposed.

    Parameters
    ----------
    P : (size,) array
        Blocks one after the other.
    off : (n_blocks + 1,) int64 array
        Block j is ``P[off[j]:off[j + 1]]``, a (rows[j], cols[j]) row-major matrix.
    rows, cols : (n_blocks,) int64 arrays
    n_threads : int
        Threads to share the blocks (:func:`.matvec.run_parallel`).

    Returns
    -------
    T : (size,) array of P's dtype
        Block j is P_jᵀ, a (cols[j], rows[j]) row-major matrix at the same offset.
    """
    return _map_blocks(P, off, rows, cols, n_threads, False)
