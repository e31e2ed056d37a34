"""BLAS thread counts around the numba kernels (hssalg._blas_threads) and in fit.

Thread counts are read with threadpoolctl, independently of the code under test.
The test environment pins BLAS to one thread (tox.ini), so each test first
raises it to two with threadpoolctl: otherwise "one thread inside" would hold
whether the code did anything or not.
"""

import autograd.numpy as anp
import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import hssalg as hs
from hssalg._blas_threads import one_blas_thread
from hssalg._kernels.matvec import run_parallel
from hssalg_nn import HSSLinear, fit
from hssalg_nn.baselines.linear import DenseLinear


def _blas_threads():
    return sorted({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})


@pytest.fixture
def two_blas_threads():
    with threadpool_limits(2, user_api="blas"):
        if _blas_threads() != [2]:
            pytest.skip(f"BLAS did not take two threads here: {_blas_threads()}")
        yield


def test_one_blas_thread_inside_and_restored_after(two_blas_threads):
    with one_blas_thread():
        assert _blas_threads() == [1]
        with one_blas_thread():     # re-entrant: the inner exit does not restore yet
            pass
        assert _blas_threads() == [1]
    assert _blas_threads() == [2]


def test_one_blas_thread_restores_after_an_error(two_blas_threads):
    with pytest.raises(ZeroDivisionError):
        with one_blas_thread():
            1 / 0
    assert _blas_threads() == [2]


def test_run_parallel_runs_kernels_with_one_blas_thread(two_blas_threads):
    seen = []
    run_parallel(lambda n_threads: seen.append(_blas_threads()), 1)
    assert seen == [[1]]
    assert _blas_threads() == [2]


def _fit_blas_threads(model, params, X, Y):
    seen = []

    def loss(pred, Y):
        seen.append(_blas_threads())
        return anp.sum((pred - Y) ** 2)

    fit(model, params, X, Y, epochs=1, batch_size=4, loss=loss, progress=False)
    return seen


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba has one thread here")
def test_fit_of_an_hss_model_runs_blas_on_one_thread(two_blas_threads):
    n = 32
    layer = HSSLinear(hs.ClusterTree.balanced(n, 8), 2)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((8, n)), rng.standard_normal((8, n))
    seen = _fit_blas_threads(layer, layer.init(seed=0), X, Y)
    assert seen and all(s == [1] for s in seen)
    assert _blas_threads() == [2]
    # with the products on one numba thread, BLAS keeps the caller's threads
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        seen = _fit_blas_threads(layer, layer.init(seed=0), X, Y)
    finally:
        numba.set_num_threads(old)
    assert seen and all(s == [2] for s in seen)


def test_fit_of_a_dense_model_keeps_the_callers_blas_threads(two_blas_threads):
    n = 16
    model = DenseLinear(n)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((8, n)), rng.standard_normal((8, n))
    seen = _fit_blas_threads(model, model.init(seed=0), X, Y)
    assert seen and all(s == [2] for s in seen)
