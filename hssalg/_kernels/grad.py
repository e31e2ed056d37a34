"""Product of an HSS matrix with a batch of row vectors, and its reverse-mode derivative.

The neural layer keeps a batch as an (s, n) array whose *rows* are the vectors,
so these kernels work on that layout directly: node i's slice of the batch is
the strided (s, m_i) block ``X[:, start:stop]``, handed to BLAS with its leading
dimension (no transposed copy of the batch). The compressed vectors are stored
transposed too, one contiguous row-major (s, k_a + k_b) block per pair of
siblings a, b, node a owning its first k_a columns and b the rest:

    xt_i = x̂_iᵀ   (upsweep of the input),   yt_i = ŷ_iᵀ   (downsweep),
    gt_i = ĝ_iᵀ   (upsweep of the cotangent), zt_i = ẑ_iᵀ (downsweep of the cotangent).

Why pairs: ``[xt_a | xt_b]`` is then one (s, k_a + k_b) matrix, and the
siblings' transfer blocks ``[T_a; T_b]`` (b = a + 1) are one contiguous
(k_a + k_b, k) block of the transfer buffer, so each step of a sweep through an
inner node is one BLAS call instead of two; with s = 32 and k = 16 these calls
are small (8k multiply-adds) and numerous. A block per pair rather than one
(s, sum of ranks) matrix per level keeps every operand within a few KiB: rows
a level apart (a power-of-two stride) made the wide levels thrash the cache.

As in :mod:`.matvec`, generators are passed *by role*: the column side
``(basis_in, transfer_in)`` compresses the input and the row side
``(basis_out, transfer_out)`` expands the output; ``C_ab`` of inner node i
(children a, b) maps x̂_b to ŷ_a, stored (k_out[a], k_in[b]), or transposed when
``trans_B``; ``C_ba`` likewise. For A X the roles are (V, W), (U, R), B12, B21;
for Aᵀ X they are (U, R), (V, W), B21ᵀ, B12ᵀ and Dᵀ.

Forward (rows are batch entries)::

    leaf:   xt_i = X_i Bin_i                    inner: xt_i = xt_a Tin_a + xt_b Tin_b
    pair:   yt_a = xt_b op(C_ab)ᵀ + yt_i Tout_aᵀ,   yt_b = xt_a op(C_ba)ᵀ + yt_i Tout_bᵀ
    leaf:   Y_i  = X_i op(D_i)ᵀ + yt_i Bout_iᵀ

Reverse, with cotangent G of Y (the transposed product on G, plus outer products)::

    leaf:   gt_i = G_i Bout_i                   inner: gt_i = gt_a Tout_a + gt_b Tout_b
    pair:   zt_b = gt_a op(C_ab) + zt_i Tin_bᵀ,    zt_a = gt_b op(C_ba) + zt_i Tin_aᵀ
    leaf:   dX_i = G_i op(D_i) + zt_i Bin_iᵀ
    dD_i = G_iᵀ X_i,  dBout_i = G_iᵀ yt_i,  dBin_i = X_iᵀ zt_i,
    dTout_c = gt_cᵀ yt_parent,  dTin_c = xt_cᵀ zt_parent,
    dC_ab = gt_aᵀ xt_b,  dC_ba = gt_bᵀ xt_a      (transposed when stored transposed)

In the column notation of HSS_PRIMER.md these are dD = G Xᵀ, dU = G ŷᵀ,
dV = X ẑᵀ, dR_c = ĝ_c ŷ_parentᵀ, dW_c = x̂_c ẑ_parentᵀ, dB12 = ĝ_a x̂_bᵀ,
dB21 = ĝ_b x̂_aᵀ and dX = Aᵀ G. Every kernel allocates its outputs and never
writes into an input. Cost: forward O(n (m + k) s), reverse about twice that.

Two things decide the speed besides the arithmetic (measured at n = 2^16, s = 32,
k = 16, m = 64, one thread):

* Products with a transposed second operand (``op(C)ᵀ``, ``[T_a; T_b]ᵀ``, ``D_iᵀ``,
  ``Bout_iᵀ``) copy it transposed into scratch and make the plain product
  (:func:`_gemm_op`, :func:`_gemm_nt`): OpenBLAS has small-matrix kernels for the plain
  form at these shapes but packs both operands for the other one.
* Most operands are out of cache when their step starts: the sweeps walk 8 MB pair
  buffers level by level, and a leaf's slice of the batch is s rows n doubles apart,
  a pattern the hardware prefetcher does not follow. Each step therefore prefetches the
  operands of the next one (:func:`_prefetch_span`) while its own products run.

Threads: :func:`tree_parts` cuts the tree at the first level with a few nodes per
thread. Each sweep runs the subtrees below the cut in a parallel loop (numba
threads take them as they come free), the few nodes above it on one thread, and
then the subtrees again for the way down: two parallel regions per sweep, no
barrier per level. Every product is the one the serial sweep makes, so results
do not depend on the number of threads. Measured at n = 2^16 (kernels alone,
2 threads against 1): forward 15.0 against 27.7 ms, reverse 18.3 against 34.2 ms.
"""

import llvmlite.binding as ll
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.core.extending import intrinsic, overload

