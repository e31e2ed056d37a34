"""The ``neural-hss`` command and the model recipes behind it (hssalg_nn.experiment)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from hssalg_nn import cli, load_checkpoint
from hssalg_nn.experiment import MODELS, train_model
from hssalg_nn.data import make_dataset


def test_train_nhss_linear_recovers_1d_poisson_and_writes_files(tmp_path, capsys):
    # the 1-D Dirichlet Poisson solution operator is exactly HSS of rank 2 (fact P2), so the
    # constructive fit from a few samples must be exact to rounding on fresh inputs (fact P6)
    out = tmp_path / "run"
    rc = cli.main(["train", "--pde", "poisson", "--dim", "1", "--grid", "64", "--samples", "16",
                   "--test-samples", "20", "--model", "nhss-linear", "--out", str(out), "-q"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "test error" in text and "parameters" in text
    summary = json.loads((out / "summary.json").read_text())
    for key in ("pde", "dim", "grid", "n_train", "n_test", "model", "n_params", "train_error",
                "test_error", "train_time_s", "details", "discretisation"):
        assert key in summary
    assert summary["model"] == "nhss-linear" and summary["n_train"] == 16
    assert summary["test_error"] <= 1e-9
    params, _, _ = load_checkpoint(out / "params.npz")
    # the saved parameters are the trained model: rebuild it and check it on independent data
    test = make_dataset("poisson", dim=1, grid=64, n_samples=5, seed=77)
    train = make_dataset("poisson", dim=1, grid=64, n_samples=16, seed=0)
    res = train_model("nhss-linear", train, test)
    pred = np.asarray(res["model"].apply(params, test.X))
    assert np.linalg.norm(pred - test.Y) <= 1e-9 * np.linalg.norm(test.Y)


def test_train_gradient_model_runs_and_reports(tmp_path, capsys):
    out = tmp_path / "fno"
    rc = cli.main(["train", "--pde", "poisson", "--dim", "2", "--grid", "8", "--samples", "4",
                   "--test-samples", "4", "--model", "fno", "--steps", "3", "--out", str(out), "-q"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "fno" and np.isfinite(summary["test_error"])
    assert summary["details"]["steps"] >= 3
    capsys.readouterr()


def test_train_too_few_samples_is_a_clear_error(capsys):
    rc = cli.main(["train", "--pde", "poisson", "--dim", "1", "--grid", "32", "--samples", "2",
                   "--test-samples", "3", "--model", "nhss-linear", "-q"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "nhss-linear needs at least" in err and "got 2" in err


@pytest.mark.parametrize("argv", [["train", "--model", "nope"], ["sweep", "--samples", "a,b"],
                                  ["sweep", "--models", "fno,unknown"], ["train", "--grid", "0"],
                                  ["train", "--pde", "no-such-pde"], ["train", "--option", "novalue"]])
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "usage: neural-hss" in capsys.readouterr().err


def test_sweep_tiny_writes_table_json_and_resumes(tmp_path, capsys):
    out = tmp_path / "sw"
    argv = ["sweep", "--pde", "poisson", "--dim", "1", "--grid", "16", "--samples", "1,8",
            "--models", "nhss-linear,lstsq", "--seeds", "2", "--test-samples", "5", "--out", str(out), "-q"]
    assert cli.main(argv) == 0
    data = json.loads((out / "results.json").read_text())
    runs = data["runs"]
    assert len(runs) == 2 * 2 * 2
    # one sample is too few for the exact HSS fit: recorded as skipped with the reason, not faked
    skipped = [r for r in runs if r.get("skipped")]
    assert {(r["model"], r["n_train"]) for r in skipped} == {("nhss-linear", 1)}
    table = (out / "table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| model | N = 1 | N = 8 |")
    nh = next(r for r in rows if r.startswith("| Neural-HSS, linear"))
    assert "n/a" in nh
    # the table's numbers are the means of the runs in results.json
    ls = [r["test_error"] for r in runs if r["model"] == "lstsq" and r["n_train"] == 8]
    assert f"{np.mean(ls):.2e}" in next(r for r in rows if r.startswith("| least squares"))
    capsys.readouterr()
    # a second call finds every run done: nothing is retrained, the results are unchanged
    assert cli.main(argv) == 0
    assert json.loads((out / "results.json").read_text())["runs"] == runs


def test_demo_arguments_and_tiny_run(capsys):
    args = cli.build_parser().parse_args(["demo"])
    assert (args.grid, args.samples, args.test_samples) == (32, 10, 200)
    assert cli.main(["demo", "--grid", "8", "--samples", "10", "--test-samples", "4", "--steps", "2",
                     "-q"]) == 0
    out = capsys.readouterr().out
    assert "Neural-HSS, linear" in out and "FNO" in out and "least squares" in out
    rows = [line for line in out.splitlines()
            if line.startswith("  ") and line.strip().startswith(("Neural-HSS", "FNO", "least squares"))]
    errors = [float(line.split()[-3]) for line in rows]
    assert len(errors) == 3 and all(np.isfinite(errors))


def test_every_model_name_is_accepted_by_train_model():
    train = make_dataset("poisson", dim=1, grid=16, n_samples=8, seed=0)
    test = make_dataset("poisson", dim=1, grid=16, n_samples=3, seed=1)
    for name in MODELS:
        res = train_model(name, train, test, steps=2, rank=2)
        assert res["name"] == name and np.isfinite(res["test_error"]) and res["n_params"] >= 0


def test_python_dash_m_runs_the_command():
    proc = subprocess.run([sys.executable, "-m", "hssalg_nn", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0
    assert "usage: neural-hss" in proc.stdout and "sweep" in proc.stdout


def test_train_seed_must_not_be_the_test_stream(capsys):
    rc = cli.main(["train", "--pde", "poisson", "--dim", "1", "--grid", "16", "--samples", "8",
                   "--test-samples", "3", "--model", "lstsq", "--seed", str(cli.TEST_SEED), "-q"])
    assert rc == 2
    assert "stream of the test set" in capsys.readouterr().err


def test_sweep_table_counts_only_the_requested_seeds(tmp_path, capsys):
    out = tmp_path / "sw"
    base = ["sweep", "--pde", "poisson", "--dim", "1", "--grid", "16", "--samples", "6",
            "--models", "lstsq", "--test-samples", "4", "--out", str(out), "-q"]
    assert cli.main(base + ["--seeds", "3"]) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    # resumed with fewer seeds: the table is the mean over seeds 0 and 1 only, not "…"
    assert cli.main(base + ["--seeds", "2"]) == 0
    table = (out / "table.md").read_text()
    two = np.mean([r["test_error"] for r in runs if r["seed"] in (0, 1)])
    assert f"{two:.2e}" in table
    assert "poisson" in table.splitlines()[2].lower()      # the discretisation line is there
    capsys.readouterr()


def test_unsymmetric_linear_problem_is_refused_by_nhss_linear():
    train = make_dataset("poisson_mixed", dim=1, grid=16, n_samples=12, seed=0)
    test = make_dataset("poisson_mixed", dim=1, grid=16, n_samples=3, seed=1)
    with pytest.raises(ValueError, match="not symmetric"):
        train_model("nhss-linear", train, test)


def test_train_and_test_sets_of_different_problems_are_refused():
    a = make_dataset("poisson", dim=1, grid=16, n_samples=4, seed=0)
    b = make_dataset("heat", dim=1, grid=16, n_samples=4, seed=1)
    with pytest.raises(ValueError, match="same problem: their pde differ"):
        train_model("lstsq", a, b)
