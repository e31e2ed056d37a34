"""One recipe per model: build it for a dataset, train it with ``fit``, measure its test error.

The ``neural-hss`` command and the reproduction table (docs/reproduction.md)
go through :func:`train_model`, so every model sees the same data, the same
loss (mean relative L2) and, for the gradient-trained ones, the same optimiser
and step budget:

* Adam with a cosine-decaying step size from ``lr`` to ``lr / 100`` over a
  fixed number of optimiser *steps* (not epochs), minibatches of at most
  ``batch_size`` samples -- so a model gets as many updates from 5 samples
  as from 100, and the comparison across N is one of data, not of compute.

Models (``MODELS``):

``nhss-linear``
    A symmetric :class:`~hssalg_nn.HSSLinear` whose generators come from the
    data by the constructive route of fact P6 (:func:`fit_linear_exact`) --
    for symmetric linear problems (refused for unsymmetric linear ones, which
    forward samples do not determine: fact P6-neg; for a nonlinear problem it
    is a symmetric linear approximation), then refined by ``finetune``
    L-BFGS iterations of ``fit`` on the same
    data (loss ``relative_mse``: smooth at an exact fit, where the relative
    L2 loss is not). The HSS rank k and the cutoff ``rcond`` of the fit are
    chosen from the data alone, by cross-validation (leave-one-out up to 20
    samples, else 5-fold) over the ranks whose sample count ``max(m, 2k) + k``
    fits in the folds' training parts and cutoffs 0, 0.01, 0.1; the best pair
    is refitted on all the data (with fewer samples than any fold allows, the
    largest rank that fits, with cutoff 0.1).
``nhss``
    The nonlinear :class:`~hssalg_nn.NeuralHSS` (GELU), trained by Adam.
``fno``, ``deeponet``, ``cnn``
    The baselines of :mod:`hssalg_nn.baselines`, trained by Adam.
``lstsq``
    The dense minimum-norm least-squares operator ``A = Y^T (X^T)^+``
    (closed form); with smooth inputs a strong low-data baseline.
``oracle``
    For linear PDEs: the HSS compression, at the rank given, of the true
    discrete solution operator (compressed to about 1e-10 from solves, then
    truncated: near the best approximation of that rank for all inputs). Not
    trained on the data.
"""

import math
import time

import numpy as np

from .layers import HSSLinear, NeuralHSS
from .train import fit

__all__ = ["MODELS", "GRADIENT_MODELS", "SIZES", "DEFAULTS", "build_model", "train_model", "test_error"]

MODELS = ("nhss-linear", "nhss", "fno", "deeponet", "cnn", "lstsq", "oracle")
GRADIENT_MODELS = ("nhss", "fno", "deeponet", "cnn")

# ranks and test-block cutoffs tried by the cross-validation of nhss-linear
RANK_CANDIDATES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
RCOND_CANDIDATES = (0.0, 1e-2, 1e-1)
FALLBACK_RCOND = 1e-1

# Model sizes of the comparison, scaled down from the papers' (hssalg_nn.baselines.DEFAULTS) so
# that a sweep of ~100 trainings per PDE fits in minutes on a 2-core CPU: FNO and the CNN keep
# their architecture (4 Fourier layers, residual blocks) with narrower layers (and 4 CNN blocks
# instead of 8); DeepONet is cheap enough at its default size and keeps it. Pass the papers'
# sizes explicitly (e.g. width=32, modes=12) to train those.
SIZES = {
    "nhss": {"channels": 4, "n_layers": 2},
    "fno": {1: {"modes": 16, "width": 32, "proj_width": 64},
            2: {"modes": 8, "width": 16, "proj_width": 64},
            3: {"modes": 4, "width": 8, "proj_width": 32}},
    "deeponet": {},
    "cnn": {"width": 16, "n_layers": 4},
}

DEFAULTS = {
    "steps": 500,         # Adam steps of every gradient-trained model
    "batch_size": 10,
    "lr": 2e-3,
    "leaf_size": 4,       # leaf of the HSS trees (small leaves need few samples: P6)
    "rank": 16,           # nhss and oracle rank; upper bound of nhss-linear's selection
    "finetune": 50,       # L-BFGS iterations after nhss-linear's constructive fit
}


def test_error(model, params, X, Y, batch=64):
    """Mean relative L2 error of ``model.apply(params, X)`` against Y, in batches.

    Parameters
    ----------
    X, Y : (N, n) arrays

    Returns
    -------
    float

    Raises
    ------
    ValueError
        No samples, or a zero row of Y (its relative error is undefined).
    """
    if X.shape[0] == 0:
        raise ValueError("test_error needs at least one sample, got X with 0 rows")
    zero = np.flatnonzero(np.linalg.norm(Y, axis=1) == 0)
    if zero.size:
        raise ValueError(f"Y has {zero.size} zero rows (first: row {zero[0]}); the relative error of "
                         "a zero target is undefined")
    errs = []
    for s in range(0, X.shape[0], batch):
        P = np.asarray(model.apply(params, X[s:s + batch]))
        d = np.linalg.norm(P - Y[s:s + batch], axis=1) / np.linalg.norm(Y[s:s + batch], axis=1)
        errs.append(d)
    return float(np.mean(np.concatenate(errs)))


