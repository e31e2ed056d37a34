"""The training loop: minibatch Adam or full-batch L-BFGS, history, progress, checkpoints.

``fit`` trains any differentiable map ``f(params, X)`` -- a ``NeuralHSS`` or
``HSSLinear`` (anything with ``.apply(params, X)``) or a plain function -- on
input/output pairs, with the relative L2 loss of operator learning by default.
It is deterministic: the minibatch order of epoch e is drawn from
``numpy.random.default_rng([seed, e])``, so nothing but the parameters, the
optimiser state and the history has to be saved for a resumed run to continue
exactly like an uninterrupted one.

Checkpoints are ``.npz`` archives without pickle: every leaf of the pytrees
``params``, ``opt_state`` and ``history`` is one array, keyed by its path
(``params/blocks/0/K/D``; ``/`` and ``~`` inside dict keys are escaped as
``~1`` and ``~0``, as in JSON pointers), and a JSON *skeleton* records the
containers (dict, list, tuple, None) and the Python type of scalar leaves, so
a round trip gives back the same structure with bit-identical arrays.
"""

import contextlib
import hashlib
import json
import numbers
import os
import time

import autograd.numpy as anp
import numba
import numpy as np
from autograd import value_and_grad
from autograd.extend import defvjp, primitive

from hssalg._blas_threads import one_blas_thread
from hssalg._npz import read_arrays
from hssalg._progress import Progress

from . import _heap
from .lm import check_options as check_lm_options
from .lm import levenberg_marquardt, make_problem
from .optim import adam_init, adam_step, lbfgs, tree_map

__all__ = ["fit", "relative_l2", "relative_mse", "save_checkpoint", "load_checkpoint"]

# a run that is still busy after this many seconds gets a progress line (progress=None)
AUTO_PROGRESS_AFTER = 3.0


# -- losses ---------------------------------------------------------------------------------

@primitive
def _row_norms(R):
    """Euclidean norm of every row of R (N, n)."""
    return np.linalg.norm(R, axis=1)


def _row_norms_vjp(ans, R):
    # d|r| = r / |r|; at r = 0 (an exact fit) the subgradient 0 instead of 0 / 0
    safe = np.where(ans > 0, ans, 1.0)
    return lambda g: (g / safe)[:, None] * R


defvjp(_row_norms, _row_norms_vjp)


def _as_rows(a):
    return anp.reshape(a, (1, -1)) if anp.ndim(a) == 1 else a


def relative_l2(pred, Y):
    """Mean relative L2 error over samples: ``mean_i ||pred_i - y_i|| / ||y_i||``.

    The loss of operator learning (FNO, Neural-HSS papers): every sample counts
    alike whatever the size of its solution. Differentiable with autograd in
    ``pred`` (and ``Y``); the gradient at an exactly fitted sample is taken as 0.

    Parameters
    ----------
    pred, Y : (N, n) arrays (or (n,) for one sample)
        Rows are samples. A row of Y that is zero gives inf or nan; ``fit``
        refuses such data.

    Returns
    -------
    float (or an autograd box while differentiating)
    """
    pred, Y = _as_rows(pred), _as_rows(Y)
    return anp.mean(_row_norms(pred - Y) / _row_norms(Y))


def relative_mse(pred, Y):
    """Mean squared relative error ``mean_i ||pred_i - y_i||^2 / ||y_i||^2``.

    Smooth at an exact fit, which suits L-BFGS when the target is exactly
    representable; its square root is not :func:`relative_l2` (mean of roots).
    """
    pred, Y = _as_rows(pred), _as_rows(Y)
    return anp.mean(anp.sum((pred - Y) ** 2, axis=1) / anp.sum(Y * Y, axis=1))


_LOSSES = {"relative_l2": relative_l2, "relative_mse": relative_mse}


# -- checkpoints ----------------------------------------------------------------------------

FORMAT_TAG = "hssalg_nn-checkpoint"
FORMAT_VERSION = 1
_RESERVED = ("format", "version", "skeleton", "sha256")
_SECTIONS = ("params", "opt_state", "history")


