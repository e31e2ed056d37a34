"""The interpolative storage form of HSSMatrix (hssalg._interp, hssalg._kernels.interp).

Random matrices in that form are built here straight through the private
constructor: any tree of tests/strategies.py, any ranks 0 <= k_i <= c_i per
node (rank 0 and k_i = c_i included), random row orders, T, B and D, in the
unsymmetric and the symmetric form. Each is checked against a dense matrix
assembled in this file from the per-node interpolation matrices alone:

    U_leaf = P_leaf,   U_inner = blockdiag(U_a, U_b) P_inner   (V likewise),
    A(a, b) = U_a B12 V_b^T,   A(b, a) = U_b B21 V_a^T,   A(leaf, leaf) = D,

with, in the symmetric form, V = U, B21 = B12^T and D read from the lower
triangle packed by rows. Neither the layout helpers nor ``_interp`` are used to
build that reference.
"""

import contextlib

import numba
import numpy as np
import pytest
from hypothesis import given, strategies as st

import hssalg as hs
from hssalg import _interp, _layout
from hssalg._kernels import matvec as _matvec
from conftest import NOJIT
from strategies import EPS32, EPS64, MAX_N, dense_from_generators, hss_matrices, random_split_tree, trees

# how each non-root node's rank k_i is chosen from its candidate count c_i
RANK_MODES = ("mixed", "zero", "full", "small", "uniform")


# -- random matrices in interpolative form and their dense reference -------------------

def interpolation_matrix(T, perm, k):
    """P (c, k) with rows perm[:k] the identity and rows perm[k:] equal to T (the definition)."""
    c = perm.size
    P = np.zeros((c, k))
    for j in range(k):
        P[perm[j], j] = 1.0
    for r in range(c - k):
        P[perm[k + r]] = T[r]
    return P


def packed_lower(D):
    """Lower triangle of D, row by row."""
    m = D.shape[0]
    return np.array([D[r, c] for r in range(m) for c in range(r + 1)], dtype=D.dtype)


def flat(blocks, dtype):
    """Blocks (None: empty) raveled one after the other in node order, and their offsets."""
    sizes = [0 if b is None else b.size for b in blocks]
    off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    parts = [np.ravel(b) for b in blocks if b is not None]
    buf = np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
    return np.ascontiguousarray(buf, dtype=dtype), off


def _side(tree, rng, mode, dtype):
    """Ranks, candidate counts, row orders and T of one side, bottom-up (c of a parent needs k of its children)."""
    n_nodes, left, right, sizes = tree.n_nodes, tree.left, tree.right, tree.sizes
    k = np.zeros(n_nodes, np.int64)
    c = np.zeros(n_nodes, np.int64)
    perm, T = [None] * n_nodes, [None] * n_nodes
    for lvl in range(tree.depth, 0, -1):
        for i in range(tree.level_ptr[lvl], tree.level_ptr[lvl + 1]):
            c[i] = sizes[i] if left[i] < 0 else k[left[i]] + k[right[i]]
            how = rng.choice(RANK_MODES[1:]) if mode == "mixed" else mode
            if how == "zero":
                k[i] = 0
            elif how == "full":
                k[i] = c[i]
            elif how == "small":
                k[i] = min(c[i], rng.integers(1, 4))
            else:
                k[i] = rng.integers(0, c[i] + 1)
            perm[i] = rng.permutation(int(c[i])).astype(np.int32)
            # scaled by 1 / sqrt(c) so nested bases stay O(1) over many levels
            T[i] = (rng.standard_normal((c[i] - k[i], k[i])) / np.sqrt(max(c[i], 1))).astype(dtype)
    return k, c, perm, T


