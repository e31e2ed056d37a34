"""save / load: bit-exact round trips and every way a file can be wrong."""

import os
import tempfile

import numpy as np
import pytest
from hypothesis import given

import hssalg as hs
from hssalg import gallery
from hssalg.io import _digest, load, save
from strategies import hss_matrices

KINDS = ("D", "U", "V", "R", "W", "B12", "B21")


def assert_same_matrix(L, H):
    """L is bit-for-bit the matrix H: tree, ranks, dtype, buffers and products."""
    assert L.tree.same_as(H.tree)
    assert L.tree.leaf_size == H.tree.leaf_size
    assert L.dtype == H.dtype
    np.testing.assert_array_equal(L.row_ranks, H.row_ranks)
    np.testing.assert_array_equal(L.col_ranks, H.col_ranks)
    lb, lo = L.generator_buffers()
    hb, ho = H.generator_buffers()
    for kind in KINDS:
        assert lb[kind].dtype == hb[kind].dtype, kind
        assert lb[kind].tobytes() == hb[kind].tobytes(), kind
        np.testing.assert_array_equal(lo[kind], ho[kind])
    X = np.random.default_rng(0).standard_normal((H.shape[0], 3))
    # same buffers through the same kernel: equal to the last bit, no tolerance
    assert np.array_equal(L @ X, H @ X)
    assert np.array_equal(L.rmatvec(X), H.rmatvec(X))
    assert np.array_equal(L.todense(), H.todense())


def round_trip(H, path):
    save(path, H)
    return load(path)


# -- round trips ---------------------------------------------------------------------

@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_random_hss_round_trip(tmp_path, symmetric, dtype):
    H = gallery.random_hss(hs.ClusterTree.balanced(200, 16), 5, seed=3, symmetric=symmetric, dtype=dtype)
    L = round_trip(H, tmp_path / "h.npz")
    assert L.dtype == np.dtype(dtype)
    assert_same_matrix(L, H)


def test_poisson_green_round_trip(tmp_path):
    H = gallery.poisson1d_green_hss(150, leaf_size=16)
    assert_same_matrix(round_trip(H, tmp_path / "g.npz"), H)


def test_from_dense_on_geometric_tree_round_trip(tmp_path):
    pts = np.random.default_rng(1).random((120, 2))
    tree = hs.ClusterTree.from_points(pts, leaf_size=12)
    H = hs.HSSMatrix.from_dense(gallery.gaussian_kernel_matrix(pts, 0.5), tree=tree, rtol=1e-8)
    L = round_trip(H, tmp_path / "k.npz")
    np.testing.assert_array_equal(L.tree.perm, tree.perm)
    assert_same_matrix(L, H)


def test_single_leaf_round_trip(tmp_path):
    H = gallery.random_hss(hs.ClusterTree.balanced(10, 16), 3, seed=0)
    assert H.tree.n_nodes == 1
    assert_same_matrix(round_trip(H, tmp_path / "leaf.npz"), H)


def test_rank_zero_round_trip(tmp_path):
    H = gallery.random_hss(hs.ClusterTree.balanced(100, 8), 0, seed=0)
    assert H.max_rank == 0
    assert_same_matrix(round_trip(H, tmp_path / "r0.npz"), H)


def test_transposed_round_trip_equals_transpose(tmp_path):
    # unequal row and column ranks make a missed swap of kU / kV visible
    A = gallery.random_hss(hs.ClusterTree.balanced(64, 8), 4, seed=2)
    g = A.generators()
    g["V"] = [None if v is None else v[:, :2] for v in g["V"]]
    g["W"] = [None if w is None else w[:2, :2] for w in g["W"]]
    g["B12"] = [None if b is None else b[:, :2] for b in g["B12"]]
    g["B21"] = [None if b is None else b[:, :2] for b in g["B21"]]
    H = hs.HSSMatrix.from_generators(A.tree, **g)
    assert not np.array_equal(H.row_ranks, H.col_ranks)
    L = round_trip(H.T, tmp_path / "t.npz")
    assert_same_matrix(L, H.T)
    np.testing.assert_allclose(L.todense(), H.todense().T, rtol=0, atol=1e-13 * np.abs(H.todense()).max())


