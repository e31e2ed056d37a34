"""Baselines for operator learning, trained by the same :func:`hssalg_nn.fit` as Neural-HSS.

Every model follows the protocol of :class:`hssalg_nn.NeuralHSS`: hyperparameters
in the constructor, ``init(seed) -> params`` (a nested dict of float64 arrays),
``apply(params, X)`` mapping a batch X (B, n) to (B, n) in autograd.numpy, an
``n_params`` property and a ``__repr__``.

* :class:`FNO` -- Fourier neural operator (Li et al. 2021), 1-, 2- and 3-D.
* :class:`DeepONet` -- branch and trunk networks (Lu et al. 2021).
* :class:`CNN` -- residual convolutional network, zero padding (Dirichlet).
* :class:`DenseLinear` -- a trainable dense operator, and
  :func:`least_squares_operator`, its minimum-norm fit in closed form.
* :class:`StackedHSSLinear` -- an :class:`hssalg_nn.HSSLinear` written the
  straightforward way (level-stacked ``matmul``\ s in autograd.numpy, no numba):
  a reference for the layer's values and gradients, and the speed baseline of
  ``benchmarks/bench_nn.py``.
* :func:`hss_oracle` -- for linear problems, the true solution operator
  compressed to HSS form and truncated to a rank (``oracle.at_rank(r)`` for
  other ranks): about the best error an HSS model of that rank can reach.

:func:`make_baseline` builds any of them from a data set's grid description
with defaults sized for small low-data problems on a CPU.
"""

from .cnn import CNN
from .deeponet import DeepONet
from .fno import FNO
from .linear import DenseLinear, LinearOperatorModel, least_squares_operator
from .oracle import HSSOracle, dataset_oracle, hss_oracle
from .registry import BASELINES, DEFAULTS, make_baseline
from .stacked import StackedHSSLinear

__all__ = ["FNO", "DeepONet", "CNN", "DenseLinear", "LinearOperatorModel", "least_squares_operator",
           "HSSOracle", "hss_oracle", "dataset_oracle", "StackedHSSLinear", "BASELINES", "DEFAULTS",
           "make_baseline"]
