"""hssalg_nn.activations: the fused activations against the traced definitions, both modes."""

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import make_jvp
from autograd.test_util import check_grads

import hssalg as hs
from hssalg_nn.activations import ACTIVATIONS, FAST_ACTIVATIONS, gelu
from hssalg_nn.layers import NeuralHSS


def _points(dtype):
    # both sides of the clip at |u| = 20 (|x| ~ 6), and far beyond it
    x = np.concatenate([np.linspace(-40, 40, 801), np.random.default_rng(1).standard_normal(200) * 3])
    return x.astype(dtype)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_activations_give_the_definitions_bit_for_bit(name, dtype):
    x = _points(dtype)
    got, ref = FAST_ACTIVATIONS[name](x), ACTIVATIONS[name](x)
    assert got.dtype == ref.dtype == dtype
    assert np.array_equal(got, ref)


def test_fused_gelu_derivatives_in_both_modes():
    x = np.random.default_rng(2).standard_normal(40) * 4
    check_grads(gelu, modes=["fwd", "rev"], order=1)(x)
    # forward mode against the traced definition's, beyond the clip as well
    x = _points(np.float64)
    v = np.cos(np.arange(x.size))
    _, jv = make_jvp(gelu)(x)(v)
    _, jv_ref = make_jvp(ACTIVATIONS["gelu"])(x)(v)
    # the same O(1) terms of the derivative summed in another order
    assert np.abs(jv - jv_ref).max() <= 100 * np.finfo(float).eps * np.abs(jv_ref).max()


def test_neural_hss_uses_the_fused_gelu_and_matches_the_traced_model():
    model = NeuralHSS(hs.ClusterTree.balanced(32, 8), 3, 2, 2)
    params = model.init(seed=0)
    X = np.random.default_rng(3).standard_normal((4, 32))
    assert model._sigma is gelu
    fast = model.apply(params, X)
    model._sigma = ACTIVATIONS["gelu"]
    assert np.array_equal(fast, model.apply(params, X))
