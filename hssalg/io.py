"""Save and load HSS matrices as ``.npz`` archives, without pickle.

A file holds plain numeric and fixed-width unicode arrays only, so
``np.load(..., allow_pickle=False)`` reads it and loading never runs code from
the file. The arrays are

================== ============ ===============================================
key                dtype, shape content
================== ============ ===============================================
format             str, ()      the tag ``"hssalg-hss"``
version            int64, ()    the format version (currently 1)
tree_parent ...    int64, (.,)  ``tree_parent``, ``tree_left``, ``tree_right``,
                                ``tree_start``, ``tree_stop``,
                                ``tree_level_ptr``, ``tree_perm``
tree_leaf_size     int64, ()    the leaf size the tree was built with
kU, kV             int64, (p,)  row and column rank of every node
D, U, ..., B21     float, (.,)  the seven flat generator buffers (see
                                :mod:`hssalg._layout`); float64 or float32
sha256             str, ()      SHA-256 over all arrays above
================== ============ ===============================================

That is version 1, the explicit storage form. A matrix in interpolative
storage (``H.storage``, what :meth:`HSSMatrix.from_kernel` returns) is written
as version 2, which adds

================== ============ ===============================================
storage            str, ()      ``"interpolative"`` or
                                ``"interpolative-symmetric"``
================== ============ ===============================================

and holds the kinds ``D, TU, pU, TV, pV, B12, B21`` of that form instead
(``pU``, ``pV`` int32 row orders; in the symmetric form ``TV``, ``pV`` and
``B21`` are empty: they are ``TU``, ``pU`` and ``B12^T``). Version-1 files keep
loading, and an explicit matrix is still written as version 1.

The per-node offsets are not stored: they follow from the tree and the ranks,
and recomputing them on load is what checks that the buffers fit the layout.
"""

import hashlib
import os

import numpy as np

from . import _layout
from ._npz import read_arrays
from ._validation import SUPPORTED_DTYPES
from .matrix import HSSMatrix
from .tree import ClusterTree

__all__ = ["save", "load"]

FORMAT_TAG = "hssalg-hss"
FORMAT_VERSION = 1            # explicit storage
FORMAT_VERSION_INTERP = 2     # interpolative storage
_STORAGES = ("interpolative", "interpolative-symmetric")

_TREE_FIELDS = ("parent", "left", "right", "start", "stop", "level_ptr", "perm")
_TREE_KEYS = tuple("tree_" + f for f in _TREE_FIELDS)
# the fixed order in which arrays enter the digest; "sha256" itself is not digested
_DIGESTED = ("format", "version") + _TREE_KEYS + ("tree_leaf_size", "kU", "kV") + _layout.KINDS
_KEYS = _DIGESTED + ("sha256",)
_DIGESTED_INTERP = (("format", "version", "storage") + _TREE_KEYS + ("tree_leaf_size", "kU", "kV")
                    + _layout.INTERP_KINDS)
_KEYS_INTERP = _DIGESTED_INTERP + ("sha256",)