class Interp:
    """A random matrix in interpolative form: H, its per-node pieces and its dense reference."""

    def __init__(self, tree, seed, symmetric, mode, dtype=np.float64):
        self.tree, self.seed, self.symmetric, self.mode = tree, seed, symmetric, mode
        self.dtype = np.dtype(dtype)
        rng = np.random.default_rng(seed)
        n_nodes, left, right = tree.n_nodes, tree.left, tree.right
        self.kU, self.cU, self.pU, self.TU = _side(tree, rng, mode, dtype)
        if symmetric:
            self.kV, self.cV, self.pV, self.TV = self.kU, self.cU, self.pU, self.TU
        else:
            self.kV, self.cV, self.pV, self.TV = _side(tree, rng, mode, dtype)
        self.B12, self.B21, self.D = [None] * n_nodes, [None] * n_nodes, [None] * n_nodes
        for i in range(n_nodes):
            a, b = left[i], right[i]
            if a < 0:
                G = rng.standard_normal((tree.sizes[i], tree.sizes[i]))
                self.D[i] = ((G + G.T) / 2 if symmetric else G).astype(dtype)
                continue
            self.B12[i] = rng.standard_normal((self.kU[a], self.kV[b])).astype(dtype)
            self.B21[i] = (self.B12[i].T.copy() if symmetric
                           else rng.standard_normal((self.kU[b], self.kV[a])).astype(dtype))
        # the flat buffers, laid out here in node order (checked against _layout in a test)
        bufs, offs = {}, {}
        D_blocks = [None if d is None else (packed_lower(d) if symmetric else d) for d in self.D]
        bufs["D"], offs["D"] = flat(D_blocks, dtype)
        bufs["TU"], offs["TU"] = flat(self.TU, dtype)
        bufs["pU"], offs["pU"] = flat(self.pU, np.int32)
        bufs["B12"], offs["B12"] = flat(self.B12, dtype)
        if symmetric:
            bufs["TV"], bufs["pV"] = bufs["TU"], bufs["pU"]          # the same objects
            offs["TV"], offs["pV"] = offs["TU"], offs["pU"]
            bufs["B21"], offs["B21"] = np.zeros(0, dtype), np.zeros(n_nodes + 1, np.int64)
        else:
            bufs["TV"], offs["TV"] = flat(self.TV, dtype)
            bufs["pV"], offs["pV"] = flat(self.pV, np.int32)
            bufs["B21"], offs["B21"] = flat(self.B21, dtype)
        self.offs = offs
        self.snapshot = {kind: b.copy() for kind, b in bufs.items()}
        form = "interpolative-symmetric" if symmetric else "interpolative"
        self.H = hs.HSSMatrix(tree, self.kU, self.kV, bufs, _form=form)
        # per-node interpolation matrices (float64) and the dense references
        self.PU = [None if p is None else interpolation_matrix(t, p, k)
                   for p, t, k in zip(self.pU, self.TU, self.kU)]
        self.PV = self.PU if symmetric else [None if p is None else interpolation_matrix(t, p, k)
                                             for p, t, k in zip(self.pV, self.TV, self.kV)]
        self.A = self._dense(lambda x: np.asarray(x, dtype=np.float64))
        self.A_abs = self._dense(lambda x: np.abs(np.asarray(x, dtype=np.float64)))
        self.width = int(max(tree.sizes.max(), self.cU.max(), self.cV.max())) + 2

    def _dense(self, f):
        """Dense matrix in the caller's order from f(each generator), nested bases built bottom-up."""
        tree = self.tree
        n = tree.n
        A = np.zeros((n, n))
        U, V = {}, {}
        for lvl in range(tree.depth, -1, -1):
            for i in range(tree.level_ptr[lvl], tree.level_ptr[lvl + 1]):
                s, e = tree.start[i], tree.stop[i]
                a, b = tree.left[i], tree.right[i]
                if a < 0:
                    A[s:e, s:e] = f(self.D[i])
                    if i != 0:
                        U[i], V[i] = f(self.PU[i]), f(self.PV[i])
                    continue
                ra, rb = slice(tree.start[a], tree.stop[a]), slice(tree.start[b], tree.stop[b])
                A[ra, rb] = U[a] @ f(self.B12[i]) @ V[b].T
                A[rb, ra] = U[b] @ f(self.B21[i]) @ V[a].T
                if i != 0:
                    for basis, P in ((U, self.PU), (V, self.PV)):
                        Z = np.zeros((e - s, basis[a].shape[1] + basis[b].shape[1]))
                        Z[:tree.sizes[a], :basis[a].shape[1]] = basis[a]
                        Z[tree.sizes[a]:, basis[a].shape[1]:] = basis[b]
                        basis[i] = Z @ f(P[i])
        out = np.empty_like(A)
        p = tree.perm
        out[np.ix_(p, p)] = A
        return out

    def bound(self, X):
        """Allowed ||Y - A X||_F for a product with X, and for the dense reference's own error.

        Every entry of A X is a sum over leaf-to-leaf paths of products of
        generator entries. The kernel evaluates each path through at most
        L = 2 depth + 3 stages (leaf compression, depth - 1 inner compressions,
        coupling, depth - 1 inner expansions, leaf expansion, D), each a product
        or accumulation of inner dimension <= w = max(m_leaf, c_i) + 2 (the +2:
        identity rows and the parent's and sibling's shares added on their own).
        The standard bound for a chain of products (Higham, 3.5) gives, entry by
        entry, |fl(A X) - A X| <= gamma_{L w} |A|_gen |X| with |A|_gen the matrix
        assembled from the absolute values of the generators (A_abs >= |A|), so
        ||error||_F <= L w eps ||A_abs||_F ||X||_F to first order. The dense
        reference here has an error of the same form with depth + 2 stages and
        a final product of inner dimension n. The constant is twice the sum:

            C = 2 ((2 depth + 3) w + (depth + 2) w + n),  tol = C eps ||A_abs||_F ||X||_F

        with eps the machine epsilon of the matrix dtype (2x the unit roundoff).
        Measured on 300 random matrices (n <= 160, both dtypes): ||A_abs||_F <= 2.3 ||A||_F,
        errors <= 0.4 eps ||A||_F ||X||_F, i.e. <= 0.01 tol; a wrong product is off by
        O(||A|| ||X||), and a relative error of 1e-9 in float64 already fails.
        """
        eps = EPS32 if self.dtype == np.float32 else EPS64
        d, w, n = self.tree.depth, self.width, self.tree.n
        C = 2 * ((2 * d + 3) * w + (d + 2) * w + n)
        return C * eps * np.linalg.norm(self.A_abs) * np.linalg.norm(X)

    def buffers_unchanged(self):
        for kind, b in self.H._bufs.items():
            assert not b.flags.writeable, kind
            assert b.dtype == self.snapshot[kind].dtype and np.array_equal(b, self.snapshot[kind]), kind

    def __repr__(self):
        t = self.tree
        return (f"Interp(tree=ClusterTree(n={t.n}, n_nodes={t.n_nodes}, depth={t.depth}, "
                f"leaf_size={t.leaf_size}, left={t.left.tolist()}, start={t.start.tolist()}, "
                f"stop={t.stop.tolist()}), seed={self.seed}, symmetric={self.symmetric}, "
                f"mode={self.mode!r}, dtype={self.dtype}, kU={self.kU.tolist()}, kV={self.kV.tolist()})")


