"""Optimisers, the fit loop and checkpoints (hssalg_nn.optim, hssalg_nn.train)."""

import os

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad
from autograd.test_util import check_grads

import hssalg as hs
from hssalg_nn.optim import adam_init, adam_step, lbfgs, tree_leaves
from hssalg_nn.train import fit, load_checkpoint, relative_l2, relative_mse, save_checkpoint


def affine(params, X):
    """A plain function model: X W + b."""
    return anp.dot(X, params["W"]) + params["b"]


def _problem(N=48, n_in=6, n_out=5, seed=0):
    rng = np.random.default_rng(seed)
    W, b = rng.standard_normal((n_in, n_out)), rng.standard_normal(n_out)
    X = rng.standard_normal((N, n_in))
    Y = X @ W + b
    params = {"W": 0.1 * rng.standard_normal((n_in, n_out)), "b": np.zeros(n_out)}
    return X, Y, params


def _assert_trees_identical(a, b):
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_trees_identical(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_trees_identical(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()          # bit for bit, NaN payloads included
    else:
        assert a == b


# -- losses ----------------------------------------------------------------------------------

def test_relative_l2_is_the_mean_of_per_sample_relative_errors(rng):
    P, Y = rng.standard_normal((7, 9)), rng.standard_normal((7, 9))
    ref = np.mean([np.linalg.norm(p - y) / np.linalg.norm(y) for p, y in zip(P, Y)])
    assert relative_l2(P, Y) == pytest.approx(ref, rel=1e-14)
    assert relative_mse(P, Y) == pytest.approx(
        np.mean([np.sum((p - y) ** 2) / np.sum(y * y) for p, y in zip(P, Y)]), rel=1e-14)
    assert relative_l2(P[0], Y[0]) == pytest.approx(np.linalg.norm(P[0] - Y[0]) / np.linalg.norm(Y[0]))
    check_grads(lambda p: relative_l2(p, Y), modes=["rev"], order=1)(P)


def test_relative_l2_gradient_is_finite_at_an_exact_fit(rng):
    Y = rng.standard_normal((4, 6))
    P = Y.copy()
    P[0] += 1.0                                    # one sample off, the others exact
    g = grad(lambda p: relative_l2(p, Y))(P)
    assert np.all(np.isfinite(g))
    assert np.all(g[1:] == 0.0)


# -- optimisers ------------------------------------------------------------------------------

def test_adam_step_matches_the_formula_and_leaves_inputs_alone():
    p = {"a": np.array([1.0, -2.0]), "b": [np.array([[0.5]]), (np.array(3.0),)]}
    g = {"a": np.array([0.1, 0.2]), "b": [np.array([[-1.0]]), (np.array(0.0),)]}
    p_copy = {"a": p["a"].copy()}
    state = adam_init(p)
    assert state["t"] == 0 and all(np.all(x == 0) for x in tree_leaves(state["m"]))
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    p1, s1 = adam_step(p, g, state, lr=lr, b1=b1, b2=b2, eps=eps)
    p2, s2 = adam_step(p1, g, s1, lr=lr, b1=b1, b2=b2, eps=eps)
    # by hand for leaf "a", two steps with the same gradient
    m = v = 0.0
    x = p["a"].copy()
    for t in (1, 2):
        m = b1 * m + (1 - b1) * g["a"]
        v = b2 * v + (1 - b2) * g["a"] ** 2
        x = x - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    np.testing.assert_allclose(p2["a"], x, rtol=1e-14)
    assert s2["t"] == 2 and s1["t"] == 1 and state["t"] == 0
    assert np.array_equal(p["a"], p_copy["a"])
    assert type(p2["b"][1]) is tuple
    assert np.array_equal(p2["b"][1][0], p["b"][1][0])        # zero gradient: no move


def test_adam_step_errors():
    p = {"a": np.zeros(3)}
    s = adam_init(p)
    with pytest.raises(ValueError, match="structures differ"):
        adam_step(p, {"b": np.zeros(3)}, s)
    with pytest.raises(ValueError, match="shape"):
        adam_step(p, {"a": np.zeros(4)}, s)
    with pytest.raises(ValueError, match="lr"):
        adam_step(p, p, s, lr=0.0)
    with pytest.raises(ValueError, match="b1"):
        adam_step(p, p, s, b1=1.0)
    with pytest.raises(ValueError, match="state"):
        adam_step(p, p, {"m": 0})
    with pytest.raises(TypeError, match="pytree"):
        adam_init({"a": "text"})


def test_lbfgs_solves_a_least_squares_problem():
    X, Y, params = _problem()
    out, info = lbfgs(lambda p: anp.mean((affine(p, X) - Y) ** 2), params, maxiter=200)
    assert info["loss"] <= 1e-12
    assert relative_l2(affine(out, X), Y) <= 1e-6
    assert set(out) == {"W", "b"} and out["W"].shape == params["W"].shape
    seen = []
    lbfgs(lambda p: anp.mean((affine(p, X) - Y) ** 2), params, maxiter=5,
          callback=lambda p, val: seen.append(val))
    assert 1 <= len(seen) <= 5 and seen == sorted(seen, reverse=True)
    with pytest.raises(TypeError, match="loss_fn"):
        lbfgs(None, params)
    with pytest.raises(ValueError, match="maxiter"):
        lbfgs(lambda p: 0.0, params, maxiter=-1)


def test_lbfgs_keeps_the_callers_blas_threads_for_the_loss():
    # L-BFGS-B's own vector updates run on one BLAS thread, the loss on the caller's threads
    from threadpoolctl import threadpool_info, threadpool_limits
    X, Y, params = _problem()
    seen = []

    def loss(p):
        seen.append(max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
        return anp.mean((affine(p, X) - Y) ** 2)

    with threadpool_limits(2, user_api="blas"):
        _, info = lbfgs(loss, params, maxiter=3)
        outside = max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
    assert seen and set(seen) == {2} and outside == 2


# -- fit ---------------------------------------------------------------------------------------

def test_fit_adam_lowers_the_loss_with_validation_history():
    X, Y, params = _problem()
    Xv, Yv, _ = _problem(N=16, seed=1)
    Yv = Xv @ np.linalg.lstsq(X, Y - Y.mean(0), rcond=None)[0] + Y.mean(0)   # same map, new inputs
    out, hist = fit(affine, params, X, Y, epochs=30, batch_size=8, lr=0.05, X_val=Xv, Y_val=Yv)
    assert hist["epoch"] == list(range(1, 31))
    assert hist["steps"][-1] == 30 * 6
    assert hist["loss"][-1] < 0.1 * hist["loss"][0]
    assert hist["loss"][-1] == pytest.approx(float(relative_l2(affine(out, X), Y)), rel=1e-12)
    assert len(hist["val_loss"]) == 30 and hist["val_loss"][-1] < hist["val_loss"][0]
    assert params["b"].tolist() == [0.0] * 5                  # the input is not modified


def test_fit_lbfgs_reaches_the_exact_solution(tmp_path):
    X, Y, params = _problem()
    path = tmp_path / "lbfgs.npz"
    out, hist = fit(affine, params, X, Y, epochs=100, optimizer="lbfgs", loss="relative_mse",
                    checkpoint=path, lbfgs_options={"maxcor": 10})
    assert hist["loss"][-1] <= 1e-12
    assert 1 <= len(hist["loss"]) <= 100
    assert hist["loss"][-1] == pytest.approx(float(relative_mse(affine(out, X), Y)), rel=1e-6, abs=1e-20)
    p, state, h = load_checkpoint(path)
    _assert_trees_identical((p, h), (out, hist))
    assert state is None                                   # L-BFGS keeps no resumable state
    with pytest.raises(ValueError, match="lbfgs_options"):
        fit(affine, params, X, Y, optimizer="lbfgs", lbfgs_options={"m": 3})


def test_fit_accepts_a_model_object_and_an_lr_schedule():
    class Model:
        def apply(self, params, X):
            return affine(params, X)
    X, Y, params = _problem()
    lrs = []

    def schedule(t):
        lrs.append(t)
        return 0.05 / (1 + 0.01 * t)
    _, hist = fit(Model(), params, X, Y, epochs=3, batch_size=16, lr=schedule)
    assert lrs == list(range(1, 10))
    assert hist["loss"][-1] < hist["loss"][0]


def test_fit_is_deterministic_with_a_seed():
    X, Y, params = _problem()
    a = fit(affine, params, X, Y, epochs=5, batch_size=7, lr=0.02, seed=3)
    b = fit(affine, params, X, Y, epochs=5, batch_size=7, lr=0.02, seed=3)
    c = fit(affine, params, X, Y, epochs=5, batch_size=7, lr=0.02, seed=4)
    _assert_trees_identical(a, b)
    assert not np.array_equal(a[0]["W"], c[0]["W"])        # another minibatch order


def test_fit_resumed_from_a_checkpoint_equals_the_uninterrupted_run(tmp_path):
    X, Y, params = _problem()
    Xv, Yv, _ = _problem(N=10, seed=5)
    kw = dict(batch_size=10, lr=0.03, seed=1, X_val=Xv, Y_val=Yv)
    full = tmp_path / "full.npz"
    p_full, h_full = fit(affine, params, X, Y, epochs=6, checkpoint=full, **kw)
    part = tmp_path / "part.npz"
    fit(affine, params, X, Y, epochs=2, checkpoint=part, **kw)          # "interrupted" after 2
    assert load_checkpoint(part)[2]["epoch"] == [1, 2]
    # resume: the params argument is superseded by the checkpoint's
    p_res, h_res = fit(affine, params, X, Y, epochs=6, checkpoint=part, resume=True, **kw)
    _assert_trees_identical((p_full, h_full), (p_res, h_res))
    _assert_trees_identical(load_checkpoint(full), load_checkpoint(part))
    # the same in memory, through return_state
    p2, h2, s2 = fit(affine, params, X, Y, epochs=3, return_state=True, **kw)
    p_mem, h_mem = fit(affine, p2, X, Y, epochs=6, opt_state=s2, history=h2, **kw)
    _assert_trees_identical((p_full, h_full), (p_mem, h_mem))
    # resume=True without a file yet starts from params
    fresh = tmp_path / "fresh.npz"
    _assert_trees_identical(fit(affine, params, X, Y, epochs=6, checkpoint=fresh, resume=True, **kw),
                            (p_full, h_full))


def test_fit_progress_line(capsys):
    X, Y, params = _problem(N=8)
    fit(affine, params, X, Y, epochs=2, batch_size=4, progress=True)
    err = capsys.readouterr().err
    assert "fit:" in err and "4/4" in err
    fit(affine, params, X, Y, epochs=2, batch_size=4, progress=False)
    fit(affine, params, X, Y, epochs=2, batch_size=4)          # automatic: too short to show
    assert capsys.readouterr().err == ""


def test_fit_progress_line_appears_on_long_runs(capsys, monkeypatch):
    import hssalg_nn.train as train
    monkeypatch.setattr(train, "AUTO_PROGRESS_AFTER", 0.0)     # every run is "long" now
    X, Y, params = _problem(N=8)
    fit(affine, params, X, Y, epochs=3, batch_size=4)
    err = capsys.readouterr().err
    assert "fit:" in err and "6/6" in err


def test_fit_errors(tmp_path):
    X, Y, params = _problem(N=8)
    with pytest.raises(ValueError, match="X has 8 samples"):
        fit(affine, params, X, Y[:5])
    Y0 = Y.copy()
    Y0[3] = 0.0
    with pytest.raises(ValueError, match="1 zero row"):
        fit(affine, params, X, Y0)
    with pytest.raises(ValueError, match="optimizer"):
        fit(affine, params, X, Y, optimizer="sgd")
    with pytest.raises(ValueError, match="epochs"):
        fit(affine, params, X, Y, epochs=-1)
    with pytest.raises(ValueError, match="batch_size"):
        fit(affine, params, X, Y, batch_size=0)
    with pytest.raises(TypeError, match="apply"):
        fit(42, params, X, Y)
    with pytest.raises(ValueError, match="X_val and Y_val"):
        fit(affine, params, X, Y, X_val=X)
    with pytest.raises(ValueError, match="non-finite"):
        fit(affine, params, np.full_like(X, np.nan), Y)
    with pytest.raises(ValueError, match="resume"):
        fit(affine, params, X, Y, resume=True)
    with pytest.raises(ValueError, match="loss"):
        fit(affine, params, X, Y, loss="l1")
    with pytest.raises(ValueError, match="to shape"):
        fit(affine, params, X, Y[:, :3])
    # a diverging run: the overflows along the way are the point, fit must turn them into an error
    with pytest.raises(FloatingPointError, match="learning rate"), np.errstate(all="ignore"):
        fit(affine, params, X, 1e-300 * Y, epochs=1, lr=1e300)
    path = tmp_path / "c.npz"
    fit(affine, params, X, Y, epochs=1, checkpoint=path)
    with pytest.raises(ValueError, match="another structure"):
        fit(affine, {"W": params["W"]}, X, Y, epochs=2, checkpoint=path, resume=True)


# -- checkpoints -------------------------------------------------------------------------------

def test_checkpoint_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    params = {"blocks": [{"K": {"D": rng.standard_normal((3, 4, 4)), "U": rng.standard_normal((3, 4, 2))},
                          "b": rng.standard_normal(5).astype(np.float32)},
                         {"odd/key~x": np.array([np.nan, -0.0, np.inf])}],
              "proj": (rng.standard_normal((2, 2)), np.float64(1.5)),
              "scale": 2.5, "count": 7, "flag": True, "name": "layer", "empty": [], "nothing": None}
    state = {"t": 12, "m": params["blocks"][0]["K"], "v": [np.arange(3)]}
    history = {"epoch": [1, 2, 3], "loss": [0.5, 0.25, 0.125], "val_loss": [0.6, 0.3, 0.2]}
    path = tmp_path / "ck.npz"
    save_checkpoint(path, params, state, history)
    p, s, h = load_checkpoint(path)
    _assert_trees_identical(p, params)
    _assert_trees_identical(s, state)
    _assert_trees_identical(h, history)
    assert isinstance(p["proj"][1], np.float64)
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]       # the temporary file is gone
    save_checkpoint(str(path), np.ones(3))                              # a bare array, no state
    p, s, h = load_checkpoint(str(path))
    assert np.array_equal(p, np.ones(3)) and s is None and h is None


def test_checkpoint_refuses_bad_files(tmp_path):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, {"a": np.arange(100.0)}, None, {"loss": [1.0]})
    data = path.read_bytes()
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.npz")
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(trunc)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.ones(3))
    with pytest.raises(ValueError, match="not an hssalg_nn checkpoint"):
        load_checkpoint(foreign)
    matrix = tmp_path / "matrix.npz"
    hs.save(matrix, hs.gallery.random_hss(hs.ClusterTree.balanced(16, 4), 2))
    with pytest.raises(ValueError, match="not an hssalg_nn checkpoint"):
        load_checkpoint(matrix)
    npy = tmp_path / "single.npy"
    np.save(npy, np.ones(2))
    with pytest.raises(ValueError, match="single .npy"):
        load_checkpoint(npy)
    # a consistent archive whose data were edited: caught by the digest
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["params/a"] = arrays["params/a"] + 1.0
    edited = tmp_path / "edited.npz"
    with open(edited, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ValueError, match="digest"):
        load_checkpoint(edited)
    with pytest.raises(TypeError, match="str dict keys"):
        save_checkpoint(path, {1: np.ones(2)})
    with pytest.raises(TypeError, match="no pickle"):
        save_checkpoint(path, {"a": np.array([object()])})
    with pytest.raises(TypeError, match="set"):
        save_checkpoint(path, {"a": {1, 2}})
    assert load_checkpoint(path)[2] == {"loss": [1.0]}      # failed saves left the old file intact


