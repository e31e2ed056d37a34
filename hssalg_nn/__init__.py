"""hssalg_nn: Neural-HSS operator layers trained with autograd.

This package is planned (issue 5: differentiable HSS products, HSSLinear,
NeuralHSS, training); it exports nothing yet.
"""

__all__ = []
