"""hssalg._kernels.blocks: blockwise transposes, and the symmetric layer's maps built on them."""

import numpy as np
from hypothesis import given, strategies as st

import hssalg as hs
from hssalg._kernels.blocks import symmetric_blocks, transpose_blocks
from hssalg_nn.layers import HSSLinear
from strategies import trees

DTYPES = st.sampled_from([np.float64, np.float32])


@st.composite
def block_buffers(draw, square=False):
    """(buffer, off, rows, cols) of a few random blocks (empty ones included)."""
    n_blocks = draw(st.integers(0, 6))
    rows = np.array(draw(st.lists(st.integers(0, 9), min_size=n_blocks, max_size=n_blocks)), dtype=np.int64)
    cols = rows.copy() if square else np.array(
        draw(st.lists(st.integers(0, 9), min_size=n_blocks, max_size=n_blocks)), dtype=np.int64)
    off = np.concatenate([[0], np.cumsum(rows * cols)]).astype(np.int64)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    P = rng.standard_normal(int(off[-1])).astype(draw(DTYPES))
    return P, off, rows, cols


def _blocks_of(P, off, rows, cols):
    return [P[off[j]:off[j + 1]].reshape(rows[j], cols[j]) for j in range(rows.size)]


# the kernels' thread-count argument decides how the blocks are cut into runs (4 per
# thread); numba runs those on however many threads it has
THREADS = st.integers(1, 5)


@given(block_buffers(), THREADS)
def test_transpose_blocks_matches_numpy_block_transposes(case, n_threads):
    P, off, rows, cols = case
    before = P.copy()
    T = transpose_blocks(P, off, rows, cols, n_threads)
    assert T.dtype == P.dtype and T.shape == P.shape
    for Pj, Tj in zip(_blocks_of(P, off, rows, cols), _blocks_of(T, off, cols, rows)):
        assert np.array_equal(Tj, Pj.T)
    assert np.array_equal(P, before)                   # the input is left alone
    assert np.array_equal(transpose_blocks(T, off, cols, rows, 1), P)


@given(block_buffers(square=True), THREADS)
def test_symmetric_blocks_are_the_symmetric_parts_bit_for_bit(case, n_threads):
    P, off, rows, _ = case
    before = P.copy()
    S = symmetric_blocks(P, off, rows, n_threads)
    assert S.dtype == P.dtype
    for Pj, Sj in zip(_blocks_of(P, off, rows, rows), _blocks_of(S, off, rows, rows)):
        # numpy's elementwise (P + Pᵀ) * 0.5 in P's dtype: the same rounding, hence equality
        assert np.array_equal(Sj, (Pj + Pj.T) * P.dtype.type(0.5))
        assert np.array_equal(Sj, Sj.T)
    assert np.array_equal(P, before)


@given(trees(max_n=48), st.integers(0, 4), st.booleans(), DTYPES, st.integers(0, 2**16))
def test_symmetric_layer_expansion_and_its_adjoint(tree, rank, share, dtype, seed):
    # the expansion (generators from parameters) is linear; its VJP must be its adjoint:
    # <expand(p), g> = <p, reduce(g)> for random p and generator-shaped g
    if share:
        tree = hs.ClusterTree.balanced(3 * 2**min(tree.depth, 3), 3)
    layer = HSSLinear(tree, rank, symmetric=True, share_weights=share, dtype=dtype)
    rng = np.random.default_rng(seed)
    p = {k: rng.standard_normal(v.size).astype(dtype) for k, v in layer.init(seed=seed).items()}
    gens = layer._expand_plain(p)
    g = {k: rng.standard_normal(v.size).astype(dtype) for k, v in gens.items()}
    back = layer._reduce_plain(g)
    lhs = sum(np.dot(gens[k].astype(np.float64), g[k].astype(np.float64)) for k in gens)
    rhs = sum(np.dot(p[k].astype(np.float64), back[k].astype(np.float64)) for k in p)
    eps = np.finfo(dtype).eps
    scale = sum(np.linalg.norm(gens[k]) * np.linalg.norm(g[k]) for k in gens) + 1e-300
    assert abs(lhs - rhs) <= 100 * eps * scale
    # and the generators are those of the definition, block by block
    H = layer.to_hss(p)
    bufs, _ = H.generator_buffers()
    shapes = layer.layout.shapes
    off = layer.layout.offsets
    for i in range(tree.n_nodes):
        r, c = shapes["D"][0][i], shapes["D"][1][i]
        if r * c:
            D = bufs["D"][off["D"][i]:off["D"][i + 1]].reshape(r, c)
            assert np.array_equal(D, D.T)
        r, c = shapes["B12"][0][i], shapes["B12"][1][i]
        if r * c:
            B12 = bufs["B12"][off["B12"][i]:off["B12"][i + 1]].reshape(r, c)
            B21 = bufs["B21"][off["B21"][i]:off["B21"][i + 1]].reshape(c, r)
            assert np.array_equal(B21, B12.T)
