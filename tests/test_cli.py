"""The ``hssalg`` command: ``hssalg.cli.main(argv)`` and ``python -m hssalg``."""

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import hssalg as hs
from hssalg import cli
from conftest import NOJIT

# tiny sizes: the demo's products run in pure Python under NUMBA_DISABLE_JIT
N = 120 if NOJIT else 300
TINY = ["demo", "-n", str(N), "--leaf-size", "16", "--repeat", "1", "-q"]
REPORT_KEYS = ["dense matrix", "HSS build", "ranks", "memory", "matvec, 1 vector",
               "matvec, 16 vectors", "error vs exact product", "kernel load/compile"]


def _report(text):
    """The report's ``key  value`` lines as a dict (the header line is left out)."""
    found = {}
    for line in text.splitlines()[1:]:
        key, sep, val = line.strip().partition("  ")
        assert sep, f"not a report line: {line!r}"
        found[key] = val.strip()
    return found


def test_demo_runs_and_prints_the_report(capsys):
    assert cli.main(TINY) == 0
    out, err = capsys.readouterr()
    assert err == ""                                  # -q: no progress on stderr
    assert out.startswith(f"hssalg {hs.__version__} demo: 1-D kernel")
    assert f"on {N} random points" in out.splitlines()[0]
    report = _report(out)
    assert list(report) == REPORT_KEYS
    assert report["dense matrix"].startswith(f"{N} x {N}")
    assert int(re.match(r"max (\d+)", report["ranks"]).group(1)) > 0
    m = re.match(r"([0-9.e+-]+) \(1 vector\), ([0-9.e+-]+) \(16 vectors\)",
                 report["error vs exact product"])
    assert m, report["error vs exact product"]
    assert float(m.group(1)) <= 1e-6 and float(m.group(2)) <= 1e-6   # rtol 1e-8 by default
    assert "rtol was 1e-08" in report["error vs exact product"]


def test_demo_progress_goes_to_stderr(capsys):
    assert cli.main(TINY[:-1]) == 0                   # without -q
    out, err = capsys.readouterr()
    assert "... forming the dense kernel matrix" in err
    assert "... timing products" in err
    assert "..." not in out


@pytest.mark.parametrize("kernel", sorted(cli.KERNELS))
def test_demo_function_each_kernel(kernel):
    buf = io.StringIO()
    res = cli.demo(n=N, leaf_size=16, rtol=1e-8, kernel=kernel, repeat=1, quiet=True, out=buf)
    assert res["n"] == N
    assert res["max_rank"] > 0
    assert 0 < res["nbytes"] < res["dense_nbytes"] == N * N * 8
    assert res["error1"] <= 1e-6 and res["error16"] <= 1e-6
    for key in ("build_s", "matvec1_s", "matvec16_s", "dense1_s", "dense16_s"):
        assert res[key] >= 0
    assert cli.KERNELS[kernel][0] in buf.getvalue()


@pytest.mark.parametrize("kernel", sorted(cli.KERNELS))
def test_demo_kernel_option(kernel, capsys):
    assert cli.main(TINY + ["--kernel", kernel, "--rtol", "1e-6", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert cli.KERNELS[kernel][0] in out
    assert "rtol was 1e-06" in out


def test_demo_rtol_controls_error():
    loose = cli.demo(n=N, leaf_size=16, rtol=1e-3, repeat=1, quiet=True, out=io.StringIO())
    tight = cli.demo(n=N, leaf_size=16, rtol=1e-10, repeat=1, quiet=True, out=io.StringIO())
    assert tight["error1"] <= 1e-8
    assert loose["error1"] <= 1e-1
    assert loose["max_rank"] <= tight["max_rank"]


@pytest.mark.parametrize("argv, name", [
    (["demo", "--rtol", "2"], "--rtol"),
    (["demo", "--rtol", "-0.1"], "--rtol"),
    (["demo", "--rtol", "abc"], "--rtol"),
    (["demo", "-n", "0"], "-n"),
    (["demo", "-n", "-5"], "-n"),
    (["demo", "-n", "1.5"], "-n"),
    (["demo", "--leaf-size", "0"], "--leaf-size"),
    (["demo", "--repeat", "0"], "--repeat"),
    (["demo", "--kernel", "nope"], "--kernel"),
    (["nope"], "COMMAND"),
    (["demo", "--bogus"], "--bogus"),
])
def test_bad_arguments_are_rejected(argv, name, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "error:" in err and name in err
    assert err.startswith("usage: hssalg")


def test_no_command_prints_help_and_returns_2(capsys):
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: hssalg")
    assert "demo" in out


def test_demo_help(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--n", "--leaf-size", "--rtol", "--kernel", "--seed", "--repeat", "--quiet"):
        assert opt in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"hssalg {hs.__version__}"


def test_python_m_hssalg_subprocess():
    # run from the source tree's parent so the subprocess imports the same hssalg as this test
    root = Path(hs.__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root)] + [p for p in [env.get("PYTHONPATH")] if p])
    n = 100 if NOJIT else 200
    proc = subprocess.run(
        [sys.executable, "-m", "hssalg", "demo", "-n", str(n), "--leaf-size", "16", "--repeat", "1", "-q"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "... " not in proc.stderr                  # -q: no progress lines (warnings may appear)
    assert f"on {n} random points" in proc.stdout
    assert list(_report(proc.stdout)) == REPORT_KEYS


def test_python_m_hssalg_no_command_exits_2():
    root = Path(hs.__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root)] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, "-m", "hssalg"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout.startswith("usage: hssalg")


def test_demo_above_dense_max_uses_the_exact_on_the_fly_product(monkeypatch):
    # at the default n = 65,536 the dense matrix (32 GiB) is never formed; same path, small n
    monkeypatch.setattr(cli, "DENSE_MAX", 100)
    buf = io.StringIO()
    res = cli.demo(n=300, leaf_size=16, rtol=1e-8, repeat=1, quiet=True, out=buf)
    assert res["baseline"] == "exact on-the-fly"
    assert res["error1"] <= 1e-6 and res["error16"] <= 1e-6
    text = buf.getvalue()
    assert "not formed" in text and "vs exact on-the-fly" in text
