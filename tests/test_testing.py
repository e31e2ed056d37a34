"""The assertions users import from hssalg.testing must fail when they should."""

import numpy as np
import pytest

import hssalg as hs


def test_assert_hss_allclose_passes_and_fails():
    A = hs.gallery.toeplitz_inverse_distance(100)
    H = hs.HSSMatrix.from_dense(A, leaf_size=10, rtol=1e-12)
    hs.testing.assert_hss_allclose(H, A, rtol=1e-10)
    B = A.copy()
    B[3, 90] += 1e-3
    with pytest.raises(AssertionError, match="exceeds"):
        hs.testing.assert_hss_allclose(H, B, rtol=1e-10)
    with pytest.raises(AssertionError, match="shapes differ"):
        hs.testing.assert_hss_allclose(H, A[:50, :50])


class _WrongAdjoint:
    """An operator whose rmatvec is not the transpose of its matvec."""

    def __init__(self, A):
        self.A = A
        self.shape = A.shape
        self.dtype = A.dtype

    def matvec(self, x):
        return self.A @ x

    def rmatvec(self, x):
        return self.A @ x          # should be A.T @ x


def test_adjoint_test_catches_a_wrong_transpose():
    A = np.random.default_rng(0).standard_normal((40, 40))
    with pytest.raises(AssertionError, match="adjoint test failed"):
        hs.testing.adjoint_test(_WrongAdjoint(A))
    assert hs.testing.adjoint_test(hs.gallery.random_hss(hs.ClusterTree.balanced(40, 5), 3)) < 1e-12
