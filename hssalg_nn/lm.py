"""Levenberg-Marquardt training for least-squares fits (``fit(..., optimizer="lm")``).

The relative mean-square loss is a sum of squares, ``loss = |r(θ)|^2`` with the
residual ``r_j = (f(x_j) - y_j) / (|y_j| sqrt(N))`` of every sample j. First-order
methods stall on it for HSS layers long before the fit is exact: the generators
carry a gauge freedom (``U_i G``, ``G^{-1} R_i`` ... give the same operator) that
leaves long, badly scaled valleys, and L-BFGS on the P6 data of issue 5 stopped
at relative errors of 2e-4 to 5e-3 (docs/neural.md). Gauss-Newton steps, which
use the Jacobian J of r itself instead of a few gradients, cross those valleys.

Each iteration solves the damped normal equations

    (JᵀJ + λ diag(JᵀJ)) d = -Jᵀ r

by preconditioned conjugate gradients with Jacobian-vector products (J v, the
forward-mode derivative of the model) and vector-Jacobian products (Jᵀ u, its
reverse mode) -- J is never formed. diag(JᵀJ) is estimated from a few products
Jᵀ z with random z (its expectation is exactly that diagonal); it both scales
the damping (Marquardt's choice: a step is invariant to rescaling a parameter)
and preconditions CG. λ follows the gain ratio of achieved to predicted
decrease (divide by 3 above 0.75, double below 0.25; a step that does not
decrease the loss is not taken). L-BFGS iterations first bring the fit into
the region where the Gauss-Newton model is good ("warm-up").

For a plain linear :class:`~hssalg_nn.layers.HSSLinear` (no weight sharing)
the diagonal blocks are not iterated on at all: the model is linear in each D_i
and D_i touches only its own rows of the output, so for given off-diagonal
generators the best D_i is a small least-squares problem per leaf, solved
exactly inside every evaluation (*variable projection*, Golub and Pereyra 1973).
The residual becomes ``P (A_off X - Y)`` with P the orthogonal projector, leaf
by leaf, onto what no D_i can fit. This removes the n m (unsymmetric) or
n (m + 1) / 2 (symmetric) unknowns of D, most of the layer's parameters, whose
conditioning is that of the leaf data X_iᵀ X_i (about 2000 for Gaussian
samples at m = 64, N = 70).

Measured on the P6 problems of issue 5: see docs/neural.md.
"""

import numbers
import time

import numpy as np
from autograd import make_jvp, make_vjp
from autograd.misc import flatten

from .optim import lbfgs_flat
from .primitives import Linearization

__all__ = ["LeafProjection", "levenberg_marquardt", "LM_DEFAULTS"]

LM_DEFAULTS = {
    # L-BFGS iterations at most before the first Gauss-Newton step. On the P6 problems, 300
    # against 2000 (CPU s): 30-38 against 42-63 in all at n = 1024 (three starts), 315 against
    # 347 to a training error of 1e-5 at 4096; at n = 256, where L-BFGS often reaches the
    # switch first, 2.3-7.6 against 2.3-5.5
    "warmup": 300,
    "switch": 1e-3,      # ... ended early once the relative RMS error sqrt(loss) is this small
    "maxcor": 100,       # L-BFGS memory of the warm-up
    "cg_maxiter": 2000,  # CG iterations at most per Levenberg-Marquardt step
    "cg_tol": 1e-3,      # CG stops at this relative residual of the normal equations
    "probes": 20,        # random products J^T z for the estimate of diag(J^T J)
    "damping": 1e-2,     # initial λ (relative to diag(J^T J))
    "loss_tol": 1e-20,   # stop once the training loss is this small
}


# -- variable projection of the leaf blocks ------------------------------------------------

