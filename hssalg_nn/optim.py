"""Optimisers over parameter pytrees: functional Adam with explicit state, and L-BFGS.

A *pytree* here is a nested structure of dicts (string keys), lists and tuples
whose leaves are numpy arrays or Python floats -- the shape of what
``layer.init`` returns and of what ``autograd.grad`` returns for it.

Adam is written as a pure function: ``adam_step(params, grads, state)``
returns new parameters and a new state and changes neither input, so a
training loop can be stopped, saved (see :func:`hssalg_nn.train.save_checkpoint`)
and resumed bit for bit. L-BFGS hands the flattened parameters to
``scipy.optimize.minimize(method="L-BFGS-B", jac=True)`` with the gradient from
autograd.
"""

import numbers

import numpy as np
import scipy.optimize
from autograd import value_and_grad
from autograd.misc import flatten
from threadpoolctl import ThreadpoolController

__all__ = ["adam_init", "adam_step", "lbfgs", "tree_map", "tree_leaves"]


# -- pytrees ----------------------------------------------------------------------------

def _is_node(x):
    return isinstance(x, (dict, list, tuple))


def tree_leaves(tree):
    """The leaves of a pytree in a fixed order (dict keys sorted), as a list."""
    if isinstance(tree, dict):
        return [leaf for key in sorted(tree) for leaf in tree_leaves(tree[key])]
    if isinstance(tree, (list, tuple)):
        return [leaf for item in tree for leaf in tree_leaves(item)]
    return [tree]


def _describe(tree):
    if isinstance(tree, dict):
        return f"dict with keys {sorted(tree)}"
    if isinstance(tree, (list, tuple)):
        return f"{type(tree).__name__} of length {len(tree)}"
    return f"leaf {type(tree).__name__}{tuple(np.shape(tree))}"


def tree_map(f, tree, *rest, path="params"):
    """Apply ``f`` leafwise to pytrees of one structure; returns a new pytree.

    Raises
    ------
    ValueError
        When the structures differ, naming the first place where they do.
    """
    if isinstance(tree, dict):
        for other in rest:
            if not isinstance(other, dict) or sorted(other) != sorted(tree):
                raise ValueError(f"pytree structures differ at {path}: {_describe(tree)} vs {_describe(other)}")
        return {key: tree_map(f, tree[key], *(o[key] for o in rest), path=f"{path}[{key!r}]")
                for key in tree}
    if isinstance(tree, (list, tuple)):
        for other in rest:
            if type(other) is not type(tree) or len(other) != len(tree):
                raise ValueError(f"pytree structures differ at {path}: {_describe(tree)} vs {_describe(other)}")
        out = [tree_map(f, item, *(o[i] for o in rest), path=f"{path}[{i}]") for i, item in enumerate(tree)]
        return out if isinstance(tree, list) else tuple(out)
    for other in rest:
        if _is_node(other):
            raise ValueError(f"pytree structures differ at {path}: {_describe(tree)} vs {_describe(other)}")
        if np.shape(other) != np.shape(tree):
            raise ValueError(f"pytree leaves differ in shape at {path}: {np.shape(tree)} vs {np.shape(other)}")
    return f(tree, *rest)


def _check_params(params, name="params"):
    leaves = tree_leaves(params)
    for leaf in leaves:
        arr = np.asarray(leaf)
        if arr.dtype.kind not in "fiu" or arr.dtype.kind == "b":
            raise TypeError(f"{name} must be a pytree (dicts, lists, tuples) of real numeric arrays, "
                            f"found a leaf of type {type(leaf).__name__} and dtype {arr.dtype}")
    return leaves


# -- Adam ---------------------------------------------------------------------------------

def adam_init(params):
    """Zero Adam state for ``params``.

    Returns
    -------
    state : dict
        ``{"t": 0, "m": zeros like params, "v": zeros like params}``: the step
        count and the first and second moment estimates (float64 or the
        parameters' float dtype).
    """
    _check_params(params)

    def zeros(p):
        p = np.asarray(p)
        return np.zeros(p.shape, dtype=p.dtype if p.dtype.kind == "f" else np.float64)
    return {"t": 0, "m": tree_map(zeros, params), "v": tree_map(zeros, params)}