def save(path, H):
    """Write an HSS matrix to an ``.npz`` file.

    Parameters
    ----------
    path : str or os.PathLike
        Written exactly as given: unlike ``np.savez``, no ``.npz`` suffix is
        appended, so ``load(path)`` with the same path reads the file back. An
        existing file is overwritten.
    H : HSSMatrix
        A transposed matrix (``A.T``) is stored with its generators
        materialised in transposed form, so it loads as an ordinary matrix
        equal to ``A.T``. The storage form is kept (:attr:`HSSMatrix.storage`).

    Notes
    -----
    The file is written in place; a save interrupted half way leaves a file
    that :func:`load` rejects as truncated rather than misreads.
    """
    if not isinstance(H, HSSMatrix):
        raise TypeError(f"H must be a hssalg.HSSMatrix, got {type(H).__name__}")
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}") from None
    arrays = _to_arrays(H)
    arrays["sha256"] = np.array(_digest(arrays))
    # an open file object stops numpy from appending ".npz" to the name
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load(path):
    """Read an HSS matrix written by :func:`save`.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    HSSMatrix

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If the file is truncated or not an ``.npz`` archive, is not an hssalg
        file, has another format version, misses arrays, does not match its
        SHA-256 digest, or holds arrays that do not describe a valid tree and
        generators of one layout. Nothing is returned in that case.

    Notes
    -----
    The digest detects accidental corruption and edits that did not
    recompute it; it is a checksum, not a signature against a deliberate forger.
    """
    path = os.fspath(path)
    arrays = read_arrays(path, lambda what: _error(path, what), "an hssalg file",
                         FORMAT_TAG, (FORMAT_VERSION, FORMAT_VERSION_INTERP))
    interp = int(arrays["version"]) == FORMAT_VERSION_INTERP
    keys = _KEYS_INTERP if interp else _KEYS
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise _error(path, f"missing arrays {missing}")
    extra = sorted(set(arrays) - set(keys))
    if extra:
        raise _error(path, f"unexpected arrays {extra}")
    stored = arrays["sha256"]
    if stored.shape != () or stored.dtype.kind != "U" or str(stored) != _digest(arrays):
        raise _error(path, "the content does not match its SHA-256 digest "
                           "(the file was modified or corrupted after saving)")
    return _build(path, arrays)


# -- helpers ----------------------------------------------------------------------------

def _to_arrays(H):
    """The arrays of a file, without the digest."""
    tree = H.tree
    if H.storage == "explicit":
        bufs, _ = H.generator_buffers()
        arrays = {"format": np.array(FORMAT_TAG), "version": np.array(FORMAT_VERSION, dtype=np.int64)}
    else:
        bufs = H._interp_buffers()
        if H.storage == "interpolative-symmetric":
            # TV, pV and B21 are TU, pU and B12^T: not written twice
            bufs = dict(bufs, TV=bufs["TU"][:0], pV=bufs["pU"][:0])
        arrays = {"format": np.array(FORMAT_TAG), "version": np.array(FORMAT_VERSION_INTERP, dtype=np.int64),
                  "storage": np.array(H.storage)}
    for key, field in zip(_TREE_KEYS, _TREE_FIELDS):
        arrays[key] = getattr(tree, field)
    arrays["tree_leaf_size"] = np.array(tree.leaf_size, dtype=np.int64)
    # row/col ranks, not the stored kU/kV: they belong to the (materialised) buffers
    arrays["kU"] = H.row_ranks
    arrays["kV"] = H.col_ranks
    arrays.update(bufs)
    return arrays


def _digest(arrays):
    """Hex SHA-256 of the arrays in ``_DIGESTED`` order.

    Key, dtype and shape are hashed with the bytes, so swapping two arrays or
    reinterpreting one changes the digest even when the raw bytes do not.
    """
    h = hashlib.sha256()
    version = arrays.get("version")
    interp = version is not None and version.shape == () and int(version) == FORMAT_VERSION_INTERP
    for key in (_DIGESTED_INTERP if interp else _DIGESTED):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _error(path, what):
    return ValueError(f"cannot load an HSS matrix from {path!r}: {what}")