@st.composite
def interp_matrices(draw, max_n=MAX_N, symmetric=None, dtype=np.float64):
    """Random matrices in interpolative form on the trees of tests/strategies.py."""
    tree = draw(trees(max_n=max_n))
    sym = draw(st.booleans()) if symmetric is None else symmetric
    mode = draw(st.sampled_from(RANK_MODES))
    seed = draw(st.integers(0, 2**32 - 1))
    return Interp(tree, seed, sym, mode, dtype)


def assert_within(Y, Yref, M, X, what):
    err, tol = np.linalg.norm(np.asarray(Y, dtype=np.float64) - Yref), M.bound(X)
    assert err <= tol, f"{what}: ||error|| = {err:.3e} > tol {tol:.3e} for {M!r}"


def assert_unchanged(X, X0, what):
    assert np.array_equal(X, X0), f"{what} wrote into its input"


# -- shared checks (used by the property tests and the fixed edge cases) ----------------

def check_products(M, s, seed):
    """Every product form, vectors and blocks, against the reference; inputs are never written."""
    H, A = M.H, M.A
    n = M.tree.n
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, s)).astype(M.dtype)
    x = rng.standard_normal(n).astype(M.dtype)
    Xl = rng.standard_normal((s, n)).astype(M.dtype)            # left factor of X @ H
    X0, x0, Xl0 = X.copy(), x.copy(), Xl.copy()
    Xd, xd, Xld = (np.asarray(v, dtype=np.float64) for v in (X, x, Xl))
    cases = [
        ("H @ X", lambda: H @ X, A @ Xd, Xd),
        ("H.matmat(X)", lambda: H.matmat(X), A @ Xd, Xd),
        ("H @ x", lambda: H @ x, A @ xd, xd),
        ("H.matvec(x)", lambda: H.matvec(x), A @ xd, xd),
        ("H.T @ X", lambda: H.T @ X, A.T @ Xd, Xd),
        ("H.rmatvec(X)", lambda: H.rmatvec(X), A.T @ Xd, Xd),
        ("H.T @ x", lambda: H.T @ x, A.T @ xd, xd),
        ("H.rmatvec(x)", lambda: H.rmatvec(x), A.T @ xd, xd),
        ("H.T.T @ X", lambda: H.T.T @ X, A @ Xd, Xd),
        ("Xl @ H", lambda: Xl @ H, Xld @ A, Xld),
        ("x @ H", lambda: x @ H, xd @ A, xd),
        ("Xl @ H.T", lambda: Xl @ H.T, Xld @ A.T, Xld),
        ("H.T.matvec(x)", lambda: H.T.matvec(x), A.T @ xd, xd),
    ]
    for what, op, ref, inp in cases:
        Y = op()
        assert Y.shape == ref.shape and Y.dtype == M.dtype, (what, Y.shape, Y.dtype)
        assert_within(Y, ref, M, inp, what)
    assert_unchanged(X, X0, "a product with X")
    assert_unchanged(x, x0, "a product with x")
    assert_unchanged(Xl, Xl0, "a product with Xl")
    # a strided view and a read-only block are read the same way (read-only: float64 only,
    # each new argument type costs a numba compilation of the kernel, ~15 s with a cold cache)
    big = np.repeat(X, 2, axis=1)
    assert_within(H @ big[:, ::2], A @ Xd, M, Xd, "H @ strided view")
    if M.dtype == np.float64:
        ro = X.copy()
        ro.setflags(write=False)
        assert_within(H @ ro, A @ Xd, M, Xd, "H @ read-only X")
    M.buffers_unchanged()


