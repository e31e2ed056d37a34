"""Model recipes of hssalg_nn.experiment and the regularised exact fit they rely on."""

import numpy as np
import pytest

import hssalg as hs
from hssalg_nn import fit_linear_exact, min_samples_exact
from hssalg_nn.data import make_dataset
from hssalg_nn.experiment import _select_rank, train_model


def _sym_hss(tree, k, seed):
    G = hs.gallery.random_hss(tree, k, seed=seed)
    return 0.5 * (G.todense() + G.todense().T)


@pytest.mark.parametrize("rcond", [0.0, 1e-10])
def test_exact_fit_recovers_symmetric_hss_with_and_without_cutoff(rcond):
    # Gaussian inputs of an exactly-HSS target: the truncated (SVD) route must recover it as
    # exactly as the QR route when the cutoff is far below the data's conditioning
    tree = hs.ClusterTree.balanced(256, 16)
    A = _sym_hss(tree, 3, seed=4)
    # the symmetrised matrix has rank <= 2k off the diagonal blocks, so fit rank 6
    N = min_samples_exact(tree, 6) + 2
    X = np.random.default_rng(1).standard_normal((N, 256))
    H = fit_linear_exact(X, X @ A.T, tree, 6, rcond=rcond)
    Xt = np.random.default_rng(2).standard_normal((5, 256))
    assert np.linalg.norm(Xt @ H.todense().T - Xt @ A.T) <= 1e-10 * np.linalg.norm(Xt @ A.T)


def test_cutoff_regularises_smooth_data():
    # 10 random-field samples of 2-D Poisson: the leaf test blocks are ill-conditioned and the
    # exact scheme amplifies what is not of rank 3; a cutoff of 0.1 lowers the error on new inputs
    train = make_dataset("poisson", dim=2, grid=16, n_samples=10, seed=0)
    test = make_dataset("poisson", dim=2, grid=16, n_samples=50, seed=9)
    tree = train.tree(4)

    def err(rc):
        H = fit_linear_exact(train.X, train.Y, tree, 3, sym_tol=np.inf, rcond=rc)
        P = (H @ test.X.T).T
        return np.mean(np.linalg.norm(P - test.Y, axis=1) / np.linalg.norm(test.Y, axis=1))

    assert err(0.1) < 0.8 * err(0.0)


@pytest.mark.parametrize("rcond", [-0.1, 1.0, "0.1", np.nan])
def test_bad_cutoff_is_refused(rcond):
    tree = hs.ClusterTree.balanced(32, 8)
    X = np.random.default_rng(0).standard_normal((12, 32))
    with pytest.raises(ValueError, match="rcond must be a number in"):
        fit_linear_exact(X, X, tree, 2, rcond=rcond)


def test_selection_picks_the_true_rank_of_an_exact_target():
    # an exactly rank-2 symmetric HSS target (the 1-D Poisson Green's matrix, fact P2): cross-
    # validation must not pick rank 1 (it cannot fit) and every rank >= 2 is exact
    train = make_dataset("poisson", dim=1, grid=64, n_samples=16, seed=3)
    k, rc, scores = _select_rank(train.X, train.Y, train.tree(4), 16)
    assert k >= 2
    assert scores[(1, 0.0)] > 1e3 * scores[(2, 0.0)]
    assert min(scores.values()) <= 1e-10


def test_nhss_linear_beats_least_squares_from_12_samples_in_2d():
    # the data-efficiency claim at small scale (2-D Poisson, 16^2 grid): the constructive HSS
    # fit must generalise better than the minimum-norm dense operator from the same 12 samples
    train = make_dataset("poisson", dim=2, grid=16, n_samples=12, seed=0)
    test = make_dataset("poisson", dim=2, grid=16, n_samples=50, seed=9)
    nh = train_model("nhss-linear", train, test, finetune=0)
    ls = train_model("lstsq", train, test)
    assert nh["test_error"] < 0.7 * ls["test_error"]


@pytest.mark.parametrize("folds", [0, 1, -3, 2.5, True])
def test_bad_folds_are_refused(folds):
    train = make_dataset("poisson", dim=1, grid=16, n_samples=8, seed=0)
    test = make_dataset("poisson", dim=1, grid=16, n_samples=3, seed=1)
    with pytest.raises(ValueError, match="folds must be an integer >= 2"):
        train_model("nhss-linear", train, test, folds=folds)


def test_test_error_refuses_zero_targets_and_empty_sets():
    from hssalg_nn.experiment import test_error
    train = make_dataset("poisson", dim=1, grid=16, n_samples=8, seed=0)
    res = train_model("lstsq", train, train)
    Y = np.array(train.Y)
    Y[2] = 0.0
    with pytest.raises(ValueError, match="zero rows"):
        test_error(res["model"], res["params"], train.X, Y)
    with pytest.raises(ValueError, match="at least one sample"):
        test_error(res["model"], res["params"], train.X[:0], train.Y[:0])