def _escape(key):
    if not isinstance(key, str):
        raise TypeError(f"checkpoint pytrees need str dict keys, got {type(key).__name__} {key!r}")
    return key.replace("~", "~0").replace("/", "~1")


def _encode(tree, path, arrays):
    """Skeleton of ``tree`` (JSON-able); its leaves go into ``arrays`` under their paths."""
    if tree is None:
        return {"none": None}
    if isinstance(tree, dict):
        return {"dict": [[k, _encode(v, f"{path}/{_escape(k)}", arrays)] for k, v in tree.items()]}
    if isinstance(tree, (list, tuple)):
        kind = "list" if isinstance(tree, list) else "tuple"
        if kind == "list" and tree and all(type(x) is float for x in tree):
            arrays[path] = np.array(tree, dtype=np.float64)       # a history column
            return {"leaf": path, "py": "float_list"}
        if kind == "list" and tree and all(type(x) is int for x in tree):
            arrays[path] = np.array(tree, dtype=np.int64)
            return {"leaf": path, "py": "int_list"}
        return {kind: [_encode(v, f"{path}/{i}", arrays) for i, v in enumerate(tree)]}
    # numpy scalars first: np.float64 is also a Python float
    if isinstance(tree, (np.ndarray, np.generic)):
        arr = np.asarray(tree)
        if arr.dtype.kind not in "biufcU":
            raise TypeError(f"checkpoint leaf {path} has dtype {arr.dtype}; only numeric and string "
                            "arrays are stored (no pickle)")
        arrays[path] = arr
        return {"leaf": path, "py": "scalar" if isinstance(tree, np.generic) else "array"}
    if isinstance(tree, bool):
        arrays[path] = np.array(tree)
        return {"leaf": path, "py": "bool"}
    if isinstance(tree, int):
        arrays[path] = np.array(tree, dtype=np.int64)
        return {"leaf": path, "py": "int"}
    if isinstance(tree, float):
        arrays[path] = np.array(tree, dtype=np.float64)
        return {"leaf": path, "py": "float"}
    if isinstance(tree, str):
        arrays[path] = np.array(tree)
        return {"leaf": path, "py": "str"}
    raise TypeError(f"checkpoint leaf {path} is a {type(tree).__name__}; pytrees of dicts, lists, tuples, "
                    "None, numpy arrays, numbers and strings can be saved")


def _decode(node, arrays, used):
    """Rebuild a pytree from its skeleton; raises ValueError on anything malformed."""
    if not isinstance(node, dict) or len(node) not in (1, 2):
        raise ValueError(f"malformed skeleton node {node!r:.80}")
    if "none" in node:
        return None
    if "dict" in node:
        return {k: _decode(v, arrays, used) for k, v in node["dict"]}
    if "list" in node:
        return [_decode(v, arrays, used) for v in node["list"]]
    if "tuple" in node:
        return tuple(_decode(v, arrays, used) for v in node["tuple"])
    if "leaf" in node:
        key, py = node["leaf"], node.get("py")
        if key not in arrays:
            raise ValueError(f"the array {key!r} named by the skeleton is missing")
        used.add(key)
        a = arrays[key]
        if py == "array":
            return a
        if py == "scalar":
            return a[()]
        if py in ("float_list", "int_list"):
            return a.tolist()
        if py in ("int", "float", "bool", "str"):
            if a.shape != ():
                raise ValueError(f"the scalar {key!r} has shape {a.shape}")
            return {"int": int, "float": float, "bool": bool, "str": str}[py](a[()])
        raise ValueError(f"unknown leaf kind {py!r} for {key!r}")
    raise ValueError(f"malformed skeleton node {node!r:.80}")