def check_dense(M):
    H, A = M.H, M.A
    I = np.eye(M.tree.n)
    D = H.todense()
    assert D.shape == A.shape and D.dtype == M.dtype
    assert_within(D, A, M, I, "todense")
    assert_within(H.T.todense(), A.T, M, I, "H.T.todense")
    # the diagonal comes from the D blocks alone: exact
    assert H.diagonal().dtype == M.dtype
    assert np.array_equal(H.diagonal(), np.diag(A).astype(M.dtype))
    assert np.array_equal(H.T.diagonal(), np.diag(A).astype(M.dtype))
    M.buffers_unchanged()


def check_explicit(M, seed):
    """_explicit, generator_buffers, generators: the same matrix in explicit storage
    (and _interp_buffers: the same matrix, transposed, in interpolative storage)."""
    H, A, tree = M.H, M.A, M.tree
    n = tree.n
    X = np.random.default_rng(seed).standard_normal((n, 3)).astype(M.dtype)
    Xd = X.astype(np.float64)
    I = np.eye(n)
    E = H._explicit()
    assert E.storage == "explicit" and E is not H
    np.testing.assert_array_equal(E.row_ranks, M.kU)
    np.testing.assert_array_equal(E.col_ranks, M.kV)
    assert_within(E.todense(), A, M, I, "_explicit().todense")
    assert_within(E @ X, A @ Xd, M, Xd, "_explicit() @ X")
    assert_within(E.T @ X, A.T @ Xd, M, Xd, "_explicit().T @ X")
    # the explicit and the interpolative kernels agree (each within the bound of A X)
    assert np.linalg.norm((E @ X).astype(np.float64) - H @ X) <= 2 * M.bound(Xd)
    ET = H.T._explicit()
    assert ET.storage == "explicit"
    assert_within(ET @ X, A.T @ Xd, M, Xd, "H.T._explicit() @ X")
    # generator_buffers -> the private constructor of the explicit form
    for op, ref, name in ((H, A, "H"), (H.T, A.T, "H.T")):
        bufs, offs = op.generator_buffers()
        want = _layout.offsets(tree, op.row_ranks, op.col_ranks)
        for kind in _layout.KINDS:
            np.testing.assert_array_equal(offs[kind], want[kind], err_msg=f"{name} {kind}")
            assert bufs[kind].size == want[kind][-1], (name, kind)
        G = hs.HSSMatrix(tree, op.row_ranks, op.col_ranks, bufs)
        assert G.storage == "explicit"
        assert_within(G.todense(), ref, M, I, f"HSSMatrix({name}.generator_buffers()).todense")
        assert_within(G @ X, ref @ Xd, M, Xd, f"HSSMatrix({name}.generator_buffers()) @ X")
    # the explicit generators are exactly the interpolation matrices: U_leaf = P, [R_a; R_b] = P
    g = H.generators()
    for i in range(tree.n_nodes):
        a, b = tree.left[i], tree.right[i]
        if a < 0:
            np.testing.assert_array_equal(g["D"][i], M.D[i])
            if i != 0:
                np.testing.assert_array_equal(g["U"][i], M.PU[i])
                np.testing.assert_array_equal(g["V"][i], M.PV[i])
            continue
        np.testing.assert_array_equal(g["B12"][i], M.B12[i])
        np.testing.assert_array_equal(g["B21"][i], M.B21[i])
        if i != 0:
            np.testing.assert_array_equal(np.vstack([g["R"][a], g["R"][b]]).reshape(M.PU[i].shape), M.PU[i])
            np.testing.assert_array_equal(np.vstack([g["W"][a], g["W"][b]]).reshape(M.PV[i].shape), M.PV[i])
    # ... which the public builder accepts, and strategies' own dense assembly agrees
    F = hs.HSSMatrix.from_generators(tree, **g, dtype=M.dtype)
    assert_within(F @ X, A @ Xd, M, Xd, "from_generators(H.generators()) @ X")
    assert_within(dense_from_generators(H), A, M, I, "dense_from_generators(H)")
    if M.symmetric:
        eb = E._bufs
        assert eb["U"] is eb["V"] and eb["R"] is eb["W"]
        assert E.nbytes == sum(b.nbytes for kind, b in eb.items() if kind not in ("V", "W"))
    # _interp_buffers: the interpolative form of the matrix as it acts (H.T: sides swapped)
    for op, ref, name in ((H, A, "H"), (H.T, A.T, "H.T")):
        K = hs.HSSMatrix(tree, op.row_ranks, op.col_ranks, op._interp_buffers(), _form=H.storage)
        assert_within(K @ X, ref @ Xd, M, Xd, f"HSSMatrix({name}._interp_buffers()) @ X")
    with pytest.raises(ValueError, match="explicit storage"):
        E._interp_buffers()
    M.buffers_unchanged()