def _build(path, arrays):
    """Check the arrays of a file against each other and assemble the matrix."""
    for key in _TREE_KEYS + ("kU", "kV"):
        a = arrays[key]
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise _error(path, f"{key} must be a 1-D integer array, got shape {a.shape} and dtype {a.dtype}")
    leaf_size = arrays["tree_leaf_size"]
    if leaf_size.shape != () or leaf_size.dtype.kind not in "iu":
        raise _error(path, f"tree_leaf_size must be an integer scalar, got shape {leaf_size.shape} "
                           f"and dtype {leaf_size.dtype}")
    try:
        tree = ClusterTree(*(arrays[k] for k in _TREE_KEYS), leaf_size=int(leaf_size))
    except (ValueError, TypeError) as exc:
        raise _error(path, f"the file holds an invalid cluster tree: {exc}") from exc

    kU = arrays["kU"].astype(np.int64)
    kV = arrays["kV"].astype(np.int64)
    for name, k in (("kU", kU), ("kV", kV)):
        if k.shape != (tree.n_nodes,):
            raise _error(path, f"{name} has {k.size} entries but the tree has {tree.n_nodes} nodes")
        if np.any(k < 0) or k[0] != 0:
            raise _error(path, f"{name} must be >= 0 with 0 at the root, got {k.tolist()}")

    if int(arrays["version"]) == FORMAT_VERSION_INTERP:
        return _build_interp(path, arrays, tree, kU, kV)
    bufs = {kind: arrays[kind] for kind in _layout.KINDS}
    dtype = bufs["D"].dtype
    if dtype not in SUPPORTED_DTYPES:
        raise _error(path, f"generator buffers must be float64 or float32, D is {dtype}")
    offs = _layout.offsets(tree, kU, kV)
    for kind, buf in bufs.items():
        if buf.dtype != dtype:
            raise _error(path, f"generator buffers must share one dtype, D is {dtype} but {kind} is {buf.dtype}")
        need = int(offs[kind][-1])
        if buf.shape != (need,):
            raise _error(path, f"the {kind} buffer has shape {buf.shape} but the tree and ranks "
                               f"need ({need},)")
        if not np.all(np.isfinite(buf)):
            raise _error(path, f"the {kind} buffer contains non-finite entries (NaN or inf)")
    return HSSMatrix(tree, kU, kV, bufs, _offsets=offs)


def _build_interp(path, arrays, tree, kU, kV):
    """The matrix of a version-2 file (interpolative storage), every array checked."""
    storage = arrays["storage"]
    if storage.shape != () or storage.dtype.kind != "U" or str(storage) not in _STORAGES:
        raise _error(path, f"storage must be one of {list(_STORAGES)}, got {storage!r}")
    symmetric = str(storage) == "interpolative-symmetric"
    if symmetric and not np.array_equal(kU, kV):
        raise _error(path, "a symmetric interpolative matrix needs kU == kV")
    bufs = {kind: arrays[kind] for kind in _layout.INTERP_KINDS}
    if symmetric:
        for kind in ("TV", "pV"):
            if bufs[kind].size:
                raise _error(path, f"the {kind} buffer must be empty in the symmetric form (it is "
                                   f"{'TU' if kind == 'TV' else 'pU'}), got {bufs[kind].size} entries")
        bufs["TV"], bufs["pV"] = bufs["TU"], bufs["pU"]
    dtype = bufs["D"].dtype
    if dtype not in SUPPORTED_DTYPES:
        raise _error(path, f"generator buffers must be float64 or float32, D is {dtype}")
    offs = _layout.interp_offsets(tree, kU, kV, symmetric)
    for kind, buf in bufs.items():
        index = kind in ("pU", "pV")
        if index and buf.dtype.kind not in "iu":
            raise _error(path, f"the {kind} buffer must hold integers, got dtype {buf.dtype}")
        if not index and buf.dtype != dtype:
            raise _error(path, f"generator buffers must share one dtype, D is {dtype} but {kind} is {buf.dtype}")
        need = int(offs[kind][-1])
        if buf.shape != (need,):
            raise _error(path, f"the {kind} buffer has shape {buf.shape} but the tree and ranks "
                               f"need ({need},)")
        if not index and not np.all(np.isfinite(buf)):
            raise _error(path, f"the {kind} buffer contains non-finite entries (NaN or inf)")
    for kind, k in (("pU", kU), ("pV", kV)):
        c = _layout.candidate_counts(tree, k)
        if np.any(c < k):
            raise _error(path, f"ranks exceed the rows of the interpolation matrices ({kind})")
        perm = bufs[kind].astype(np.int64)
        node = np.repeat(np.arange(tree.n_nodes), c)
        if np.any(perm < 0) or np.any(perm >= c[node]):
            raise _error(path, f"the {kind} buffer holds row indices outside their node's rows")
        # every node's entries must be a permutation of 0 .. c_i - 1
        if np.unique(node * (int(c.max(initial=0)) + 1) + perm).size != perm.size:
            raise _error(path, f"the {kind} buffer repeats a row within a node: not a permutation")
        bufs[kind] = perm.astype(np.int32)
    if symmetric:
        bufs["pV"] = bufs["pU"]
    return HSSMatrix(tree, kU, kV, bufs, _offsets=offs, _form=str(storage))
