"""Tests of hssalg_nn.plot_history: what is drawn, from a real fit history, and bad input."""

import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hssalg_nn import fit, plot_history  # noqa: E402


@pytest.fixture(scope="module")
def history():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 5))
    X, Xv = rng.standard_normal((40, 5)), rng.standard_normal((10, 5))
    _, hist = fit(lambda p, X: X @ p, np.zeros((5, 5)), X, X @ A.T, epochs=6, batch_size=8, lr=0.05,
                  X_val=Xv, Y_val=Xv @ A.T, progress=False)
    return hist


def test_draws_the_training_and_validation_losses_against_the_epochs(history):
    ax = plot_history(history, label="run")
    train, val = ax.lines
    np.testing.assert_array_equal(train.get_xdata(), history["epoch"])
    np.testing.assert_array_equal(train.get_ydata(), history["loss"])
    np.testing.assert_array_equal(val.get_ydata(), history["val_loss"])
    assert val.get_linestyle() == "--" and val.get_color() == train.get_color()
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["run", "run (validation)"]
    plt.close(ax.figure)


def test_runs_share_an_axes_and_a_history_without_validation_draws_one_line(history):
    fig, ax = plt.subplots()
    bare = {"loss": [1.0, 0.5, 0.25]}
    assert plot_history(bare, ax=ax, logy=False) is ax
    assert len(ax.lines) == 1 and ax.get_yscale() == "linear"
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 2, 3])
    plot_history(history, ax=ax)
    assert len(ax.lines) == 3
    plt.close(fig)


@pytest.mark.parametrize("bad, exc, match", [
    ([1.0, 2.0], TypeError, "history must be the dict fit returned"),
    ({"val_loss": [1.0]}, TypeError, r"with keys \['val_loss'\]"),
    ({"loss": []}, ValueError, "history\\['loss'\\] is empty"),
    ({"loss": ["a", "b"]}, TypeError, "history\\['loss'\\] must be a list of numbers"),
    ({"loss": [1.0, 2.0], "epoch": [1]}, ValueError, "history\\['epoch'\\] has 1 entries but"),
    ({"loss": [1.0, 2.0], "val_loss": [1.0]}, ValueError, "history\\['val_loss'\\] has 1 entries"),
])
def test_bad_history_is_a_clear_error(bad, exc, match):
    with pytest.raises(exc, match=match):
        plot_history(bad)


def test_bad_options_are_clear_errors():
    with pytest.raises(TypeError, match="label must be a string"):
        plot_history({"loss": [1.0]}, label=3)
    with pytest.raises(TypeError, match="logy must be True or False"):
        plot_history({"loss": [1.0]}, logy="yes")


def test_without_matplotlib_the_error_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)   # import fails
    with pytest.raises(ImportError, match=r"pip install hssalg\[plot\]"):
        plot_history({"loss": [1.0]})


def test_arrays_work_like_lists():
    ax = plot_history({"loss": np.array([1.0, 0.1]), "val_loss": np.array([2.0, 0.2])})
    assert len(ax.lines) == 2
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [2.0, 0.2])
    plt.close(ax.figure)