def _check_hyper(value, name, low, high, low_open=False, high_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    ok_low = value > low if low_open else value >= low
    ok_high = value < high if high_open else value <= high
    if not (np.isfinite(value) and ok_low and ok_high):
        lb, hb = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must lie in {lb}{low:g}, {high:g}{hb}, got {value:g}")
    return value


def adam_step(params, grads, state, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """One Adam step (Kingma and Ba 2015), functional.

    ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``, then
    ``p <- p - lr * m_hat / (sqrt(v_hat) + eps)`` with the bias-corrected
    ``m_hat = m / (1 - b1^t)``, ``v_hat = v / (1 - b2^t)``.

    Parameters
    ----------
    params, grads : pytrees of one structure
        Leaves are arrays (or floats) of equal shapes.
    state : dict
        From :func:`adam_init` or a previous step.
    lr : float > 0
    b1, b2 : float in [0, 1)
    eps : float > 0

    Returns
    -------
    params : pytree
        New arrays; the inputs are not modified.
    state : dict
        New state with ``t`` incremented.
    """
    lr = _check_hyper(lr, "lr", 0.0, np.inf, low_open=True, high_open=True)
    b1 = _check_hyper(b1, "b1", 0.0, 1.0, high_open=True)
    b2 = _check_hyper(b2, "b2", 0.0, 1.0, high_open=True)
    eps = _check_hyper(eps, "eps", 0.0, np.inf, low_open=True, high_open=True)
    if not isinstance(state, dict) or set(state) != {"t", "m", "v"}:
        raise ValueError("state must be the dict {'t', 'm', 'v'} returned by adam_init or adam_step, "
                         f"got {_describe(state) if _is_node(state) else type(state).__name__}")
    t = int(state["t"]) + 1
    m = tree_map(lambda m_, g: b1 * m_ + (1.0 - b1) * np.asarray(g, dtype=m_.dtype), state["m"], grads,
                 path="grads")
    v = tree_map(lambda v_, g: b2 * v_ + (1.0 - b2) * np.square(np.asarray(g, dtype=v_.dtype)),
                 state["v"], grads, path="grads")
    c1 = 1.0 - b1 ** t
    c2 = 1.0 - b2 ** t

    def update(p, m_, v_):
        p = np.asarray(p)
        step = (lr / c1) * m_ / (np.sqrt(v_ / c2) + eps)
        return (p - step).astype(p.dtype if p.dtype.kind == "f" else np.float64, copy=False)
    new_params = tree_map(update, params, m, v)
    return new_params, {"t": t, "m": m, "v": v}


# -- L-BFGS -------------------------------------------------------------------------------

_controller = None


def _blas_threads():
    """The BLAS thread pools of this process (a ThreadpoolController, made once)."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller

def lbfgs(loss_fn, params, maxiter=200, gtol=1e-10, ftol=0.0, maxcor=20, callback=None):
    """Minimise ``loss_fn(params)`` with scipy's L-BFGS-B and autograd gradients.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(params) -> scalar``, written with ``autograd.numpy``.
    params : pytree
        Starting point; not modified. Leaves are flattened to one float64
        vector (autograd's ``flatten``) and restored to their shapes.
    maxiter : int >= 0
        Iterations of L-BFGS (each costs one or a few loss and gradient
        evaluations).
    gtol, ftol : float >= 0
        scipy's stopping tests on the projected gradient and on the relative
        decrease of the loss; the defaults let ``maxiter`` decide.
    maxcor : int >= 1
        Stored correction pairs.
    callback : callable, optional
        ``callback(params, loss)`` after every iteration.

    Returns
    -------
    params : pytree
        The last iterate, same structure as the input (float64 leaves).
    info : dict
        ``{"loss", "nit", "nfev", "success", "message"}`` from scipy.
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a callable loss_fn(params) -> scalar, got {type(loss_fn).__name__}")
    if isinstance(maxiter, bool) or not isinstance(maxiter, numbers.Integral) or maxiter < 0:
        raise ValueError(f"maxiter must be an integer >= 0, got {maxiter!r}")
    if isinstance(maxcor, bool) or not isinstance(maxcor, numbers.Integral) or maxcor < 1:
        raise ValueError(f"maxcor must be an integer >= 1, got {maxcor!r}")
    gtol = _check_hyper(gtol, "gtol", 0.0, np.inf, high_open=True)
    ftol = _check_hyper(ftol, "ftol", 0.0, np.inf, high_open=True)
    _check_params(params)
    flat0, unflatten = flatten(params)
    flat0 = np.asarray(flat0, dtype=np.float64)
    vg = value_and_grad(lambda f: loss_fn(unflatten(f)))
    last = {}

    def fun(f):
        val, g = vg(f)
        val = float(val)
        last["f"], last["val"] = f.copy(), val
        return val, np.asarray(g, dtype=np.float64)

    def cb(f):
        if callback is None:
            return
        # scipy evaluates the loss at the accepted iterate last, so it is cached
        val = last["val"] if "f" in last and np.array_equal(last["f"], f) else float(loss_fn(unflatten(f)))
        callback(unflatten(np.array(f, copy=True)), val)

    if maxiter == 0:
        val = float(loss_fn(params))
        return unflatten(flat0.copy()), {"loss": val, "nit": 0, "nfev": 1, "success": True,
                                         "message": "maxiter = 0"}
    x, info = lbfgs_flat(fun, flat0, maxiter, gtol, ftol, maxcor, cb)
    return unflatten(x), info


def lbfgs_flat(fun, x0, maxiter, gtol, ftol, maxcor, callback=None):
    """scipy's L-BFGS-B on a flat vector: ``fun(x) -> (value, gradient)``, ``callback(x)``.

    The core of :func:`lbfgs` (arguments checked there), for callers that
    compute their own gradients. Returns the last iterate (a copy) and the info dict.
    """
    # L-BFGS-B's own updates are BLAS level-1/2 calls on the parameter vector; with OpenBLAS
    # threads on a busy 2-core machine they took 150 ms per iteration instead of 7 (18k
    # parameters, maxcor 100). They run on one BLAS thread; the loss keeps the caller's threads.
    ctl = _blas_threads()
    pools = ctl.select(user_api="blas")
    caller = max([p.num_threads for p in pools.lib_controllers], default=1)

    def fun_threads(f):
        with ctl.limit(limits=caller, user_api="blas"):
            return fun(f)

    def cb_threads(f):
        if callback is None:
            return
        with ctl.limit(limits=caller, user_api="blas"):
            callback(f)

    with ctl.limit(limits=1, user_api="blas"):
        res = scipy.optimize.minimize(fun_threads, x0, jac=True, method="L-BFGS-B", callback=cb_threads,
                                      options={"maxiter": int(maxiter), "gtol": gtol, "ftol": ftol,
                                               "maxcor": int(maxcor), "maxfun": 10 * int(maxiter) + 10})
    info = {"loss": float(res.fun), "nit": int(res.nit), "nfev": int(res.nfev),
            "success": bool(res.success), "message": str(res.message)}
    return np.array(res.x, copy=True), info