# -- property tests ----------------------------------------------------------------------

@given(interp_matrices())
def test_layout_nbytes_and_attributes(M):
    """The layout of _layout.interp_offsets is the node-order CSR layout built here; nbytes
    counts a buffer shared by two kinds (TU / TV, pU / pV of the symmetric form) once."""
    H, tree = M.H, M.tree
    assert H.storage == ("interpolative-symmetric" if M.symmetric else "interpolative")
    assert H.T.storage == H.storage and H.shape == (tree.n, tree.n) and H.dtype == M.dtype
    np.testing.assert_array_equal(_layout.candidate_counts(tree, M.kU), M.cU)
    np.testing.assert_array_equal(_layout.candidate_counts(tree, M.kV), M.cV)
    want = _layout.interp_offsets(tree, M.kU, M.kV, M.symmetric)
    assert set(want) == set(_layout.INTERP_KINDS) == set(H._offs)
    for kind in _layout.INTERP_KINDS:
        np.testing.assert_array_equal(want[kind], M.offs[kind], err_msg=kind)
        np.testing.assert_array_equal(H._offs[kind], M.offs[kind], err_msg=kind)
    np.testing.assert_array_equal(H.row_ranks, M.kU)
    np.testing.assert_array_equal(H.col_ranks, M.kV)
    np.testing.assert_array_equal(H.T.row_ranks, M.kV)
    assert H.ranks[0] == 0 and H.max_rank == int(max(M.kU.max(), M.kV.max()))
    fl = M.dtype.itemsize
    n_float = M.offs["D"][-1] + M.offs["TU"][-1] + M.offs["B12"][-1]
    n_perm = M.offs["pU"][-1]
    if M.symmetric:
        assert H._bufs["TU"] is H._bufs["TV"] and H._bufs["pU"] is H._bufs["pV"]
        assert H._bufs["B21"].size == 0
        m = tree.sizes[tree.leaves]
        assert M.offs["D"][-1] == np.sum(m * (m + 1) // 2)
    else:
        n_float += M.offs["TV"][-1] + M.offs["B21"][-1]
        n_perm += M.offs["pV"][-1]
    assert H.nbytes == fl * n_float + 4 * n_perm
    assert H.T.nbytes == H.nbytes
    M.buffers_unchanged()


@given(interp_matrices())
def test_from_kernel_assembly_lays_out_the_same_buffers(M):
    """from_kernel's _assemble_interp, fed the same per-node blocks, builds these buffers."""
    from hssalg._from_kernel import _assemble_interp
    g = {"D": [None if d is None else (packed_lower(d) if M.symmetric else d) for d in M.D],
         "TU": list(M.TU), "pU": list(M.pU), "TV": list(M.TV), "pV": list(M.pV),
         "B12": list(M.B12), "B21": [None] * M.tree.n_nodes if M.symmetric else list(M.B21)}
    G = _assemble_interp(M.tree, g, M.symmetric)
    assert G.storage == M.H.storage
    np.testing.assert_array_equal(G.row_ranks, M.kU)
    np.testing.assert_array_equal(G.col_ranks, M.kV)
    for kind in _layout.INTERP_KINDS:
        np.testing.assert_array_equal(G._offs[kind], M.offs[kind], err_msg=kind)
        assert G._bufs[kind].dtype == M.H._bufs[kind].dtype, kind
        np.testing.assert_array_equal(G._bufs[kind], M.H._bufs[kind], err_msg=kind)
    if M.symmetric:
        assert G._bufs["TU"] is G._bufs["TV"] and G._bufs["pU"] is G._bufs["pV"]
    assert G.nbytes == M.H.nbytes


@given(interp_matrices(), st.integers(0, 2**16))
def test_expand_compact_and_packing_helpers(M, seed):
    """_interp.expand is the definition of P; compact(P, skeleton) gives back the same P;
    pack_leaf / unpack_leaf are the row-wise packing of the lower triangle."""
    rng = np.random.default_rng(seed)
    for i in range(1, M.tree.n_nodes):
        for T, perm, k, P in ((M.TU[i], M.pU[i], M.kU[i], M.PU[i]), (M.TV[i], M.pV[i], M.kV[i], M.PV[i])):
            E = _interp.expand(T, perm, int(k))
            assert E.shape == P.shape and E.dtype == M.dtype
            np.testing.assert_array_equal(E, P)
            p2, T2 = _interp.compact(E, perm[:k])
            assert p2.dtype == np.int32 and np.array_equal(p2[:k], perm[:k])
            assert np.array_equal(np.sort(p2), np.arange(perm.size))
            np.testing.assert_array_equal(_interp.expand(T2, p2, int(k)), P)
    for i in M.tree.leaves:
        D = M.D[i]
        if M.symmetric:
            np.testing.assert_array_equal(_interp.pack_leaf(D), packed_lower(D))
            np.testing.assert_array_equal(_interp.unpack_leaf(packed_lower(D), D.shape[0]), D)
        G = rng.standard_normal(D.shape)
        np.testing.assert_array_equal(_interp.unpack_leaf(_interp.pack_leaf(G), D.shape[0]),
                                      np.tril(G) + np.tril(G, -1).T)


@given(interp_matrices(), st.integers(1, 5), st.integers(0, 2**16))
def test_products_equal_dense_reference(M, s, seed):
    """H @ X, H.T @ X, X @ H (vectors and blocks) against the reference; inputs untouched."""
    check_products(M, s, seed)


@given(interp_matrices(max_n=min(MAX_N, 96)))
def test_todense_and_diagonal(M):
    check_dense(M)


@given(interp_matrices(max_n=min(MAX_N, 96)), st.integers(0, 2**16))
def test_explicit_form_is_the_same_matrix(M, seed):
    check_explicit(M, seed)


@given(interp_matrices(dtype=np.float32), st.integers(1, 3), st.integers(0, 2**16))
def test_float32_products(M, s, seed):
    check_products(M, s, seed)


# -- threads -------------------------------------------------------------------------------

needs_two_threads = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                                       reason="numba has fewer than 2 threads here")


