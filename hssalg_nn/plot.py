"""Training curves of :func:`hssalg_nn.fit` (needs matplotlib, the ``plot`` extra).

:func:`plot_history` draws the training loss, and the validation loss when the
run had validation data, against the epoch (Adam) or iteration (L-BFGS,
Levenberg-Marquardt) on a logarithmic axis: the curve an operator-learning run
is judged by, and the one that shows at a glance where L-BFGS stalls and where
Levenberg-Marquardt took over (docs/neural.md, "P6 by gradient descent").
matplotlib is imported when the function is called, never on import.
"""

import numpy as np

__all__ = ["plot_history"]


def _curve(history, key):
    values = history[key]
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"history[{key!r}] must be a list of numbers, got {type(values).__name__}") from None
    if arr.ndim != 1:
        raise ValueError(f"history[{key!r}] must be a flat list of numbers, got shape {arr.shape}")
    return arr


def plot_history(history, ax=None, label=None, logy=True):
    """Draw the losses of a :func:`hssalg_nn.fit` run against its epochs.

    Parameters
    ----------
    history : dict
        As ``fit`` returns it: ``"loss"`` (one entry per epoch or iteration)
        and optionally ``"epoch"`` (the x values; 1, 2, ... when absent) and
        ``"val_loss"`` (drawn dashed, in the same colour).
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None. Several runs can share one
        Axes (call once per run with a ``label`` each).
    label : str, optional
        Legend entry of the training curve (the validation curve gets
        ``label + " (validation)"``).
    logy : bool
        Logarithmic loss axis (the default: relative errors span decades).

    Returns
    -------
    matplotlib Axes
    """
    if not hasattr(history, "keys") or "loss" not in history:
        raise TypeError(f"history must be the dict fit returned (with a 'loss' list), got "
                        f"{type(history).__name__}" + (f" with keys {sorted(history)}" if hasattr(history, "keys")
                                                       else ""))
    if label is not None and not isinstance(label, str):
        raise TypeError(f"label must be a string or None, got {type(label).__name__}")
    if not isinstance(logy, (bool, np.bool_)):
        raise TypeError(f"logy must be True or False, got {logy!r}")
    loss = _curve(history, "loss")
    if loss.size == 0:
        raise ValueError("history['loss'] is empty: nothing to draw (a run with epochs=0?)")
    epoch = _curve(history, "epoch") if "epoch" in history else np.arange(1.0, loss.size + 1)
    if epoch.shape != loss.shape:
        raise ValueError(f"history['epoch'] has {epoch.size} entries but history['loss'] has {loss.size}")
    val = None
    if "val_loss" in history and len(history["val_loss"]) > 0:   # fit's list is empty without validation
        val = _curve(history, "val_loss")
        if val.shape != loss.shape:
            raise ValueError(f"history['val_loss'] has {val.size} entries but history['loss'] has {loss.size}")
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("hssalg_nn.plot_history needs matplotlib, which is not installed; install it with "
                          "`pip install hssalg[plot]` (or `pip install matplotlib`)") from exc
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    (line,) = ax.plot(epoch, loss, "-", label=label if label is not None else "training loss")
    if val is not None:
        ax.plot(epoch, val, "--", color=line.get_color(),
                label=(label + " (validation)") if label is not None else "validation loss")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("epoch / iteration")
    ax.set_ylabel("loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax
