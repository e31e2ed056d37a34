"""Assertions for HSS matrices, importable by users' own test suites.

Tolerances are relative to norms, never absolute numbers, so the same check
works for a matrix of norm 1e-6 and one of norm 1e6.
"""

import numpy as np

from .matrix import HSSMatrix

__all__ = ["assert_hss_allclose", "adjoint_test", "relative_error"]


def _dense(M, name):
    if isinstance(M, HSSMatrix):
        return M.todense()
    A = np.asarray(M)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"{name} must be an HSSMatrix or a square 2-D array, got shape {A.shape}")
    return A


def relative_error(H, reference):
    """``||H - reference||_F / ||reference||_F`` (absolute error when the reference is 0).

    Parameters
    ----------
    H, reference : HSSMatrix or (n, n) array_like
        Dense forms are formed, so this costs O(n^2) memory.
    """
    A = _dense(H, "H")
    B = _dense(reference, "reference")
    if A.shape != B.shape:
        raise ValueError(f"H has shape {A.shape} but reference has shape {B.shape}")
    den = np.linalg.norm(B)
    num = np.linalg.norm(A.astype(np.float64) - B.astype(np.float64))
    return float(num / den) if den > 0 else float(num)


def assert_hss_allclose(H, reference, rtol=1e-10, atol=0.0, err_msg=""):
    """Assert ``||H - reference||_F <= rtol * ||reference||_F + atol``.

    Parameters
    ----------
    H : HSSMatrix or (n, n) array_like
    reference : HSSMatrix or (n, n) array_like
    rtol, atol : float
    err_msg : str
        Prepended to the failure message.

    Raises
    ------
    AssertionError
        With the measured and allowed errors.
    """
    A = _dense(H, "H").astype(np.float64)
    B = _dense(reference, "reference").astype(np.float64)
    if A.shape != B.shape:
        raise AssertionError(f"{err_msg}shapes differ: {A.shape} vs {B.shape}")
    err = np.linalg.norm(A - B)
    ref = np.linalg.norm(B)
    allowed = rtol * ref + atol
    if not err <= allowed:
        raise AssertionError(f"{err_msg}||H - reference||_F = {err:.3e} exceeds {allowed:.3e} "
                             f"(rtol {rtol:g} x ||reference||_F {ref:.3e} + atol {atol:g})")


def adjoint_test(H, n_vectors=3, seed=0, rtol=None):
    """Dot test of ``rmatvec`` against ``matvec``: <A x, y> = <x, A^T y>.

    Random blocks X, Y of ``n_vectors`` columns are drawn and the two inner
    products compared entry by entry, relative to the size of the terms
    (``|x| |A^T y| + |A x| |y|``), the way pylops checks its operators.

    Parameters
    ----------
    H : HSSMatrix or any object with ``shape``, ``matvec`` and ``rmatvec``
    n_vectors : int
    seed : int
    rtol : float, optional
        Default ``100 * eps * (depth + 2)`` for the matrix dtype.

    Returns
    -------
    float
        The largest relative mismatch.

    Raises
    ------
    AssertionError
        When the mismatch exceeds ``rtol``.
    """
    n = H.shape[0]
    dtype = np.dtype(getattr(H, "dtype", np.float64))
    if rtol is None:
        depth = H.tree.depth if isinstance(H, HSSMatrix) else 10
        rtol = 100 * np.finfo(dtype).eps * (depth + 2)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_vectors)).astype(dtype)
    Y = rng.standard_normal((n, n_vectors)).astype(dtype)
    AX = np.asarray(H.matvec(X), dtype=np.float64)
    ATY = np.asarray(H.rmatvec(Y), dtype=np.float64)
    lhs = np.einsum("ij,ij->j", AX, Y)
    rhs = np.einsum("ij,ij->j", X, ATY)
    scale = (np.linalg.norm(X, axis=0) * np.linalg.norm(ATY, axis=0)
             + np.linalg.norm(AX, axis=0) * np.linalg.norm(Y, axis=0))
    scale = np.where(scale > 0, scale, 1.0)
    mismatch = float(np.max(np.abs(lhs - rhs) / scale))
    if not mismatch <= rtol:
        raise AssertionError(f"adjoint test failed: |<Ax, y> - <x, A^T y>| / scale = {mismatch:.3e} > {rtol:.3e}")
    return mismatch
