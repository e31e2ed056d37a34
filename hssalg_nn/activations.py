"""Activation functions of the neural models, and fused versions for large arrays.

``ACTIVATIONS`` are written in ``autograd.numpy``: autograd traces each of their
elementwise operations, which is what the definitions say and what the tests
compare against. ``FAST_ACTIVATIONS`` compute the same values (bit for bit), GELU
as one autograd primitive with its derivative written out: on the (batch,
channels, n) states of a model autograd would otherwise trace about ten
elementwise primitives, each a pass over the array forward and more backward
(a NeuralHSS training step at n = 4096, 16 channels, batch 16 on two threads:
181 against 156 ms). ``ACTIVATION_DERIVATIVES`` give value and derivative
together in plain numpy, for primitives that fuse an activation into a larger
operation (the FNO projection).
"""

import autograd.numpy as anp
import numpy as onp
from autograd.extend import defjvp, defvjp, primitive

__all__ = ["ACTIVATIONS", "FAST_ACTIVATIONS", "ACTIVATION_DERIVATIVES", "gelu"]


def _gelu(x):
    # tanh approximation (Hendrycks & Gimpel). The argument is clipped at +-20, where tanh is
    # +-1 to double precision: autograd differentiates tanh through cosh(u)**2, which
    # overflows (with a warning) for |u| > ~355 although the derivative is simply 0 there.
    u = anp.clip(0.7978845608028654 * (x + 0.044715 * x * x * x), -20.0, 20.0)
    return 0.5 * x * (1.0 + anp.tanh(u))


ACTIVATIONS = {
    "gelu": _gelu,
    "relu": lambda x: anp.maximum(x, 0.0),
    "tanh": anp.tanh,
    "identity": lambda x: x,
}


_GELU_C = 0.7978845608028654      # sqrt(2 / pi)
_GELU_A = 0.044715


def _gelu_arg(x):
    return _GELU_C * (x + _GELU_A * x * x * x)


@primitive
def gelu(x):
    """GELU, tanh approximation: the function of ``hssalg_nn.layers.ACTIVATIONS["gelu"]``.

    The same formula (argument of tanh clipped at +-20) as one autograd
    primitive with its derivative written out, instead of the ~10 elementwise
    primitives autograd would trace: the activations of the wide projection
    layers were most of the time of an FNO training step.
    """
    return 0.5 * x * (1.0 + onp.tanh(onp.clip(_gelu_arg(x), -20.0, 20.0)))


def _gelu_with_derivative(x, want_value=True):
    """(gelu(x), gelu'(x)) in plain numpy, on a few in-place temporaries (the arrays are large)."""
    x2 = x * x
    u = x2 * (_GELU_C * _GELU_A)
    u += _GELU_C
    u *= x
    t = onp.tanh(onp.clip(u, -20.0, 20.0, out=u), out=u)
    value = None
    if want_value:
        value = t + 1.0
        value *= 0.5
        value *= x
    # d/du tanh(u) = 1 - t^2 is exactly 0 in floating point wherever the clip at +-20 is
    # active (|tanh| rounds to 1 beyond |u| ~ 19.1), so the clip needs no mask; x^2 is
    # capped in du only so that 0 * inf cannot occur for huge |x|
    du = onp.minimum(x2, 1e6, out=x2)
    du *= 3.0 * _GELU_C * _GELU_A
    du += _GELU_C
    s = t * t
    onp.subtract(1.0, s, out=s)
    s *= du
    s *= x
    t += 1.0
    t += s
    t *= 0.5
    return value, t


def _gelu_vjp(ans, x):
    def vjp(g):
        d = _gelu_with_derivative(x, want_value=False)[1]
        d *= g
        return d
    return vjp


defvjp(gelu, _gelu_vjp)
# forward mode (Levenberg-Marquardt differentiates models both ways)
defjvp(gelu, lambda g, ans, x: g * _gelu_with_derivative(x, want_value=False)[1])


def _relu_with_derivative(x):
    # at x = 0 the derivative 1/2, as autograd's maximum(x, 0) has it
    return onp.maximum(x, 0.0), onp.where(x > 0, 1.0, onp.where(x == 0, 0.5, 0.0))


def _tanh_with_derivative(x):
    t = onp.tanh(x)
    return t, 1.0 - t * t


# plain-numpy activations with their derivatives, for fused primitives: name -> x -> (f(x), f'(x))
ACTIVATION_DERIVATIVES = {
    "gelu": _gelu_with_derivative,
    "relu": _relu_with_derivative,
    "tanh": _tanh_with_derivative,
    "identity": lambda x: (x, onp.ones_like(x)),
}

# the activations of NeuralHSS, GELU as the fused primitive above
FAST_ACTIVATIONS = dict(ACTIVATIONS, gelu=gelu)