class LeafProjection:
    """Least-squares diagonal blocks of a linear HSS layer for fixed data.

    For data X (N, n) and a residual E (N, n) (rows are samples, columns in the
    caller's order), leaf i of the tree owns the columns ``I_i``; the block D_i
    that best explains ``E[:, I_i]`` as ``X[:, I_i] D_iᵀ`` is

    - unsymmetric: ``D_i = E_iᵀ X_i (X_iᵀ X_i)^+``;
    - symmetric (D_i = D_iᵀ): the solution of ``D G + G D = E_iᵀ X_i + X_iᵀ E_i``
      with ``G = X_iᵀ X_i = Q Λ Qᵀ``, i.e. ``Qᵀ D Q = (Qᵀ C Q) / (λ_a + λ_b)``
      elementwise (the normal equations of min |E_i - X_i D| over symmetric D).

    :meth:`project` is E minus that best fit, an orthogonal projection of E
    (so it is self-adjoint, and its own vector-Jacobian product).

    Parameters
    ----------
    tree : hssalg.ClusterTree
    X : (N, n) array
        The data, rows are samples, caller's order.
    symmetric : bool
    rcond : float
        Eigenvalues of G (or sums λ_a + λ_b) below ``rcond`` times the largest
        count as zero (a pseudo-inverse: with fewer samples than leaf points
        some directions of D_i are not determined and are set to 0).
    """

    def __init__(self, tree, X, symmetric, rcond=1e-13):
        X = np.asarray(X, dtype=np.float64)
        self.symmetric = bool(symmetric)
        leaves = tree.leaves
        sizes = tree.sizes[leaves]
        start = np.asarray(tree.arrays[3])[leaves]
        perm = np.asarray(tree.perm)
        self.groups = []
        for m in np.unique(sizes):
            sel = sizes == m
            ids = leaves[sel]
            first = np.sort(start[sel])
            if tree.has_identity_perm and np.array_equal(first, first[0] + m * np.arange(first.size)):
                # adjacent leaves in the caller's order (a balanced tree): a slice, no gathers
                cols = slice(int(first[0]), int(first[0]) + m * first.size)
                ids = ids[np.argsort(start[sel])]
            else:
                cols = perm[start[sel][:, None] + np.arange(m)]             # (L, m) caller columns
            Xg = self._leafwise(X, cols, m)                                 # (L, N, m): X_i
            lam, Q = np.linalg.eigh(np.swapaxes(Xg, 1, 2) @ Xg)             # G_i = X_iᵀ X_i = Q Λ Qᵀ
            top = max(float(lam.max()), np.finfo(np.float64).tiny)
            if self.symmetric:
                den = lam[:, :, None] + lam[:, None, :]
                inv = np.where(den > rcond * 2 * top, 1.0 / np.where(den > 0, den, 1.0), 0.0)
            else:
                inv = np.where(lam > rcond * top, 1.0 / np.where(lam > 0, lam, 1.0), 0.0)
            # Z = X_i Q: with it a projection costs four (N, m) x (m, m) products per leaf
            self.groups.append((ids, cols, m, Q, Xg @ Q, inv))

    @staticmethod
    def _leafwise(E, cols, m):
        """The leaves' columns of E (N, n) as an (L, N, m) array (a view for a slice)."""
        if isinstance(cols, slice):
            return np.swapaxes(E[:, cols].reshape(E.shape[0], -1, m), 0, 1)
        return np.swapaxes(E[:, cols], 0, 1)

    def _coefficients(self, E):
        """Per size group: the group and the best blocks in the eigenbasis, Qᵀ D_i Q (L, m, m)."""
        for group in self.groups:
            ids, cols, m, Q, Z, inv = group
            W = self._leafwise(E, cols, m) @ Q                              # E_i Q, (L, N, m)
            F = np.swapaxes(W, 1, 2) @ Z                                    # Qᵀ E_iᵀ X_i Q
            if self.symmetric:
                F = (F + np.swapaxes(F, 1, 2)) * inv
            else:
                F = F * inv[:, None, :]
            yield group, F

    def blocks(self, E):
        """The best D_i for the residual E (N, n): a list of (leaf ids (L,), D (L, m, m))."""
        E = np.asarray(E, dtype=np.float64)
        return [(g[0], g[3] @ F @ np.swapaxes(g[3], 1, 2)) for g, F in self._coefficients(E)]

    def project(self, E):
        """E minus its best fit by leaf blocks (N, n); an orthogonal projection."""
        P = np.array(E, dtype=np.float64)
        for (ids, cols, m, Q, Z, inv), F in self._coefficients(P):
            fit = (Z @ np.swapaxes(F, 1, 2)) @ np.swapaxes(Q, 1, 2)         # X_i D_iᵀ, (L, N, m)
            if isinstance(cols, slice):
                view = P[:, cols].reshape(P.shape[0], -1, m)
                view -= np.swapaxes(fit, 0, 1)
            else:
                P[:, cols] -= np.swapaxes(fit, 0, 1)
        return P


# A problem is a least-squares problem in a flat parameter vector θ (start: theta0):
# residual(θ) -> r, an (N, n_out) array; linearize(θ) -> (r, jvp, vjp) with
# jvp(v) = J v and vjp(u, projected=False) = Jᵀ u; params(θ) -> the model's
# parameters (plain arrays).