# -- with the Neural-HSS model --------------------------------------------------------------------

def test_fit_trains_a_neural_hss_model_and_resumes_it_exactly(tmp_path):
    from hssalg_nn.layers import NeuralHSS
    n = 32
    tree = hs.ClusterTree.balanced(n, 8)
    G = hs.gallery.poisson1d_green(n) * (n + 1) ** 2          # O(1) entries
    rng = np.random.default_rng(0)
    X = rng.standard_normal((24, n))
    Y = X @ G.T
    model = NeuralHSS(tree, channels=2, n_layers=2, rank=2, activation="gelu")
    params = model.init(seed=1)
    kw = dict(batch_size=8, lr=5e-3, seed=2)
    full = tmp_path / "full.npz"
    p_full, h_full = fit(model, params, X, Y, epochs=4, checkpoint=full, **kw)
    assert h_full["loss"][-1] < h_full["loss"][0]
    part = tmp_path / "part.npz"
    fit(model, params, X, Y, epochs=1, checkpoint=part, **kw)
    p_res, h_res = fit(model, params, X, Y, epochs=4, checkpoint=part, resume=True, **kw)
    _assert_trees_identical((p_full, h_full), (p_res, h_res))
    p_chk, s_chk, h_chk = load_checkpoint(full)
    _assert_trees_identical(p_chk, p_full)
    assert s_chk["t"] == 4 * 3
    np.testing.assert_array_equal(model.apply(p_chk, X), model.apply(p_full, X))