def _digest(arrays):
    h = hashlib.sha256()
    for key in sorted(k for k in arrays if k != "sha256"):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_checkpoint(path, params, opt_state=None, history=None):
    """Write parameters, optimiser state and history to an ``.npz`` file (no pickle).

    Parameters
    ----------
    path : str or os.PathLike
        Written exactly as given (no ``.npz`` suffix is appended). The file is
        first written next to ``path`` and then renamed over it, so an
        interrupted save never destroys the previous checkpoint.
    params : pytree
        Dicts with str keys, lists, tuples of numpy arrays or numbers.
    opt_state : pytree or None
        E.g. the Adam state of :func:`hssalg_nn.optim.adam_init`.
    history : dict or None
        E.g. the history returned by :func:`fit`.

    Notes
    -----
    Every array is stored with its dtype and shape, so :func:`load_checkpoint`
    returns bit-identical values; Python ints, floats, bools and strings come
    back as such, and lists of floats (history columns) as lists.
    """
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}") from None
    arrays = {}
    skeleton = {name: _encode(tree, name, arrays)
                for name, tree in zip(_SECTIONS, (params, opt_state, history))}
    arrays["format"] = np.array(FORMAT_TAG)
    arrays["version"] = np.array(FORMAT_VERSION, dtype=np.int64)
    arrays["skeleton"] = np.array(json.dumps(skeleton))
    arrays["sha256"] = np.array(_digest(arrays))
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:        # a file object: numpy appends no ".npz"
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _ckpt_error(path, what):
    return ValueError(f"cannot load a checkpoint from {path!r}: {what}")