@contextlib.contextmanager
def numba_threads(k):
    old = numba.get_num_threads()
    numba.set_num_threads(k)
    try:
        yield
    finally:
        numba.set_num_threads(old)


@contextlib.contextmanager
def recorded_threads(min_work=None):
    """Record the n_threads of every run_parallel call (optionally with another PARALLEL_MIN_WORK)."""
    seen = []
    real = _matvec.run_parallel

    def spy(kernel, n_threads, *args):
        seen.append(n_threads)
        return real(kernel, n_threads, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_matvec, "run_parallel", spy)
        if min_work is not None:
            mp.setattr(_matvec, "PARALLEL_MIN_WORK", min_work)
        yield seen


def products_on(M, X, threads, min_work=None):
    with numba_threads(threads), recorded_threads(min_work) as seen:
        out = [M.H @ X, M.H.T @ X, X.T @ M.H]
    assert seen == [threads] * 3, seen
    return out


@needs_two_threads
@given(interp_matrices(), st.integers(1, 6), st.integers(0, 2**16))
def test_two_threads_give_the_same_product(M, s, seed):
    """With the parallel threshold at 0 every product splits its leaves over 2 threads: the
    leaves are independent and each is computed in the same order, so the result is the same
    to the bit as on one thread."""
    X = np.random.default_rng(seed).standard_normal((M.tree.n, s))
    X0 = X.copy()
    one = products_on(M, X, 1, min_work=0)
    two = products_on(M, X, 2, min_work=0)
    for Y1, Y2 in zip(one, two):
        np.testing.assert_array_equal(Y1, Y2)
    assert_within(two[0], M.A @ X, M, X, "H @ X on 2 threads")
    assert_unchanged(X, X0, "a threaded product")
    M.buffers_unchanged()