class _Generic:
    """Any model: r = (f(X) - Y) w, all parameters iterated on, derivatives by autograd."""

    def __init__(self, apply, params, X, Y):
        self.apply, self.X = apply, X
        w = 1.0 / (np.linalg.norm(Y, axis=1) * np.sqrt(X.shape[0]))
        self.w = w[:, None]
        self.Yw = Y * self.w
        self.theta0, self.unflatten = flatten(params)
        self.theta0 = np.asarray(self.theta0, dtype=np.float64)

    def _residual(self, theta):
        return self.apply(self.unflatten(theta), self.X) * self.w - self.Yw

    def residual(self, theta):
        return np.asarray(self._residual(theta), dtype=np.float64)

    def linearize(self, theta):
        vjp_fn, r = make_vjp(self._residual)(theta)
        forward = make_jvp(self._residual)(theta)

        def jvp(v):
            return np.asarray(forward(v)[1], dtype=np.float64)

        def vjp(u, projected=False):
            return np.asarray(vjp_fn(u), dtype=np.float64)

        return np.asarray(r, dtype=np.float64), jvp, vjp

    def params(self, theta):
        return self.unflatten(np.array(theta, dtype=np.float64))


class _Projected:
    """A linear HSSLinear without sharing: D eliminated, r = P (A_off X - Y) w.

    J = P J_off with P an orthogonal projector, so Jᵀ u = J_offᵀ P u, and the
    P can be skipped for a u that is already projected (a residual, or J v).
    """

    def __init__(self, layer, params, X, Y):
        self.layer = layer
        w = 1.0 / (np.linalg.norm(Y, axis=1) * np.sqrt(X.shape[0]))
        # the model is linear: scaling sample j on both sides weights it by w_j
        self.X = np.ascontiguousarray(X * w[:, None])
        self.Y = Y * w[:, None]
        self.proj = LeafProjection(layer.tree, self.X, layer.symmetric)
        self.kinds = [k for k in layer.kinds if k != "D"]
        self.zero_D = np.zeros_like(np.asarray(params["D"], dtype=np.float64))
        self.theta0, self.unflatten = flatten({k: np.asarray(params[k], dtype=np.float64) for k in self.kinds})
        self.theta0 = np.asarray(self.theta0, dtype=np.float64)

    def _gens(self, theta):
        """The generator buffers of θ; D is a placeholder that Linearization(diagonal=False)
        never reads, so its zeros are not symmetrised."""
        p = dict(self.unflatten(theta))
        p["D"] = self.zero_D
        return self.layer._expand_plain(p, diagonal=False)

    def _off(self, theta):
        return np.asarray(Linearization(self._gens(theta), self.X, self.layer.layout, diagonal=False).Y)

    def residual(self, theta):
        return self.proj.project(self._off(theta) - self.Y)

    def linearize(self, theta):
        # A_off: the kernels skip the leaf products with D, the bulk of the leaf work
        lin = Linearization(self._gens(theta), self.X, self.layer.layout, diagonal=False)
        r = self.proj.project(np.asarray(lin.Y) - self.Y)

        def jvp(v):
            # the generators are linear in the parameters: their tangent is generators(v)
            return self.proj.project(lin.jvp(self._gens(v)))

        def vjp(u, projected=False):
            g = lin.vjp(u if projected else self.proj.project(u))
            if self.layer.symmetric:
                # the transpose of the linear map θ -> generators, for the iterated kinds
                g = self.layer._reduce_plain(g, diagonal=False)
            return np.asarray(flatten({k: np.asarray(g[k], dtype=np.float64) for k in self.kinds})[0])

        return r, jvp, vjp

    def params(self, theta):
        theta = np.array(theta, dtype=np.float64)
        p = {k: np.array(v) for k, v in self.unflatten(theta).items()}
        E = self.Y - self._off(theta)
        D = np.zeros_like(self.zero_D)
        off = self.layer.layout.offsets["D"]
        for ids, blocks in self.proj.blocks(E):
            for i, blk in zip(ids, blocks):
                D[off[i]:off[i + 1]] = blk.ravel()
        p["D"] = D
        return {k: p[k].astype(self.layer.dtype, copy=False) for k in self.layer.kinds}


def make_problem(model, apply, params, X, Y):
    """The problem ``fit`` hands to :func:`levenberg_marquardt` for this model."""
    from .layers import HSSLinear
    if isinstance(model, HSSLinear) and not model.share_weights:
        return _Projected(model, params, X, Y)
    return _Generic(apply, params, X, Y)


# -- the solver -----------------------------------------------------------------------------

def _pcg(op, b, minv, maxiter, tol):
    """Preconditioned conjugate gradients for op(x) = b (op symmetric positive definite), x0 = 0."""
    x = np.zeros_like(b)
    r = b.copy()
    z = minv * r
    p = z.copy()
    rz = r @ z
    stop = tol * tol * (b @ b)
    for it in range(maxiter):
        if r @ r <= stop:
            return x, it
        q = op(p)
        alpha = rz / (p @ q)
        x += alpha * p
        r -= alpha * q
        z = minv * r
        rz_new = r @ z
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x, maxiter