# outputs from alloc: huge-page backed (page faults cost as much as the arithmetic here).
# numba's cache does not see changes in alloc.py; edit this file to recompile after one
from .alloc import empty
from .blas import SMALL_GEMM, gemm
from .matvec import workspace_like

# bytes per cache line: the step of the software prefetches below (x86-64 and most arm64)
_LINE = 64


def _prefetch(addr):
    """Ask the CPU to fetch the cache line holding address ``addr`` (a no-op without the JIT)."""


@intrinsic
def _prefetch_intrinsic(typingctx, addr):
    """The compiled :func:`_prefetch`: LLVM's prefetch intrinsic on the address."""
    if not isinstance(addr, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        # the intrinsic is overloaded on the pointer type: named by address space since LLVM 15
        name = "llvm.prefetch.p0" if ll.llvm_version_info[0] >= 15 else "llvm.prefetch.p0i8"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            name)
        # a read into L2 and up (locality 2: prefetcht1), of data
        builder.call(fn, [builder.inttoptr(args[0], i8p), ir.Constant(i32, 0), ir.Constant(i32, 2),
                          ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(addr), codegen


@overload(_prefetch)
def _ol_prefetch(addr):
    return lambda addr: _prefetch_intrinsic(addr)


@njit(cache=True)
def _prefetch_span(buf, lo, hi):
    """Prefetch ``buf[lo:hi]`` of a 1-D contiguous array."""
    if hi > lo:
        p = buf[lo:hi].ctypes.data
        first = p - p % _LINE
        for a in range(first, p + (hi - lo) * buf.itemsize, _LINE):
            _prefetch(a)


@njit(cache=True)
def _prefetch_cols(A, c0, c1):
    """Prefetch the block ``A[:, c0:c1]`` of a 2-D array with contiguous rows."""
    for r in range(A.shape[0]):
        _prefetch_span(A[r], c0, c1)


@njit(cache=True)
def _prefetch_pair(buf, base, width, node, s):
    """Prefetch the whole pair block holding ``node`` (see :func:`pair_layout`)."""
    _prefetch_span(buf, base[node], base[node] + s * width[node])


@njit(cache=True)
def _block(buf, off, node, rows, cols):
    return buf[off[node]:off[node + 1]].reshape(rows, cols)


@njit(cache=True)
def coupling_blocks(C_ab, C_ab_off, C_ba, C_ba_off, trans_B, node, a, k_in, k_out):
    """(C_ab, C_ba) of inner node ``node`` with children a and b = a + 1, as stored:
    (k_out[a], k_in[b]) and (k_out[b], k_in[a]), or the transposes when ``trans_B``."""
    b = a + 1
    if trans_B:
        return (_block(C_ab, C_ab_off, node, k_in[b], k_out[a]), _block(C_ba, C_ba_off, node, k_in[a], k_out[b]))
    return (_block(C_ab, C_ab_off, node, k_out[a], k_in[b]), _block(C_ba, C_ba_off, node, k_out[b], k_in[a]))


@njit(cache=True)
def _pair(buf, off, a, rows, cols):
    """The blocks of siblings a and a + 1 stacked: one contiguous (rows, cols) block."""
    return buf[off[a]:off[a + 2]].reshape(rows, cols)


@njit(cache=True)
def pair_layout(parent, left, k, s):
    """Where the (s, k_i) blocks of the compressed vectors live (module docstring).

    Parameters
    ----------
    parent, left : (n_nodes,) int64 arrays
        Of the tree; the right child of p is ``left[p] + 1``.
    k : (n_nodes,) int64 array
        Rank of every node (0 at the root).
    s : int
        Batch size.

    Returns
    -------
    base : (n_nodes,) int64 array
        Start of the (s, width[i]) row-major block holding node i and its sibling.
    width : (n_nodes,) int64 array
        ``k_a + k_b`` of that sibling pair (0 for the root, which stores nothing).
    col : (n_nodes,) int64 array
        First column of node i in the pair block (0 for a left child).
    size : int
        Length of the buffer.
    """
    n_nodes = left.shape[0]
    base = np.zeros(n_nodes, np.int64)
    width = np.zeros(n_nodes, np.int64)
    col = np.zeros(n_nodes, np.int64)
    size = 0
    for p in range(n_nodes):
        a = left[p]
        if a < 0:
            continue
        w = k[a] + k[a + 1]
        base[a] = size
        base[a + 1] = size
        width[a] = w
        width[a + 1] = w
        col[a + 1] = k[a]
        size += s * w
    return base, width, col, size


@njit(cache=True)
def _cols(buf, base, width, col, node, w, s):
    """Columns ``col[node]:col[node] + w`` of the pair block holding ``node``, an (s, w) view."""
    W = width[node]
    return buf[base[node]:base[node] + s * W].reshape(s, W)[:, col[node]:col[node] + w]


@njit(cache=True)
def _transpose_into(B, scratch):
    """Bᵀ as a contiguous (K, N) view of ``scratch`` for an (N, K) block B."""
    N, K = B.shape
    T = scratch[:N * K].reshape(K, N)
    # rows of T in turn: contiguous writes, B's columns read from cache after the first
    for j in range(K):
        for i in range(N):
            T[j, i] = B[i, j]
    return T


@njit(cache=True)
def _gemm_nt(alpha, A, B, beta, C, ws, scratch):
    """C <- alpha A Bᵀ + beta C, B (N, K) copied transposed into ``scratch`` first.

    OpenBLAS is markedly slower on the transposed-operand form for the leaf
    shapes here (s x m times m x m) than on the plain one (measured: 15-19
    against 9 ms for the D blocks at n = 2^16, s = 32, m = 64); the copy costs
    far less.
    """
    N, K = B.shape
    if N * K * C.shape[0] <= SMALL_GEMM:
        gemm(False, True, alpha, A, B, beta, C, ws)
        return
    gemm(False, False, alpha, A, _transpose_into(B, scratch), beta, C, ws)


@njit(cache=True)
def _gemm_op(trans, alpha, A, B, beta, C, ws, scratch):
    """C <- alpha A op(B) + beta C with op(B) = Bᵀ when ``trans``."""
    if trans:
        _gemm_nt(alpha, A, B, beta, C, ws, scratch)
    else:
        gemm(False, False, alpha, A, B, beta, C, ws)


# columns of the batch gathered at a time by :func:`_gather_leaves`: two (s, 256)
# buffers, 64 KiB each at s = 32. Longer runs copied faster in isolation but gained
# nothing more in the backward sweep at n = 2^16, and 2048 columns (512 KiB buffers)
# made it slower at n = 2^13
_GATHER_COLS = 256


@njit(cache=True)
def _leaf_run(order, q0, start, stop, width):
    """End q1 of the run order[q0:q1] of adjacent leaves spanning at most ``width``
    columns (at least one leaf)."""
    c0 = start[order[q0]]
    q1 = q0 + 1
    while q1 < order.shape[0] and stop[order[q1]] - c0 <= width:
        q1 += 1
    return q1


@njit(cache=True)
def _gather_leaves(A, order, q0, q1, start, stop, buf):
    """Copy the slices ``A[:, start_i:stop_i]`` of leaves i = order[q0:q1] into ``buf``,
    one contiguous (s, m_i) block after the other; row by row, so that each row of A
    is read as one stretch."""
    s = A.shape[0]
    for r in range(s):
        off = 0
        for q in range(q0, q1):
            node = order[q]
            m = stop[node] - start[node]
            buf[off + r * m:off + (r + 1) * m] = A[r, start[node]:stop[node]]
            off += s * m


@njit(cache=True)
def _max_leaf(start, stop, left, k_in, k_out):
    """Largest leaf size and largest leaf rank."""
    m_max = 1
    k_max = 1
    for node in range(left.shape[0]):
        if left[node] < 0:
            m_max = max(m_max, stop[node] - start[node])
            k_max = max(k_max, k_in[node], k_out[node])
    return m_max, k_max


@njit(cache=True)
def _zero_cols(A):
    """A[:, :] = 0 for a block of columns of a row-major array (explicit loops: see matvec.leaf_nodes)."""
    for r in range(A.shape[0]):
        for c in range(A.shape[1]):
            A[r, c] = 0.0


@njit(cache=True)
def _sweep_scratch_size(left, k_in, k_out):
    """Room for a transposed copy of any coupling block or sibling pair of transfer blocks."""
    size = 1
    for p in range(left.shape[0]):
        a = left[p]
        if a >= 0:
            kin = k_in[a] + k_in[a + 1]
            kout = k_out[a] + k_out[a + 1]
            size = max(size, kin * max(k_in[p], k_out[a], k_out[a + 1]),
                       kout * max(k_out[p], k_in[a], k_in[a + 1]))
    return size


# -- splitting the tree between threads -----------------------------------------------

@njit(cache=True)
def tree_parts(left, level_ptr, n_parts):
    """Split the tree into a top part and the subtrees below a cut level, for threads.

    The cut level is the first one with at least ``n_parts`` nodes (the deepest
    level if none has). Each subtree is independent of the others in both sweeps:
    only the top part, a few nodes at small ranks, joins them, on one thread.

    Parameters
    ----------
    left : (n_nodes,) int64 array
        Left child of every node (-1 at a leaf); the right child is ``left + 1``.
    level_ptr : (n_levels + 1,) int64 array
        Nodes of level l are ``level_ptr[l]:level_ptr[l + 1]`` (breadth-first ids).
    n_parts : int
        Subtrees wanted; 1 gives the whole tree as one subtree and an empty top.

    Returns
    -------
    parts : (n_roots + 1, n_levels, 2) int64 array
        ``parts[0, l] = (lo, hi)``: the nodes ``lo:hi`` of level l in the top part
        (every node above the cut level, none from it on); ``parts[1 + j, l]``:
        those in the subtree of the j-th node of the cut level (none above it).
        Breadth-first ids make each one range, the children of consecutive
        nodes being consecutive.
    """
    n_levels = level_ptr.shape[0] - 1
    cut = n_levels - 1
    for lvl in range(n_levels):
        if level_ptr[lvl + 1] - level_ptr[lvl] >= n_parts:
            cut = lvl
            break
    n_roots = level_ptr[cut + 1] - level_ptr[cut]
    parts = np.zeros((n_roots + 1, n_levels, 2), np.int64)
    for lvl in range(cut):
        parts[0, lvl, 0] = level_ptr[lvl]
        parts[0, lvl, 1] = level_ptr[lvl + 1]
    for j in range(n_roots):
        lo = level_ptr[cut] + j
        hi = lo + 1
        for lvl in range(cut, n_levels):
            parts[1 + j, lvl, 0] = lo
            parts[1 + j, lvl, 1] = hi
            first = -1
            last = -1
            for node in range(lo, hi):
                if left[node] >= 0:
                    if first < 0:
                        first = left[node]
                    last = left[node] + 2
            if first < 0:
                break
            lo = first
            hi = last
    return parts


@njit(cache=True)
def _part_leaves(left, part):
    """The leaves of one part of :func:`tree_parts`, level by level (ids ascending)."""
    n = 0
    for lvl in range(part.shape[0]):
        for node in range(part[lvl, 0], part[lvl, 1]):
            if left[node] < 0:
                n += 1
    leaves = np.empty(n, np.int64)
    n = 0
    for lvl in range(part.shape[0]):
        for node in range(part[lvl, 0], part[lvl, 1]):
            if left[node] < 0:
                leaves[n] = node
                n += 1
    return leaves


@njit(cache=True)
def parts_for(n_threads):
    """Subtrees to ask :func:`tree_parts` for: a few per thread, so that threads take
    them as they come free (one part when there is one thread)."""
    return 1 if n_threads <= 1 else 4 * n_threads


@njit(cache=True)
def _pair_layouts(parent, left, k_in, k_out, s):
    """The pair layouts of :func:`pair_layout` for the column side and the row side:
    ``(xb, xw, xc), (yb, yw, yc), x_size, y_size``."""
    xb, xw, xc, x_size = pair_layout(parent, left, k_in, s)
    yb, yw, yc, y_size = pair_layout(parent, left, k_out, s)
    return (xb, xw, xc), (yb, yw, yc), x_size, y_size


@njit(cache=True)
def _leaf_scratch(X, start, stop, left, k_in, k_out):
    """BLAS workspace and room for a transposed leaf block and a transposed sweep block."""
    m_max, k_max = _max_leaf(start, stop, left, k_in, k_out)
    return (workspace_like(X), np.empty(m_max * max(m_max, k_max), X.dtype),
            np.empty(_sweep_scratch_size(left, k_in, k_out), X.dtype))


# -- forward ----------------------------------------------------------------------------

@njit(cache=True)
def _forward_up(tree, k_in, basis_in, basis_in_off, transfer_in, transfer_in_off, X, xt, xl, part):
    """Leaf bases and upsweep of the input over one part of the tree, into ``xt``."""
    parent, left, right, start, stop, level_ptr = tree
    xb, xw, xc = xl
    s = X.shape[0]
    ws = workspace_like(X)
    leaves = _part_leaves(left, part)
    n_leaves = leaves.shape[0]
    # Every step below first prefetches (into L2: into L1 was slower) the operands of the
    # next step that are likely out of cache: the next leaf's slice of the batch (s rows a
    # power-of-two stride apart, which the hardware prefetcher does not follow) and the
    # next node's pair blocks (written a level or a whole sweep earlier). The products are
    # a few microseconds each, long enough to hide the fetches: measured at n = 2^16,
    # 27 -> 22 ms with the NN forms of the coupling and downsweep steps.
    for q in range(n_leaves):
        node = leaves[q]
        if q + 1 < n_leaves:
            _prefetch_cols(X, start[leaves[q + 1]], stop[leaves[q + 1]])
        m = stop[node] - start[node]
        gemm(False, False, 1.0, X[:, start[node]:stop[node]],
             _block(basis_in, basis_in_off, node, m, k_in[node]), 0.0,
             _cols(xt, xb, xw, xc, node, k_in[node], s), ws)
    # upsweep: x̂_i = [x̂_a | x̂_b] [T_a; T_b]
    for lvl in range(part.shape[0] - 1, 0, -1):
        hi = part[lvl, 1]
        for node in range(part[lvl, 0], hi):
            a = left[node]
            if a < 0:
                continue
            if node + 1 < hi and left[node + 1] >= 0:
                _prefetch_pair(xt, xb, xw, left[node + 1], s)
            kab = k_in[a] + k_in[a + 1]
            gemm(False, False, 1.0, _cols(xt, xb, xw, xc, a, kab, s),
                 _pair(transfer_in, transfer_in_off, a, kab, k_in[node]), 0.0,
                 _cols(xt, xb, xw, xc, node, k_in[node], s), ws)


@njit(cache=True)
def _forward_down(tree, k_in, k_out, basis_out, basis_out_off, transfer_out, transfer_out_off,
                  C_ab, C_ab_off, C_ba, C_ba_off, trans_B, D, D_off, trans_D, X, xt, yt, Y, xl, yl, part):
    """Couplings, downsweep and leaf products over one part of the tree, into ``yt`` and ``Y``."""
    parent, left, right, start, stop, level_ptr = tree
    xb, xw, xc = xl
    yb, yw, yc = yl
    s = X.shape[0]
    ws, scratch, sweep_scratch = _leaf_scratch(X, start, stop, left, k_in, k_out)
    has_D = D.shape[0] > 0     # an empty D: the matrix without its diagonal blocks
    # coupling and downsweep, root first. The transposed operands are copied transposed
    # (_gemm_op): OpenBLAS takes its small-matrix kernels only for the plain form at these
    # shapes and packs both operands otherwise (measured: 1.4 ms of 27 at n = 2^16)
    for lvl in range(part.shape[0]):
        hi = part[lvl, 1]
        for node in range(part[lvl, 0], hi):
            a = left[node]
            if a < 0:
                continue
            if node + 1 < hi and left[node + 1] >= 0:
                _prefetch_pair(xt, xb, xw, left[node + 1], s)
                _prefetch_pair(yt, yb, yw, node + 1, s)
                _prefetch_pair(yt, yb, yw, left[node + 1], s)
            b = a + 1
            ya = _cols(yt, yb, yw, yc, a, k_out[a], s)
            yb_ = _cols(yt, yb, yw, yc, b, k_out[b], s)
            xa = _cols(xt, xb, xw, xc, a, k_in[a], s)
            xb_ = _cols(xt, xb, xw, xc, b, k_in[b], s)
            Cab, Cba = coupling_blocks(C_ab, C_ab_off, C_ba, C_ba_off, trans_B, node, a, k_in, k_out)
            _gemm_op(not trans_B, 1.0, xb_, Cab, 0.0, ya, ws, sweep_scratch)
            _gemm_op(not trans_B, 1.0, xa, Cba, 0.0, yb_, ws, sweep_scratch)
            k = k_out[node]
            if k > 0:
                kab = k_out[a] + k_out[b]
                # [ŷ_a | ŷ_b] += ŷ_i [T_a; T_b]ᵀ
                _gemm_nt(1.0, _cols(yt, yb, yw, yc, node, k, s),
                         _pair(transfer_out, transfer_out_off, a, kab, k), 1.0,
                         _cols(yt, yb, yw, yc, a, kab, s), ws, sweep_scratch)
    leaves = _part_leaves(left, part)
    n_leaves = leaves.shape[0]
    for q in range(n_leaves):
        node = leaves[q]
        if q + 1 < n_leaves:
            # the next leaf's D and Bout blocks and slices of X, Y and ŷ: the generator
            # blocks are contiguous in leaf order, yet fetching them too saved about 1 ms
            # at n = 2^16 (a 32 KiB D block is read in whole before its product starts)
            nxt = leaves[q + 1]
            _prefetch_pair(yt, yb, yw, nxt, s)
            _prefetch_cols(X, start[nxt], stop[nxt])
            _prefetch_cols(Y, start[nxt], stop[nxt])
            if has_D:
                _prefetch_span(D, D_off[nxt], D_off[nxt + 1])
            _prefetch_span(basis_out, basis_out_off[nxt], basis_out_off[nxt + 1])
        i0 = start[node]
        i1 = stop[node]
        m = i1 - i0
        Yl = Y[:, i0:i1]
        if has_D:
            _gemm_op(not trans_D, 1.0, X[:, i0:i1], _block(D, D_off, node, m, m), 0.0, Yl, ws, scratch)
        k = k_out[node]
        if k > 0:
            _gemm_nt(1.0, _cols(yt, yb, yw, yc, node, k, s),
                     _block(basis_out, basis_out_off, node, m, k), 1.0 if has_D else 0.0, Yl, ws, scratch)
        elif not has_D:
            _zero_cols(Yl)


@njit(cache=True, parallel=True)
def forward(tree, k_in, k_out, basis_in, basis_in_off, transfer_in, transfer_in_off,
            basis_out, basis_out_off, transfer_out, transfer_out_off,
            C_ab, C_ab_off, C_ba, C_ba_off, trans_B, D, D_off, trans_D, X, n_threads):
    """Y = X op(A)ᵀ (row i of Y is op(A) times row i of X), with the sweep quantities.

    Parameters
    ----------
    tree : tuple of (n_nodes,) int64 arrays
        ``(parent, left, right, start, stop, level_ptr)``; breadth-first ids,
        siblings consecutive.
    k_in, k_out : (n_nodes,) int64 arrays
        Column-side and row-side ranks (0 at the root).
    basis_*, transfer_*, C_*, D : 1-D arrays with (n_nodes + 1,) int64 offsets
        Generators by role (module docstring).
    trans_B, trans_D : bool
        Use the stored coupling / diagonal blocks transposed.
    X : (s, n) C-contiguous array in tree order
    n_threads : int
        Threads to share the work: the subtrees below a cut level
        (:func:`tree_parts`) go to threads as they come free, the few nodes above
        it run on one. Call through :func:`.matvec.run_parallel`. Every product is
        the same whatever the number of threads, so is the result, bit for bit.

    An empty D stands for the matrix without its diagonal blocks (its leaf
    products are skipped): the off-diagonal part that an optimiser solving for D
    separately differentiates (:mod:`hssalg_nn.lm`). :func:`backward` then returns
    an empty dD, and :mod:`.tangent` skips the same products.

    Returns
    -------
    Y : (s, n) array in tree order
    xt, yt : 1-D arrays
        x̂_iᵀ and ŷ_iᵀ in the sibling-pair layout of :func:`pair_layout` for
        ranks ``k_in`` and ``k_out``.
    """
    parent, left, right, start, stop, level_ptr = tree
    s = X.shape[0]
    xl, yl, x_size, y_size = _pair_layouts(parent, left, k_in, k_out, s)
    xt = empty(x_size, X.dtype)
    yt = empty(y_size, X.dtype)
    Y = empty(X.size, X.dtype).reshape(X.shape)
    parts = tree_parts(left, level_ptr, parts_for(n_threads))
    n_sub = parts.shape[0] - 1
    for j in prange(n_sub):
        _forward_up(tree, k_in, basis_in, basis_in_off, transfer_in, transfer_in_off, X, xt, xl, parts[1 + j])
    _forward_up(tree, k_in, basis_in, basis_in_off, transfer_in, transfer_in_off, X, xt, xl, parts[0])
    _forward_down(tree, k_in, k_out, basis_out, basis_out_off, transfer_out, transfer_out_off,
                  C_ab, C_ab_off, C_ba, C_ba_off, trans_B, D, D_off, trans_D, X, xt, yt, Y, xl, yl, parts[0])
    for j in prange(n_sub):
        _forward_down(tree, k_in, k_out, basis_out, basis_out_off, transfer_out, transfer_out_off,
                      C_ab, C_ab_off, C_ba, C_ba_off, trans_B, D, D_off, trans_D, X, xt, yt, Y, xl, yl,
                      parts[1 + j])
    return Y, xt, yt


# -- reverse ----------------------------------------------------------------------------

@njit(cache=True)
def _backward_up(tree, k_in, k_out, basis_out, basis_out_off, transfer_out, transfer_out_off,
                 D, D_off, trans_D, X, yt, G, gt, xl, yl, d_basis_out, d_transfer_out, dD, part):
    """Leaf outer products and upsweep of the cotangent over one part of the tree."""
    parent, left, right, start, stop, level_ptr = tree
    yb, yw, yc = yl
    s = X.shape[0]
    ws = workspace_like(X)
    m_max, k_max = _max_leaf(start, stop, left, k_in, k_out)
    has_D = D.shape[0] > 0     # an empty D: no diagonal blocks, and no dD (returned empty)
    # contiguous copies of the leaves' slices of G and X, used three times each below:
    # the strided slices (row stride n) are slow operands for the transposed products.
    # They are gathered for a run of adjacent leaves at a time, each row's stretch in
    # one pass: per-leaf copies read 32 scattered 512-byte pieces from memory at a time
    # (measured at n = 2^16 for G alone: 2.5 ms leaf by leaf, 1.9 ms in runs of 4 leaves,
    # 1.4 ms in runs of 32)
    leaves = _part_leaves(left, part)
    order = leaves[np.argsort(start[leaves], kind="mergesort")]
    width = max(_GATHER_COLS, m_max)
    Gp = np.empty(s * width, X.dtype)
    Xp = np.empty(s * width, X.dtype)
    # leaves: the cotangent compressed through the row side, and the outer products
    # that need only G and the forward quantities
    # (the prefetches in this kernel are those of :func:`forward`, for the same reasons)
    q0 = 0
    while q0 < order.shape[0]:
        q1 = _leaf_run(order, q0, start, stop, width)
        if q1 < order.shape[0]:
            # the next run's stretch of every row, fetched while this run's products run
            q2 = _leaf_run(order, q1, start, stop, width)
            _prefetch_cols(G, start[order[q1]], stop[order[q2 - 1]])
            _prefetch_cols(X, start[order[q1]], stop[order[q2 - 1]])
        _gather_leaves(G, order, q0, q1, start, stop, Gp)
        _gather_leaves(X, order, q0, q1, start, stop, Xp)
        off = 0
        for q in range(q0, q1):
            node = order[q]
            m = stop[node] - start[node]
            Gl = Gp[off:off + s * m].reshape(s, m)
            Xl = Xp[off:off + s * m].reshape(s, m)
            off += s * m
            ko = k_out[node]
            gemm(False, False, 1.0, Gl, _block(basis_out, basis_out_off, node, m, ko), 0.0,
                 _cols(gt, yb, yw, yc, node, ko, s), ws)
            if has_D:
                if trans_D:
                    gemm(True, False, 1.0, Xl, Gl, 0.0, _block(dD, D_off, node, m, m), ws)
                else:
                    gemm(True, False, 1.0, Gl, Xl, 0.0, _block(dD, D_off, node, m, m), ws)
            if ko > 0:
                gemm(True, False, 1.0, Gl, _cols(yt, yb, yw, yc, node, ko, s), 0.0,
                     _block(d_basis_out, basis_out_off, node, m, ko), ws)
        q0 = q1
    # upsweep of the cotangent: ĝ_i = [ĝ_a | ĝ_b] [T_a; T_b], d[T_a; T_b] = [ĝ_a | ĝ_b]ᵀ ŷ_i
    for lvl in range(part.shape[0] - 1, 0, -1):
        hi = part[lvl, 1]
        for node in range(part[lvl, 0], hi):
            a = left[node]
            if a < 0:
                continue
            if node + 1 < hi and left[node + 1] >= 0:
                _prefetch_pair(gt, yb, yw, left[node + 1], s)
                _prefetch_pair(yt, yb, yw, node + 1, s)
            k = k_out[node]
            kab = k_out[a] + k_out[a + 1]
            gab = _cols(gt, yb, yw, yc, a, kab, s)
            gemm(False, False, 1.0, gab, _pair(transfer_out, transfer_out_off, a, kab, k), 0.0,
                 _cols(gt, yb, yw, yc, node, k, s), ws)
            gemm(True, False, 1.0, gab, _cols(yt, yb, yw, yc, node, k, s), 0.0,
                 _pair(d_transfer_out, transfer_out_off, a, kab, k), ws)


@njit(cache=True)
def _backward_down(tree, k_in, k_out, basis_in, basis_in_off, transfer_in, transfer_in_off,
                   C_ab, C_ab_off, C_ba, C_ba_off, trans_B, D, D_off, trans_D, X, xt, G, gt, zt, xl, yl,
                   need_dX, dX, d_basis_in, d_transfer_in, d_C_ab, d_C_ba, part):
    """Couplings, downsweep of the cotangent and leaf products over one part of the tree."""
    parent, left, right, start, stop, level_ptr = tree
    xb, xw, xc = xl
    yb, yw, yc = yl
    s = X.shape[0]
    ws, scratch, sweep_scratch = _leaf_scratch(X, start, stop, left, k_in, k_out)
    has_D = D.shape[0] > 0
    # couplings and downsweep of the cotangent through the column side
    for lvl in range(part.shape[0]):
        hi = part[lvl, 1]
        for node in range(part[lvl, 0], hi):
            a = left[node]
            if a < 0:
                continue
            if node + 1 < hi and left[node + 1] >= 0:
                a2 = left[node + 1]
                _prefetch_pair(gt, yb, yw, a2, s)
                _prefetch_pair(xt, xb, xw, a2, s)
                _prefetch_pair(zt, xb, xw, a2, s)
                _prefetch_pair(zt, xb, xw, node + 1, s)
            b = a + 1
            ga = _cols(gt, yb, yw, yc, a, k_out[a], s)
            gb = _cols(gt, yb, yw, yc, b, k_out[b], s)
            xa = _cols(xt, xb, xw, xc, a, k_in[a], s)
            xb_ = _cols(xt, xb, xw, xc, b, k_in[b], s)
            za = _cols(zt, xb, xw, xc, a, k_in[a], s)
            zb = _cols(zt, xb, xw, xc, b, k_in[b], s)
            Cab, Cba = coupling_blocks(C_ab, C_ab_off, C_ba, C_ba_off, trans_B, node, a, k_in, k_out)
            dCab, dCba = coupling_blocks(d_C_ab, C_ab_off, d_C_ba, C_ba_off, trans_B, node, a, k_in, k_out)
            # dC_ab = ĝ_a x̂_bᵀ, dC_ba = ĝ_b x̂_aᵀ, or their transposes as stored
            if trans_B:
                gemm(True, False, 1.0, xb_, ga, 0.0, dCab, ws)
                gemm(True, False, 1.0, xa, gb, 0.0, dCba, ws)
            else:
                gemm(True, False, 1.0, ga, xb_, 0.0, dCab, ws)
                gemm(True, False, 1.0, gb, xa, 0.0, dCba, ws)
            # the transposed operands copied transposed, as in :func:`forward`
            _gemm_op(trans_B, 1.0, ga, Cab, 0.0, zb, ws, sweep_scratch)
            _gemm_op(trans_B, 1.0, gb, Cba, 0.0, za, ws, sweep_scratch)
            k = k_in[node]
            if k > 0:
                kab = k_in[a] + k_in[b]
                zn = _cols(zt, xb, xw, xc, node, k, s)
                # [ẑ_a | ẑ_b] += ẑ_i [T_a; T_b]ᵀ,  d[T_a; T_b] = [x̂_a | x̂_b]ᵀ ẑ_i
                _gemm_nt(1.0, zn, _pair(transfer_in, transfer_in_off, a, kab, k), 1.0,
                         _cols(zt, xb, xw, xc, a, kab, s), ws, sweep_scratch)
                gemm(True, False, 1.0, _cols(xt, xb, xw, xc, a, kab, s), zn, 0.0,
                     _pair(d_transfer_in, transfer_in_off, a, kab, k), ws)
    # leaves: the column-side basis and, when wanted, the transposed product
    leaves = _part_leaves(left, part)
    for q in range(leaves.shape[0]):
        node = leaves[q]
        if q + 1 < leaves.shape[0]:
            nxt = leaves[q + 1]
            _prefetch_pair(zt, xb, xw, nxt, s)
            _prefetch_cols(X, start[nxt], stop[nxt])
            if need_dX:
                _prefetch_cols(G, start[nxt], stop[nxt])
                _prefetch_cols(dX, start[nxt], stop[nxt])
                if has_D:
                    _prefetch_span(D, D_off[nxt], D_off[nxt + 1])
                _prefetch_span(basis_in, basis_in_off[nxt], basis_in_off[nxt + 1])
        i0 = start[node]
        i1 = stop[node]
        m = i1 - i0
        ki = k_in[node]
        if need_dX and has_D:
            _gemm_op(trans_D, 1.0, G[:, i0:i1], _block(D, D_off, node, m, m), 0.0, dX[:, i0:i1], ws,
                     scratch)
        if ki > 0:
            zl = _cols(zt, xb, xw, xc, node, ki, s)
            if need_dX:
                _gemm_nt(1.0, zl, _block(basis_in, basis_in_off, node, m, ki), 1.0 if has_D else 0.0,
                         dX[:, i0:i1], ws, scratch)
            gemm(True, False, 1.0, X[:, i0:i1], zl, 0.0, _block(d_basis_in, basis_in_off, node, m, ki), ws)
        elif need_dX and not has_D:
            _zero_cols(dX[:, i0:i1])


@njit(cache=True, parallel=True)
def backward(tree, k_in, k_out, basis_in, basis_in_off, transfer_in, transfer_in_off,
             basis_out, basis_out_off, transfer_out, transfer_out_off,
             C_ab, C_ab_off, C_ba, C_ba_off, trans_B, D, D_off, trans_D, X, xt, yt, G, need_dX,
             n_threads):
    """Vector-Jacobian products of :func:`forward` for the cotangent G of Y.

    Parameters
    ----------
    tree, k_in, k_out, basis_*, transfer_*, C_*, trans_B, D, trans_D, X
        As given to :func:`forward`.
    xt, yt : 1-D arrays
        The sweep quantities :func:`forward` returned for this X.
    G : (s, n) C-contiguous array in tree order
    need_dX : bool
        Compute dX. Without it (the input is data, not a parameter) the leaf
        products of the transposed sweep, a third of the work, are skipped.
    n_threads : int
        As for :func:`forward`: subtrees go to threads, the result is the same
        bit for bit whatever their number.

    Returns
    -------
    dX : (s, n) array in tree order, the transposed product G op(A); (0, n) without ``need_dX``
    d_basis_in, d_transfer_in, d_basis_out, d_transfer_out, d_C_ab, d_C_ba, dD : 1-D arrays
        Gradients with the layout (offsets, stored orientation) of the generators.
    """
    parent, left, right, start, stop, level_ptr = tree
    s = X.shape[0]
    xl, yl, x_size, y_size = _pair_layouts(parent, left, k_in, k_out, s)
    gt = empty(y_size, X.dtype)
    zt = empty(x_size, X.dtype)
    dX = empty(X.size if need_dX else 0, X.dtype).reshape((s if need_dX else 0, X.shape[1]))
    # every block of every output is written below, so none is zeroed first (a pass
    # over 12 MB at n = 2^16): a product skipped for a rank-0 node has an empty
    # block as its output (its rows or columns are that rank), and the root's
    # children, whose transfer blocks no step writes, have k_root = 0 columns there
    d_basis_in = empty(basis_in.size, X.dtype)
    d_transfer_in = empty(transfer_in.size, X.dtype)
    d_basis_out = empty(basis_out.size, X.dtype)
    d_transfer_out = empty(transfer_out.size, X.dtype)
    d_C_ab = empty(C_ab.size, X.dtype)
    d_C_ba = empty(C_ba.size, X.dtype)
    dD = empty(D.size, X.dtype)
    parts = tree_parts(left, level_ptr, parts_for(n_threads))
    n_sub = parts.shape[0] - 1
    for j in prange(n_sub):
        _backward_up(tree, k_in, k_out, basis_out, basis_out_off, transfer_out, transfer_out_off,
                     D, D_off, trans_D, X, yt, G, gt, xl, yl, d_basis_out, d_transfer_out, dD, parts[1 + j])
    _backward_up(tree, k_in, k_out, basis_out, basis_out_off, transfer_out, transfer_out_off,
                 D, D_off, trans_D, X, yt, G, gt, xl, yl, d_basis_out, d_transfer_out, dD, parts[0])
    _backward_down(tree, k_in, k_out, basis_in, basis_in_off, transfer_in, transfer_in_off,
                   C_ab, C_ab_off, C_ba, C_ba_off, trans_B, D, D_off, trans_D, X, xt, G, gt, zt, xl, yl,
                   need_dX, dX, d_basis_in, d_transfer_in, d_C_ab, d_C_ba, parts[0])
    for j in prange(n_sub):
        _backward_down(tree, k_in, k_out, basis_in, basis_in_off, transfer_in, transfer_in_off,
                       C_ab, C_ab_off, C_ba, C_ba_off, trans_B, D, D_off, trans_D, X, xt, G, gt, zt, xl, yl,
                       need_dX, dX, d_basis_in, d_transfer_in, d_C_ab, d_C_ba, parts[1 + j])
    return dX, d_basis_in, d_transfer_in, d_basis_out, d_transfer_out, d_C_ab, d_C_ba, dD