def _cosine(lr, steps):
    # lr(t) for the step count t = 1, 2, ...: from lr down to lr / 100
    def schedule(t):
        frac = min(max(t - 1, 0) / max(steps - 1, 1), 1.0)
        return lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * frac)))
    return schedule


def _adam(model, params, X, Y, steps, batch_size, lr, seed, progress):
    N = X.shape[0]
    bs = min(batch_size, N)
    per_epoch = -(-N // bs)
    epochs = max(1, -(-steps // per_epoch))
    params, history = fit(model, params, X, Y, epochs=epochs, batch_size=bs,
                          lr=_cosine(lr, epochs * per_epoch), seed=seed, progress=progress)
    return params, {"epochs": epochs, "steps": epochs * per_epoch,
                    "final_loss": float(history["loss"][-1]) if history["loss"] else float("nan")}


def _select_rank(X, Y, tree, max_rank, folds=None):
    """Rank and cutoff of the exact HSS fit, chosen by cross-validation (see the module notes).

    The N samples are cut into ``folds`` contiguous parts (default: one per
    sample up to N = 20, else 5); every pair (rank k, cutoff ``rcond`` of
    :func:`fit_linear_exact`) whose sample count fits in the other parts is
    fitted on them and scored (mean relative L2) on the part left out, and
    the pair with the best mean score wins. Returns ``(rank, rcond, scores)``
    with scores keyed by ``(rank, rcond)``.
    """
    from .exact import fit_linear_exact, min_samples_exact

    N = X.shape[0]
    if folds is None:
        folds = N if N <= 20 else 5
    if not isinstance(folds, (int, np.integer)) or isinstance(folds, bool) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2 (cross-validation needs a part left out), "
                         f"got {folds!r}")
    ranks = [k for k in RANK_CANDIDATES if k <= max_rank]
    edges = np.linspace(0, N, min(folds, N) + 1).astype(int)
    n_fit = N - int(np.max(np.diff(edges))) if N >= 2 else 0
    scores = {}
    for k in ranks:
        if min_samples_exact(tree, k) > n_fit:
            break
        for rc in RCOND_CANDIDATES:
            errs = []
            for a, b in zip(edges[:-1], edges[1:]):
                keep = np.r_[0:a, b:N]
                H = fit_linear_exact(X[keep], Y[keep], tree, k, sym_tol=np.inf, rcond=rc)
                P = (H @ X[a:b].T).T
                errs.append(np.linalg.norm(P - Y[a:b], axis=1) / np.linalg.norm(Y[a:b], axis=1))
            scores[(k, rc)] = float(np.mean(np.concatenate(errs)))
    if scores:
        k, rc = min(scores, key=scores.get)
        return k, rc, scores
    usable = [k for k in ranks if min_samples_exact(tree, k) <= N]
    if not usable:
        raise ValueError(
            f"nhss-linear needs at least {min_samples_exact(tree, 1)} training samples on this tree "
            f"(rank 1, leaf size {tree.leaf_size}; fact P6), got {N}")
    # too few samples to validate anything: the largest rank that fits, with the cutoff that
    # regularised best in our measurements on smooth data (docs/reproduction.md)
    return max(usable), FALLBACK_RCOND, scores


def _check_split(train, test):
    for what in ("pde", "grid_shape", "options"):
        a, b = getattr(train, what), getattr(test, what)
        if a != b:
            raise ValueError(f"train and test data must come from the same problem: their {what} differ "
                             f"({a!r} and {b!r})")
    if train.X.shape[0] == 0:
        raise ValueError("train has no samples; every model needs at least one")


def build_model(name, train, rank=None, leaf_size=None, **hyper):
    """The untrained model ``name`` for the dataset ``train`` (gradient models only).

    Parameters
    ----------
    name : one of ``GRADIENT_MODELS``
    train : hssalg_nn.data.Dataset
    rank, leaf_size : int, optional
        For ``nhss`` (defaults in ``DEFAULTS``; the nonlinear model uses leaf
        size at least 16).
    **hyper
        Passed to the model's constructor (e.g. ``modes``, ``width``),
        over the sizes in ``SIZES``.
    """
    from . import baselines

    rank = DEFAULTS["rank"] if rank is None else rank
    if name == "nhss":
        leaf = max(16, leaf_size or DEFAULTS["leaf_size"])
        opts = dict(SIZES["nhss"], activation="gelu")
        opts.update(hyper)
        return NeuralHSS(train.tree(leaf), rank=min(rank, leaf), **opts)
    if name in ("fno", "deeponet", "cnn"):
        opts = dict(SIZES[name][train.dim] if name == "fno" else SIZES[name])
        if name == "fno" and "modes" not in hyper:
            # at most half the grid per dimension (the rfft keeps grid // 2 + 1)
            opts["modes"] = tuple(max(1, min(opts["modes"], g // 2)) for g in train.grid_shape)
        opts.update(hyper)
        return baselines.make_baseline(name, train, **opts)
    raise ValueError(f"model must be one of {GRADIENT_MODELS} here, got {name!r}")


def train_model(name, train, test, rank=None, leaf_size=None, steps=None, batch_size=None, lr=None,
                finetune=None, folds=None, seed=0, progress=None, **hyper):
    """Build, train and evaluate one model on one dataset.

    Parameters
    ----------
    name : str
        One of ``MODELS``.
    train, test : hssalg_nn.data.Dataset
        Training and test pairs of the same PDE and grid (rows ``X`` (N, n),
        ``Y`` (N, n)).
    rank : int, optional
        nhss-linear: the largest rank its selection may pick; nhss: the rank
        of every block; oracle: the rank of the compression. Default
        ``DEFAULTS["rank"]``.
    leaf_size : int, optional
        Leaf size of the cluster tree of the HSS models (default 4).
    steps, batch_size, lr : optional
        Adam budget of the gradient-trained models (defaults in ``DEFAULTS``).
    finetune : int, optional
        L-BFGS iterations after nhss-linear's constructive fit (0: none).
    folds : int, optional
        Cross-validation folds of nhss-linear (default: leave-one-out up to
        20 samples, else 5); fewer folds are cheaper on large grids.
    seed : int
        Initialisation and minibatch order.
    progress : bool or None
        Passed to ``fit``.
    **hyper
        Hyperparameters of the model's constructor.

    Returns
    -------
    result : dict
        ``model`` (the model object), ``params``, ``test_error``,
        ``train_error``, ``train_time`` (s, training only), ``n_params`` and
        ``details`` (a JSON-friendly dict: chosen rank, validation scores,
        epochs, ...).
    """
    from .exact import fit_linear_exact

    if name not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {name!r}")
    _check_split(train, test)
    rank = DEFAULTS["rank"] if rank is None else int(rank)
    leaf_size = DEFAULTS["leaf_size"] if leaf_size is None else int(leaf_size)
    steps = DEFAULTS["steps"] if steps is None else int(steps)
    batch_size = DEFAULTS["batch_size"] if batch_size is None else int(batch_size)
    lr = DEFAULTS["lr"] if lr is None else float(lr)
    finetune = DEFAULTS["finetune"] if finetune is None else int(finetune)
    X, Y = train.X, train.Y
    details = {}
    t0 = time.perf_counter()
    if name == "nhss-linear":
        if train.linear and not getattr(train.problem, "symmetric", False):
            # P6-neg: from forward samples alone an unsymmetric HSS operator is not identifiable
            raise ValueError(
                f"nhss-linear fits a symmetric operator by the exact route of fact P6, but the "
                f"{train.pde!r} problem is linear and not symmetric; from forward samples alone an "
                "unsymmetric HSS operator is not determined (fact P6-neg). Train 'nhss' instead")
        tree = train.tree(leaf_size)
        k, rc, scores = _select_rank(X, Y, tree, rank, folds=folds)
        H = fit_linear_exact(X, Y, tree, k, symmetric=True, sym_tol=np.inf, rcond=rc)
        model = HSSLinear(tree, k, symmetric=True)
        params = model.init_from_hss(H)
        if finetune > 0:
            params, history = fit(model, params, X, Y, epochs=finetune, optimizer="lbfgs",
                                  loss="relative_mse", seed=seed, progress=progress)
        details.update(rank=k, rcond=rc, leaf_size=leaf_size, finetune=finetune,
                       validation={f"k={r},rcond={c:g}": v for (r, c), v in scores.items()})
    elif name == "lstsq":
        from .baselines import least_squares_operator
        model = least_squares_operator(X, Y)
        params = model.params
    elif name == "oracle":
        if not train.linear:
            raise ValueError(f"the oracle needs a linear PDE; {train.pde!r} is not")
        from .baselines.oracle import dataset_oracle
        model = dataset_oracle(train, rank=rank, leaf_size=leaf_size, seed=seed)
        params = model.init()
        details.update(rank=rank, leaf_size=leaf_size)
    else:
        model = build_model(name, train, rank=rank, leaf_size=leaf_size, **hyper)
        params0 = model.init(seed)
        params, info = _adam(model, params0, X, Y, steps, batch_size, lr, seed, progress)
        details.update(info, lr=lr, batch_size=min(batch_size, X.shape[0]))
        if name == "nhss":
            details.update(rank=int(model.rank), leaf_size=int(model.tree.leaf_size))
    train_time = time.perf_counter() - t0
    n_params = model.n_params
    return {"model": model, "params": params, "name": name,
            "test_error": test_error(model, params, test.X, test.Y),
            "train_error": test_error(model, params, X, Y),
            "train_time": train_time, "n_params": int(n_params(params) if callable(n_params) else n_params),
            "details": details}