def check_options(options):
    """LM_DEFAULTS updated by ``options`` (a dict), with clear errors for bad entries."""
    opts = dict(LM_DEFAULTS)
    if options is None:
        return opts
    if not isinstance(options, dict) or not set(options) <= set(LM_DEFAULTS):
        raise ValueError(f"lm_options must be a dict with keys among {sorted(LM_DEFAULTS)}, got {options!r}")
    for key, value in options.items():
        if key in ("warmup", "maxcor", "cg_maxiter", "probes"):
            low = 1 if key in ("maxcor", "cg_maxiter", "probes") else 0
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"lm_options[{key!r}] must be an integer >= {low}, got {value!r}")
            opts[key] = int(value)
        else:
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (value >= 0) \
                    or not np.isfinite(value):
                raise ValueError(f"lm_options[{key!r}] must be a finite number >= 0, got {value!r}")
            opts[key] = float(value)
    return opts


def levenberg_marquardt(problem, theta, maxiter, opts, state=None, warmup_callback=None, callback=None):
    """Minimise |r(θ)|^2 from θ: an L-BFGS warm-up, then up to ``maxiter`` LM steps.

    Parameters
    ----------
    problem : _Generic or _Projected
        Residual r(θ), J v, and the parameters of θ (from :func:`make_problem`).
    theta : (p,) float64 array
    maxiter : int
        Levenberg-Marquardt iterations at most, counting those of ``state``.
    opts : dict
        From :func:`check_options`.
    state : dict, optional
        ``{"damping": λ, "lm_steps": count}`` of an earlier run: continue it
        (no warm-up when ``lm_steps`` > 0).
    warmup_callback : callable, optional
        ``warmup_callback(theta, loss)`` after every warm-up iteration.
    callback : callable, optional
        ``callback(theta, loss, state, info)`` after every LM iteration; info
        holds ``cg`` (iterations of that step), ``rho`` (gain ratio) and
        ``seconds`` (its wall time).

    Returns
    -------
    theta : (p,) array
    state : dict
    """
    state = {"damping": opts["damping"], "lm_steps": 0} if state is None else dict(state)
    theta = np.array(theta, dtype=np.float64)

    def loss_of(r):
        return float(np.sum(r * r))

    if state["lm_steps"] == 0 and opts["warmup"] > 0:
        switch2 = opts["switch"] ** 2
        last = {}

        def fun(x):
            r, _, vjp = problem.linearize(x)
            last["x"], last["f"] = x.copy(), loss_of(r)
            return last["f"], 2.0 * vjp(r, projected=True)

        class _Switch(Exception):
            pass

        def cb(x):
            # scipy evaluates the accepted iterate last, so its loss is the cached one
            value = last["f"] if np.array_equal(last["x"], x) else loss_of(problem.residual(x))
            last["accepted"] = np.array(x, copy=True)
            if warmup_callback is not None:
                warmup_callback(last["accepted"], value)
            if value <= switch2:
                raise _Switch

        try:
            theta = lbfgs_flat(fun, theta, opts["warmup"], 0.0, 0.0, opts["maxcor"], cb)[0]
        except _Switch:
            theta = last["accepted"]

    r = problem.residual(theta)
    f = loss_of(r)
    while state["lm_steps"] < maxiter and f > opts["loss_tol"]:
        t0 = time.perf_counter()
        r, jvp, vjp = problem.linearize(theta)
        g = vjp(r, projected=True)                                  # Jᵀ r, half the gradient
        rng = np.random.default_rng(state["lm_steps"])
        diag = np.zeros_like(theta)
        for _ in range(opts["probes"]):
            diag += vjp(rng.standard_normal(r.shape)) ** 2
        diag /= opts["probes"]
        # parameters no residual depends on (or too few probes to see): keep the system definite
        diag += 1e-12 * max(float(diag.max()), np.finfo(np.float64).tiny)
        lam = state["damping"]

        def normal(v):
            return vjp(jvp(v), projected=True) + lam * diag * v

        d, n_cg = _pcg(normal, -g, 1.0 / ((1.0 + lam) * diag), opts["cg_maxiter"], opts["cg_tol"])
        r_new = problem.residual(theta + d)
        f_new = loss_of(r_new)
        predicted = -(2.0 * float(g @ d) + loss_of(jvp(d)))
        rho = (f - f_new) / predicted if predicted > 0 else -1.0
        if f_new < f:
            theta, r, f = theta + d, r_new, f_new
        if rho > 0.75:
            lam = max(lam / 3.0, 1e-15)
        elif rho < 0.25:
            lam = lam * 2.0
        state = {"damping": float(lam), "lm_steps": state["lm_steps"] + 1}
        if callback is not None:
            callback(theta, f, state, {"cg": n_cg, "rho": float(rho), "seconds": time.perf_counter() - t0})
        if lam > 1e12:   # no step decreases the loss any more: a minimum to working precision
            break
    return theta, state