def test_path_without_suffix_is_written_as_given(tmp_path):
    H = gallery.poisson1d_green_hss(40, leaf_size=8)
    path = tmp_path / "matrix.hss"
    save(str(path), H)
    assert os.listdir(tmp_path) == ["matrix.hss"]
    assert_same_matrix(load(str(path)), H)


@given(hss_matrices(max_n=60))
def test_round_trip_property(H):
    with tempfile.TemporaryDirectory() as d:
        assert_same_matrix(round_trip(H, os.path.join(d, "h.npz")), H)


def test_save_rejects_non_hss(tmp_path):
    with pytest.raises(TypeError, match="H must be a hssalg.HSSMatrix"):
        save(tmp_path / "a.npz", np.eye(3))
    with pytest.raises(TypeError, match="path must be"):
        save(3.5, gallery.poisson1d_green_hss(8, leaf_size=4))


# -- broken files ----------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    """Path of a valid file of a small random HSS matrix."""
    path = tmp_path / "h.npz"
    save(path, gallery.random_hss(hs.ClusterTree.balanced(48, 8), 3, seed=5))
    return path


def rewrite(path, redigest=True, drop=(), **changes):
    """Replace arrays of a saved file, with a recomputed digest unless told not to."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays.update(changes)
    if redigest:
        arrays["sha256"] = np.array(_digest(arrays))
    for key in drop:
        del arrays[key]
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nothing.npz")


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="h.npz.*truncated or corrupt"):
        load(saved)


def test_not_an_archive(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("just some text\n")
    with pytest.raises(ValueError, match="text.npz.*not a readable .npz"):
        load(path)


def test_foreign_npz(tmp_path):
    path = tmp_path / "foreign.npz"
    rng = np.random.default_rng(0)
    np.savez(path, a=rng.random(5), b=rng.random((2, 2)))
    with pytest.raises(ValueError, match="foreign.npz.*not an hssalg file"):
        load(path)


def test_npy_file(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(4.0))
    with pytest.raises(ValueError, match="not an hssalg file"):
        load(path)


def test_wrong_version(saved):
    rewrite(saved, version=np.array(3, dtype=np.int64))
    with pytest.raises(ValueError, match="format version 3.*reads versions 1, 2"):
        load(saved)


def test_missing_arrays(saved):
    rewrite(saved, drop=("B21", "kV"))
    with pytest.raises(ValueError, match=r"missing arrays \['kV', 'B21'\]"):
        load(saved)


def test_unexpected_arrays(saved):
    rewrite(saved, extra=np.zeros(2))
    with pytest.raises(ValueError, match="unexpected arrays"):
        load(saved)


def test_tampered_value(saved):
    with np.load(saved) as f:
        D = f["D"].copy()
    D[7] += 1e-12
    rewrite(saved, redigest=False, D=D)
    with pytest.raises(ValueError, match="h.npz.*SHA-256 digest"):
        load(saved)


def test_swapped_arrays(saved):
    with np.load(saved) as f:
        U, V = f["U"], f["V"]
    assert U.shape == V.shape and not np.array_equal(U, V)
    rewrite(saved, redigest=False, U=V, V=U)
    with pytest.raises(ValueError, match="SHA-256 digest"):
        load(saved)


def test_buffer_does_not_fit_layout(saved):
    with np.load(saved) as f:
        D = f["D"]
    rewrite(saved, D=D[:-1])
    with pytest.raises(ValueError, match=r"the D buffer has shape .* need"):
        load(saved)


def test_ranks_do_not_fit_buffers(saved):
    with np.load(saved) as f:
        kU = f["kU"].copy()
    kU[1] += 1
    rewrite(saved, kU=kU)
    with pytest.raises(ValueError, match="buffer has shape .* the tree and ranks need"):
        load(saved)


def test_ranks_of_wrong_length(saved):
    rewrite(saved, kV=np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="kV has 3 entries but the tree has"):
        load(saved)


def test_invalid_tree(saved):
    with np.load(saved) as f:
        perm = f["tree_perm"].copy()
    perm[0] = perm[1]
    rewrite(saved, tree_perm=perm)
    with pytest.raises(ValueError, match="h.npz.*invalid cluster tree.*perm"):
        load(saved)


def test_mixed_buffer_dtypes(saved):
    with np.load(saved) as f:
        U = f["U"]
    rewrite(saved, U=U.astype(np.float32))
    with pytest.raises(ValueError, match="share one dtype"):
        load(saved)


def test_non_finite_generator(saved):
    with np.load(saved) as f:
        R = f["R"].copy()
    R[-1] = np.nan
    rewrite(saved, R=R)
    with pytest.raises(ValueError, match="R buffer contains non-finite"):
        load(saved)


# -- interpolative storage (format version 2) -------------------------------------------

def _interp_matrix(symmetric, n=300):
    from hssalg import kernels
    pts = np.random.default_rng(4).random((n, 2))
    if symmetric:
        k = kernels.Gaussian(0.1, shift=1.0)
    else:
        k = kernels.CallableKernel(lambda X, Y: np.exp(-4.0 * np.sum((X[:, None] - 1.2 * Y[None]) ** 2, axis=2)))
    return hs.HSSMatrix.from_kernel(k, pts, leaf_size=32, rtol=1e-6)


def assert_same_interp_matrix(L, H):
    """L is bit-for-bit H in interpolative storage: its own buffers and all of assert_same_matrix."""
    assert L.storage == H.storage
    assert L.nbytes == H.nbytes
    lb, hb = L._interp_buffers(), H._interp_buffers()
    for kind in ("D", "TU", "pU", "TV", "pV", "B12", "B21"):
        assert lb[kind].tobytes() == hb[kind].tobytes(), kind
    assert_same_matrix(L, H)


@pytest.mark.parametrize("symmetric", [False, True])
def test_interpolative_round_trip(tmp_path, symmetric):
    H = _interp_matrix(symmetric)
    L = round_trip(H, tmp_path / "i.npz")
    assert_same_interp_matrix(L, H)
    if symmetric:
        assert L._bufs["TU"] is L._bufs["TV"]
    with np.load(tmp_path / "i.npz") as f:
        assert int(f["version"]) == 2 and str(f["storage"]) == H.storage


@pytest.mark.parametrize("symmetric", [False, True])
def test_interpolative_transposed_round_trip_equals_transpose(tmp_path, symmetric):
    H = _interp_matrix(symmetric, n=200)
    L = round_trip(H.T, tmp_path / "t.npz")
    assert L.storage == H.storage
    np.testing.assert_array_equal(L.todense(), H.T.todense())


@pytest.fixture
def saved_interp(tmp_path):
    path = tmp_path / "i.npz"
    save(path, _interp_matrix(False, n=200))
    return path


def test_interpolative_unknown_storage(saved_interp):
    rewrite(saved_interp, storage=np.array("compressed"))
    with pytest.raises(ValueError, match="storage must be one of"):
        load(saved_interp)


def test_interpolative_row_order_not_a_permutation(saved_interp):
    with np.load(saved_interp) as f:
        pU = f["pU"].copy()
    pU[1] = pU[0]
    rewrite(saved_interp, pU=pU)
    with pytest.raises(ValueError, match="pU buffer repeats a row within a node"):
        load(saved_interp)


def test_interpolative_row_index_out_of_range(saved_interp):
    with np.load(saved_interp) as f:
        pV = f["pV"].copy()
    pV[0] = 10**6
    rewrite(saved_interp, pV=pV)
    with pytest.raises(ValueError, match="pV buffer holds row indices outside"):
        load(saved_interp)


def test_interpolative_row_order_must_be_integer(saved_interp):
    with np.load(saved_interp) as f:
        pU = f["pU"].astype(np.float64)
    rewrite(saved_interp, pU=pU)
    with pytest.raises(ValueError, match="pU buffer must hold integers"):
        load(saved_interp)


def test_interpolative_buffer_does_not_fit_layout(saved_interp):
    with np.load(saved_interp) as f:
        TU = f["TU"][:-1].copy()
    rewrite(saved_interp, TU=TU)
    with pytest.raises(ValueError, match=r"the TU buffer has shape"):
        load(saved_interp)


def test_interpolative_symmetric_file_with_column_side(tmp_path):
    path = tmp_path / "s.npz"
    save(path, _interp_matrix(True, n=200))
    with np.load(path) as f:
        TU = f["TU"].copy()
    rewrite(path, TV=TU)
    with pytest.raises(ValueError, match="TV buffer must be empty in the symmetric form"):
        load(path)


def test_interpolative_file_missing_storage(saved_interp):
    rewrite(saved_interp, drop=("storage",))
    with pytest.raises(ValueError, match=r"missing arrays \['storage'\]"):
        load(saved_interp)
