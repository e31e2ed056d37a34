"""hssalg_nn: Neural-HSS operator layers trained with autograd.

The layers are HSS operators (Sittoni et al., "Neural-HSS", arXiv 2602.18248)
whose products and gradients run in hssalg's numba kernels. A trained linear
layer exports to an :class:`hssalg.HSSMatrix` (``layer.to_hss(params)``) and can
then be factorised, recompressed or saved like any other.

See docs/neural.md.
"""

from ._heap import keep_freed_memory
from .exact import fit_linear_exact, min_samples_exact
from .layers import HSSLinear, NeuralHSS
from .optim import adam_init, adam_step, lbfgs
from .plot import plot_history
from .primitives import HSSLayout, hss_apply
from .train import fit, load_checkpoint, relative_l2, relative_mse, save_checkpoint

__all__ = ["HSSLinear", "NeuralHSS", "HSSLayout", "hss_apply", "fit", "fit_linear_exact",
           "min_samples_exact", "adam_init", "adam_step", "lbfgs", "relative_l2", "relative_mse",
           "save_checkpoint", "load_checkpoint", "keep_freed_memory", "plot_history"]