def load_checkpoint(path):
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns
    -------
    params, opt_state, history
        The pytrees as saved (bit-identical arrays).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        A truncated or corrupt archive, a file that is not an hssalg_nn
        checkpoint (another ``.npz``, an ``hssalg.save`` matrix), another
        format version, or content that does not match its SHA-256 digest.
    """
    path = os.fspath(path)
    arrays = read_arrays(path, lambda what: _ckpt_error(path, what), "an hssalg_nn checkpoint",
                         FORMAT_TAG, FORMAT_VERSION)
    for key in ("skeleton", "sha256"):
        if key not in arrays or arrays[key].shape != () or arrays[key].dtype.kind != "U":
            raise _ckpt_error(path, f"the {key!r} entry is missing or malformed")
    if str(arrays["sha256"]) != _digest(arrays):
        raise _ckpt_error(path, "the content does not match its SHA-256 digest "
                                "(the file was modified or corrupted after saving)")
    try:
        skeleton = json.loads(str(arrays["skeleton"]))
        if not isinstance(skeleton, dict) or sorted(skeleton) != sorted(_SECTIONS):
            raise ValueError(f"sections {sorted(skeleton) if isinstance(skeleton, dict) else skeleton!r}")
        used = set()
        out = tuple(_decode(skeleton[name], arrays, used) for name in _SECTIONS)
    except (ValueError, TypeError, KeyError) as exc:
        raise _ckpt_error(path, f"the skeleton does not describe the stored arrays ({exc})") from exc
    extra = sorted(set(arrays) - used - set(_RESERVED))
    if extra:
        raise _ckpt_error(path, f"unexpected arrays {extra[:8]}")
    return out


# -- the loop -------------------------------------------------------------------------------

class _AutoProgress:
    """A :class:`Progress` line that appears only once a run has taken a few seconds."""

    def __init__(self, total, label, mode):
        self.t0 = time.perf_counter()
        self.total, self.label, self.mode = total, label, mode
        self.done = 0
        self.bar = Progress(total, label) if mode else None

    def update(self, steps=1, note=""):
        self.done += steps
        if self.bar is None and self.mode is None and time.perf_counter() - self.t0 > AUTO_PROGRESS_AFTER:
            self.bar = Progress(self.total, self.label)
            self.bar.t0 = self.t0
            self.bar.done = self.done - steps
        if self.bar is not None:
            self.bar.update(steps, note)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _as_data(a, name, ndim=2):
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiu" or arr.dtype.kind == "b":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be a 2-D array (samples, features), got shape {arr.shape}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite entries (NaN or inf)")
    return arr


def _check_pairs(X, Y, names, need_nonzero):
    X, Y = _as_data(X, names[0]), _as_data(Y, names[1])
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"{names[0]} has {X.shape[0]} samples (rows) but {names[1]} has {Y.shape[0]}")
    if X.shape[0] == 0:
        raise ValueError(f"{names[0]} has no samples")
    if need_nonzero:
        zero = int(np.count_nonzero(~np.any(Y != 0, axis=1)))
        if zero:
            raise ValueError(f"{names[1]} has {zero} zero row(s): the relative loss divides by ||y_i||")
    return X, Y


def _int_arg(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _apply_fn(model):
    apply = getattr(model, "apply", None)
    if callable(apply):
        return apply
    if callable(model):
        return model
    raise TypeError("model must have a method apply(params, X) or be a function f(params, X), "
                    f"got {type(model).__name__}")


def _evaluate(apply, loss, params, X, Y, chunk):
    """The loss over a whole data set; relative_l2 / relative_mse are means over samples, so
    chunks of ``chunk`` rows are combined by their sizes (bounded memory for large N)."""
    if loss not in (relative_l2, relative_mse) or X.shape[0] <= chunk:
        return float(loss(apply(params, X), Y))
    total = 0.0
    for s in range(0, X.shape[0], chunk):
        total += float(loss(apply(params, X[s:s + chunk]), Y[s:s + chunk])) * min(chunk, X.shape[0] - s)
    return total / X.shape[0]


def _blas_threads_for(model):
    """The BLAS thread limit for training ``model`` (see the Notes of :func:`fit`)."""
    from .layers import HSSLinear, NeuralHSS
    if isinstance(model, (HSSLinear, NeuralHSS)) and numba.get_num_threads() > 1:
        # the kernels' own guard: nested inside it, their calls leave the setting alone
        return one_blas_thread()
    return contextlib.nullcontext()


def fit(model, params, X, Y, epochs=100, batch_size=32, lr=1e-3, optimizer="adam", X_val=None, Y_val=None,
        seed=0, progress=None, checkpoint=None, checkpoint_every=1, resume=False, opt_state=None,
        history=None, loss="relative_l2", b1=0.9, b2=0.999, eps=1e-8, lbfgs_options=None,
        return_state=False, lm_options=None):
    """Train ``model`` on pairs (x_i, y_i): rows of X and Y.

    Parameters
    ----------
    model : object with ``apply(params, X)``, or a function ``f(params, X)``
        Maps a batch X (B, n_in) to predictions (B, n_out); written with
        autograd-compatible operations (``NeuralHSS``, ``HSSLinear``, a plain
        ``autograd.numpy`` function).
    params : pytree
        Initial parameters (e.g. ``model.init(seed)``); not modified.
    X : (N, n_in) array_like
    Y : (N, n_out) array_like
        Targets; no row may be zero with the relative losses.
    epochs : int >= 0
        Adam: *total* number of passes over the data, counting epochs already
        in ``history`` (a resumed run trains only the remaining ones).
        L-BFGS: total number of iterations (full batch), likewise.
    batch_size : int >= 1
        Adam minibatch size (the last batch of an epoch may be smaller).
        Ignored by L-BFGS.
    lr : float > 0 or callable
        Adam step size, or a schedule ``lr(t) -> float`` of the step count t
        (1, 2, ...).
    optimizer : {"adam", "lbfgs", "lm"}
        "lm" is Levenberg-Marquardt (:mod:`hssalg_nn.lm`): full batch, for
        ``loss="relative_mse"`` only (a sum of squares). For a plain linear
        ``HSSLinear`` (no weight sharing) the diagonal blocks D_i are solved
        exactly by least squares at every step and only the other
        generators are iterated on. The way to fit an exactly representable
        target to the last digits (issue 5's P6 test); slower per iteration.
    X_val, Y_val : array_like, optional
        Validation pairs; their loss is recorded after every epoch.
    seed : int
        Seeds the minibatch order (epoch e uses ``default_rng([seed, e])``).
    progress : bool or None
        A progress line on stderr. None (default): only once the run has
        taken more than a few seconds (``AUTO_PROGRESS_AFTER``).
    checkpoint : str or os.PathLike, optional
        File written by :func:`save_checkpoint` every ``checkpoint_every``
        epochs (Adam) or iterations (L-BFGS) and at the end.
    checkpoint_every : int >= 1
    resume : bool
        With ``checkpoint``: if the file exists, continue from it (its params,
        optimiser state and history replace the arguments) instead of
        starting over. The saved parameters must have the structure of
        ``params``.
    opt_state, history : optional
        Continue an earlier run in memory (what ``return_state=True`` gave).
    loss : "relative_l2", "relative_mse" or callable
        ``loss(pred, Y) -> scalar``; default :func:`relative_l2`, the mean over
        samples of ``||f(x_i) - y_i|| / ||y_i||``.
    b1, b2, eps : float
        Adam hyper-parameters.
    lbfgs_options : dict, optional
        Passed to :func:`hssalg_nn.optim.lbfgs`: ``maxcor`` (default 50 here:
        the loss surfaces of HSS layers are badly conditioned and a long
        memory pays), ``gtol``, ``ftol``.
    return_state : bool
        Also return the final optimiser state.
    lm_options : dict, optional
        For ``optimizer="lm"``, entries of :data:`hssalg_nn.lm.LM_DEFAULTS`:
        ``warmup`` (L-BFGS iterations at most before the first LM step, ended
        once ``sqrt(loss) <= switch``), ``maxcor``, ``cg_maxiter``, ``cg_tol``,
        ``probes``, ``damping``, ``loss_tol`` (stop once the loss is this small).
        ``epochs`` counts LM steps; warm-up iterations are recorded in the
        history too.

    Returns
    -------
    params : pytree
        The trained parameters.
    history : dict
        Lists, one entry per epoch (Adam) or iteration (L-BFGS): ``"epoch"``
        (1-based count), ``"loss"`` (the loss over the whole training set at
        the end of the epoch) and, with validation data, ``"val_loss"``;
        ``"steps"`` is the number of optimiser steps so far.
    opt_state : pytree
        Only with ``return_state=True``: the Adam state (None for L-BFGS;
        ``{"damping", "lm_steps"}`` for LM).

    Notes
    -----
    Memory: a run first calls :func:`hssalg_nn.keep_freed_memory` (glibc
    keeps large freed blocks for the next step instead of unmapping them),
    unless the environment variable ``HSSALG_KEEP_FREED_MEMORY`` is ``0``.

    Threads: the HSS products of an :class:`HSSLinear` or :class:`NeuralHSS`
    run on numba's threads (``numba.set_num_threads``, ``NUMBA_NUM_THREADS``),
    and while such a model trains on more than one, BLAS (the model's dense
    channel mixing, the optimiser's vector work) runs on one thread. A
    multithreaded BLAS keeps its threads spinning for a while after every call,
    on the cores numba's threads need: measured on 2 cores, a NeuralHSS training
    step (n = 4096, 16 channels, batch 16) took 327 ms with both pools against
    205 ms with BLAS on one thread, and 242 ms with the products on one numba
    thread. Other models keep the caller's BLAS threads.

    Determinism: the same arguments give bit-identical results (numpy and
    the numba kernels reduce in a fixed order). A run stopped after epoch e
    and resumed from its checkpoint continues exactly like the uninterrupted
    run with Adam; L-BFGS restarts its curvature memory on resume (scipy does
    not expose it), so a resumed L-BFGS run is a valid but different run.
    """
    apply = _apply_fn(model)
    _heap.keep_unless_disabled()
    if isinstance(loss, str):
        if loss not in _LOSSES:
            raise ValueError(f"loss must be one of {sorted(_LOSSES)} or a callable, got {loss!r}")
        loss_fn = _LOSSES[loss]
    elif callable(loss):
        loss_fn = loss
    else:
        raise TypeError(f"loss must be a string or a callable loss(pred, Y), got {type(loss).__name__}")
    relative = loss_fn in (relative_l2, relative_mse)
    X, Y = _check_pairs(X, Y, ("X", "Y"), relative)
    if (X_val is None) != (Y_val is None):
        raise ValueError("give both X_val and Y_val, or neither")
    if X_val is not None:
        X_val, Y_val = _check_pairs(X_val, Y_val, ("X_val", "Y_val"), relative)
    epochs = _int_arg(epochs, "epochs", 0)
    batch_size = _int_arg(batch_size, "batch_size", 1)
    checkpoint_every = _int_arg(checkpoint_every, "checkpoint_every", 1)
    if optimizer not in ("adam", "lbfgs", "lm"):
        raise ValueError(f"optimizer must be 'adam', 'lbfgs' or 'lm', got {optimizer!r}")
    if optimizer == "lm" and loss_fn is not relative_mse:
        raise ValueError("optimizer='lm' minimises a sum of squares: use loss='relative_mse' with it")
    lm_opts = check_lm_options(lm_options)
    if lm_options is not None and optimizer != "lm":
        raise ValueError(f"lm_options are for optimizer='lm', not {optimizer!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if not (callable(lr) or (isinstance(lr, numbers.Real) and not isinstance(lr, bool) and lr > 0)):
        raise ValueError(f"lr must be a number > 0 or a schedule lr(step), got {lr!r}")
    if progress not in (None, True, False):
        raise TypeError(f"progress must be True, False or None (automatic), got {progress!r}")
    opts = {"maxcor": 50}
    if lbfgs_options is not None:
        if not isinstance(lbfgs_options, dict) or not set(lbfgs_options) <= {"maxcor", "gtol", "ftol"}:
            raise ValueError("lbfgs_options must be a dict with keys among 'maxcor', 'gtol', 'ftol', "
                             f"got {lbfgs_options!r}")
        opts.update(lbfgs_options)
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=<path>")

    if resume and os.path.exists(checkpoint):
        saved_params, opt_state, history = load_checkpoint(checkpoint)
        try:
            tree_map(lambda a, b: None, params, saved_params)
        except ValueError as exc:
            raise ValueError(f"the checkpoint {os.fspath(checkpoint)!r} holds parameters of another "
                             f"structure than params: {exc}") from None
        params = saved_params
    if history is None:
        history = {"epoch": [], "loss": [], "steps": []}
        if X_val is not None:
            history["val_loss"] = []
    else:
        history = {k: list(v) for k, v in history.items()}
        for key in ("epoch", "loss", "steps"):
            if key not in history:
                raise ValueError(f"history must be the dict returned by fit, it has no {key!r}")
        if (X_val is not None) != ("val_loss" in history):
            raise ValueError("validation data must be given in a resumed run exactly when the "
                             "original run had them (history 'val_loss')")
    done = len(history["loss"])
    chunk = max(batch_size, 256)
    # a prediction of the wrong shape would broadcast silently inside the loss
    out_shape = np.shape(apply(params, X[:1]))
    if out_shape != (1,) + Y.shape[1:]:
        raise ValueError(f"the model maps a batch of shape {X[:1].shape} to shape {out_shape}, but the "
                         f"targets of that batch have shape {(1,) + Y.shape[1:]}")

    def record(params, steps, train_loss=None):
        history["epoch"].append(len(history["loss"]) + 1)
        if train_loss is None:
            train_loss = _evaluate(apply, loss_fn, params, X, Y, chunk)
        history["loss"].append(float(train_loss))
        history["steps"].append(int(steps))
        if X_val is not None:
            history["val_loss"].append(_evaluate(apply, loss_fn, params, X_val, Y_val, chunk))
        if not np.isfinite(history["loss"][-1]):
            raise FloatingPointError(f"the training loss became {history['loss'][-1]} after epoch "
                                     f"{history['epoch'][-1]} (learning rate too large?)")

    def save(params, state):
        if checkpoint is not None:
            save_checkpoint(checkpoint, params, state, history)

    # see Notes: BLAS on one thread while the HSS products use numba's threads
    with _blas_threads_for(model):
        if optimizer == "lm":
            return _fit_lm(model, apply, params, X, Y, epochs, history, record, save, checkpoint_every, progress,
                           return_state, lm_opts, opt_state, X_val is not None)
        if optimizer == "lbfgs":
            return _fit_lbfgs(apply, loss_fn, params, X, Y, epochs, done, history, record, save,
                              checkpoint_every, progress, return_state, opts)

        N = X.shape[0]
        n_batches = -(-N // batch_size)
        if opt_state is None:
            opt_state = adam_init(params)
        vg = value_and_grad(lambda p, xb, yb: loss_fn(apply(p, xb), yb))
        bar = _AutoProgress(max(0, epochs - done) * n_batches, "fit", progress)
        try:
            for epoch in range(done, epochs):
                order = np.random.default_rng([int(seed), epoch]).permutation(N)
                for b in range(n_batches):
                    idx = order[b * batch_size:(b + 1) * batch_size]
                    value, grads = vg(params, X[idx], Y[idx])
                    step_lr = lr(int(opt_state["t"]) + 1) if callable(lr) else lr
                    params, opt_state = adam_step(params, grads, opt_state, lr=step_lr, b1=b1, b2=b2, eps=eps)
                    bar.update(1, f"epoch {epoch + 1} loss {float(value):.3e}")
                record(params, opt_state["t"])
                if (epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs:
                    save(params, opt_state)
        finally:
            bar.close()
        if done >= epochs:
            save(params, opt_state)
        return (params, history, opt_state) if return_state else (params, history)


def _fit_lbfgs(apply, loss_fn, params, X, Y, epochs, done, history, record, save, every, progress,
               return_state, opts):
    """Full-batch L-BFGS for ``epochs - done`` iterations, one history entry per iteration."""
    remaining = max(0, epochs - done)
    bar = _AutoProgress(remaining, "fit (L-BFGS)", progress)
    start_steps = history["steps"][-1] if history["steps"] else 0

    def callback(p, value):
        # L-BFGS is full batch: the loss it reports is the training loss of this iterate
        record(p, start_steps + len(history["loss"]) - done + 1, value)
        bar.update(1, f"loss {value:.3e}")
        if len(history["loss"]) % every == 0:
            save(p, None)

    try:
        if remaining:
            params, _ = lbfgs(lambda p: loss_fn(apply(p, X), Y), params, maxiter=remaining, callback=callback,
                               **opts)
    finally:
        bar.close()
    save(params, None)
    return (params, history, None) if return_state else (params, history)


def _fit_lm(model, apply, params, X, Y, epochs, history, record, save, every, progress, return_state, opts,
            state, want_params):
    """Levenberg-Marquardt until ``epochs`` LM steps in all; every iteration (warm-up ones too) is
    one history entry."""
    if state is not None:
        if not (isinstance(state, dict) and set(state) == {"damping", "lm_steps"}):
            raise ValueError("opt_state for optimizer='lm' must be the dict {'damping', 'lm_steps'} "
                             f"that fit returned, got {state!r}")
        state = {"damping": float(state["damping"]), "lm_steps": int(state["lm_steps"])}
    done = 0 if state is None else state["lm_steps"]
    remaining = max(0, epochs - done)
    problem = make_problem(model, apply, params, X.astype(np.float64), Y.astype(np.float64))
    bar = _AutoProgress(remaining, "fit (LM)", progress)
    steps = [history["steps"][-1] if history["steps"] else 0]

    def entry(theta, loss, state):
        steps[0] += 1
        # the parameters of an iterate (for D-eliminated layers a solve) only when something reads them
        due = len(history["loss"]) + 1
        ckpt = due % every == 0
        p = problem.params(theta) if (want_params or ckpt) else None
        record(p, steps[0], loss)
        if ckpt:
            save(p, state)

    def warm(theta, loss):
        entry(theta, loss, None)
        bar.update(0, f"warm-up (L-BFGS) loss {loss:.3e}")

    def step(theta, loss, state, info):
        entry(theta, loss, state)
        bar.update(1, f"loss {loss:.3e} cg {info['cg']} damping {state['damping']:.1e}")

    try:
        if remaining:
            theta, state = levenberg_marquardt(problem, problem.theta0, epochs, opts, state=state,
                                               warmup_callback=warm, callback=step)
            params = problem.params(theta)
    finally:
        bar.close()
    save(params, state)
    return (params, history, state) if return_state else (params, history)