@needs_two_threads
@pytest.mark.skipif(NOJIT, reason="interpreted kernels: a block this large is slow and threads do not run")
@pytest.mark.parametrize("symmetric", [False, True])
def test_large_block_runs_on_threads(symmetric):
    """A block with n s >= PARALLEL_MIN_WORK picks up the threads numba has (no patching)."""
    n = 200
    s = -(-_matvec.PARALLEL_MIN_WORK // n)
    tree = random_split_tree(n, 12, seed=7)
    M = Interp(tree, 11, symmetric, "mixed")
    X = np.random.default_rng(3).standard_normal((n, s))
    with numba_threads(2):
        assert _matvec.threads_for(n, s) == 2 and _matvec.threads_for(n, s - 1 - s // 2) == 1
    one = products_on(M, X, 1)
    two = products_on(M, X, 2)
    for Y1, Y2 in zip(one, two):
        np.testing.assert_array_equal(Y1, Y2)
    assert_within(two[0], M.A @ X, M, X, "H @ X (large block, 2 threads)")
    assert_within(two[1], M.A.T @ X, M, X, "H.T @ X (large block, 2 threads)")
    M.buffers_unchanged()


# -- edge cases, every check ------------------------------------------------------------------

EDGE_TREES = {
    "n=1": lambda: hs.ClusterTree.balanced(1, 1),
    "one leaf, leaf size > n": lambda: hs.ClusterTree.balanced(7, 10),
    "one leaf, leaf size = n": lambda: hs.ClusterTree.balanced(5, 5),
    "n=2, leaf size 1": lambda: hs.ClusterTree.balanced(2, 1),
    "leaf size 1": lambda: hs.ClusterTree.balanced(13, 1),
    "random split, leaf size 1": lambda: random_split_tree(23, 1, seed=4),
    "random split, unbalanced": lambda: random_split_tree(40, 5, seed=9),
    "points, 2-D": lambda: hs.ClusterTree.from_points(np.random.default_rng(2).random((37, 2)), 6),
}


@pytest.mark.parametrize("mode", ["zero", "full", "mixed"])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("name", list(EDGE_TREES))
def test_edge_cases(name, symmetric, mode):
    M = Interp(EDGE_TREES[name](), 5, symmetric, mode)
    if mode == "zero":
        assert M.H.max_rank == 0
    if mode == "full":
        assert all(M.TU[i].size == 0 for i in range(1, M.tree.n_nodes))
    check_products(M, 1, 0)
    check_products(M, 4, 1)
    check_dense(M)
    check_explicit(M, 2)


# -- conversion of explicit matrices: to_interpolative / to_explicit ----------------------

def _conversion_tol(A, n, dtype):
    """Allowed ||converted - A||_F: eps (n + 16) ||A||_F.

    The conversion is exact in exact arithmetic; in floating point each level
    adds the rounding of a triangular solve (T = R11^-1 R12 of a pivoted QR,
    entries of modest size) and of the products S_a B12 S_b^T. Measured over
    300 random matrices (random_hss, balanced and random-split trees, n < 200,
    leaf 1-40, rank 0-7): at most 0.08 eps n ||A||_F, median 0.02.
    """
    return np.finfo(dtype).eps * (n + 16) * np.linalg.norm(A)


@given(hss_matrices(max_n=min(MAX_N, 96)))
def test_to_interpolative_is_the_same_matrix_in_less_memory(H):
    A = dense_from_generators(H)
    n = H.shape[0]
    I = H.to_interpolative()
    assert I.storage in ("interpolative", "interpolative-symmetric")
    assert I.to_interpolative() is I and H.to_explicit() is H
    assert np.all(I.row_ranks <= H.row_ranks) and np.all(I.col_ranks <= H.col_ranks)
    assert I.dtype == H.dtype
    tol = _conversion_tol(A, n, H.dtype)
    assert np.linalg.norm(I.todense() - A) <= tol
    # the explicit form written out from it is the same matrix, through the explicit kernel
    E = I.to_explicit()
    assert E.storage == "explicit"
    assert np.linalg.norm(dense_from_generators(E) - A) <= tol
    assert np.linalg.norm(H.T.to_interpolative().todense() - A.T) <= tol
    g = H.generators()
    exactly_symmetric = (np.array_equal(H.row_ranks, H.col_ranks)
                         and all(np.array_equal(u, v) for u, v in zip(g["U"], g["V"]) if u is not None)
                         and all(np.array_equal(r, w) for r, w in zip(g["R"], g["W"]) if r is not None)
                         and all(np.array_equal(b, c.T) for b, c in zip(g["B12"], g["B21"]) if b is not None)
                         and all(np.array_equal(d, d.T) for d in g["D"] if d is not None))
    assert (I.storage == "interpolative-symmetric") == exactly_symmetric


@given(hss_matrices(max_n=min(MAX_N, 64), dtype=np.float32))
def test_to_interpolative_float32(H):
    A = dense_from_generators(H)
    I = H.to_interpolative()
    assert I.dtype == np.float32
    assert np.linalg.norm(I.todense().astype(np.float64) - A) <= _conversion_tol(A, H.shape[0], np.float32)


def test_to_interpolative_drops_dependent_basis_columns():
    """A basis with a repeated column has rank k - 1: the conversion finds it and the
    matrix does not change."""
    tree = hs.ClusterTree.balanced(64, 16)
    H = hs.gallery.random_hss(tree, 4, seed=5)
    g = H.generators()
    for i in tree.leaves:
        g["U"][i] = g["U"][i].copy()
        g["U"][i][:, 3] = g["U"][i][:, 2]          # U_i has rank 3 now
    G = hs.HSSMatrix.from_generators(tree, **g)
    I = G.to_interpolative()
    A = dense_from_generators(G)
    assert np.all(I.row_ranks[tree.leaves] == 3) and np.all(I.col_ranks == G.col_ranks)
    assert np.linalg.norm(I.todense() - A) <= _conversion_tol(A, 64, np.float64)


def test_recompress_keeps_the_interpolative_storage():
    H = hs.gallery.random_hss(hs.ClusterTree.balanced(256, 32), 6, seed=2, symmetric=True)
    I = H.to_interpolative()
    C_expl, C_int = H.recompress(rtol=1e-3), I.recompress(rtol=1e-3)
    # the recompression of the two sides rounds differently: no longer exactly symmetric
    assert C_expl.storage == "explicit" and C_int.storage.startswith("interpolative")
    np.testing.assert_array_equal(C_int.row_ranks <= C_expl.row_ranks, True)
    X = np.random.default_rng(0).standard_normal((256, 3))
    assert np.linalg.norm(C_int @ X - C_expl @ X) <= 1e-12 * np.linalg.norm(C_expl @ X)
