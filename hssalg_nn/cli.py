"""The ``neural-hss`` command (also ``python -m hssalg_nn``).

``neural-hss train``
    Generate a PDE dataset, train one model, write its parameters
    (``params.npz``, see :func:`hssalg_nn.save_checkpoint`) and a JSON summary.
``neural-hss sweep``
    The low-data table: test error against the number of training samples for
    several models and seeds, as Markdown, JSON and a PNG plot.
``neural-hss demo``
    About two minutes on two cores: Neural-HSS and FNO (and the least-squares
    operator) learn the 2-D Poisson solution operator from 10 samples.

Every model is trained by :func:`hssalg_nn.experiment.train_model`, so the
command line and the documentation tables are the same experiment.
"""

import argparse
import json
import os
import re
import sys
import time

import numpy as np

from hssalg._progress import Progress

__all__ = ["main", "build_parser", "sweep", "demo"]

TEST_SEED = 1_000_003          # the test set of every run: one stream no training seed uses
DEFAULT_SAMPLES = (1, 2, 5, 10, 20, 50, 100)
DEFAULT_MODELS = ("nhss-linear", "nhss", "fno", "deeponet", "cnn", "lstsq")

LABELS = {"nhss-linear": "Neural-HSS, linear", "nhss": "Neural-HSS, nonlinear", "fno": "FNO",
          "deeponet": "DeepONet", "cnn": "CNN (ResNet)", "lstsq": "least squares (dense)",
          "oracle": "HSS oracle"}


def _say(msg, quiet):
    if not quiet:
        sys.stderr.write(f"... {msg}\n")
        sys.stderr.flush()


def _check_seed(seed):
    if seed == TEST_SEED:
        raise ValueError(f"seed {TEST_SEED} is the stream of the test set; a training seed must differ "
                         "from it, or the model would be tested on its training data")


def _datasets(pde, dim, grid, n_train, n_test, seed, options):
    from .data import make_dataset
    _check_seed(seed)
    train = make_dataset(pde, dim=dim, grid=grid, n_samples=n_train, seed=seed, **options)
    test = make_dataset(pde, dim=dim, grid=grid, n_samples=n_test, seed=TEST_SEED, **options)
    return train, test


def _json_ready(obj):
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _summary(res, pde, dim, grid, n_train, n_test, seed, options, describe):
    return _json_ready({
        "pde": pde, "dim": dim, "grid": grid, "options": options, "discretisation": describe,
        "n_train": n_train, "n_test": n_test, "seed": seed, "model": res["name"],
        "n_params": res["n_params"], "train_error": res["train_error"],
        "test_error": res["test_error"], "train_time_s": res["train_time"], "details": res["details"]})


# -- train ------------------------------------------------------------------------------------

def train(pde, dim, grid, samples, model, test_samples=200, seed=0, out=None, options=None,
          quiet=False, **train_opts):
    """Train one model; write ``params.npz`` and ``summary.json`` into ``out``; return the summary."""
    from .experiment import train_model
    from .train import save_checkpoint

    options = dict(options or {})
    _say(f"generating {samples} training and {test_samples} test samples of {pde} ({dim}-D, grid {grid})",
         quiet)
    tr, te = _datasets(pde, dim, grid, samples, test_samples, seed, options)
    _say(f"training {model} on {tr.X.shape[1]} unknowns", quiet)
    res = train_model(model, tr, te, seed=seed, progress=None if not quiet else False, **train_opts)
    summary = _summary(res, pde, dim, grid, samples, test_samples, seed, options, tr.describe())
    if out is not None:
        os.makedirs(out, exist_ok=True)
        save_checkpoint(os.path.join(out, "params.npz"), res["params"])
        with open(os.path.join(out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
    print(f"{LABELS.get(model, model)} on {pde} {dim}-D, grid {grid} (n = {tr.X.shape[1]}), "
          f"{samples} training samples")
    # from res, not the JSON summary: a diverged model's nan is None there
    print(f"  parameters        {res['n_params']}")
    print(f"  train error       {res['train_error']:.3e}")
    print(f"  test error        {res['test_error']:.3e}   (mean relative L2, {test_samples} samples)")
    print(f"  training time     {res['train_time']:.2f} s")
    if out is not None:
        print(f"  written           {os.path.join(out, 'params.npz')}, {os.path.join(out, 'summary.json')}")
    return summary


# -- sweep ------------------------------------------------------------------------------------

def _table(runs, models, samples, seeds):
    """Markdown table: mean test error over seeds, model x N, and mean training time.

    Only runs of ``seeds`` count. A cell is the mean over all seeds, "n/a" when
    the model could not be built (skipped), "diverged" when a run's error is
    not finite, and "…" while runs are missing.
    """
    runs = [r for r in runs if r["seed"] in seeds]
    head = "| model | " + " | ".join(f"N = {n}" for n in samples) + " | train time (s) |"
    lines = [head, "|" + "---|" * (len(samples) + 2)]
    for m in models:
        cells, times = [], []
        for n in samples:
            errs = [r["test_error"] for r in runs if r["model"] == m and r["n_train"] == n
                    and r.get("test_error") is not None]
            skipped = [r for r in runs if r["model"] == m and r["n_train"] == n and r.get("skipped")]
            failed = [r for r in runs if r["model"] == m and r["n_train"] == n and not r.get("skipped")
                      and r.get("test_error") is None]
            times += [r["train_time_s"] for r in runs if r["model"] == m and r["n_train"] == n
                      and r.get("train_time_s") is not None]
            if len(errs) == len(seeds):
                cells.append(f"{np.mean(errs):.2e}")
            elif skipped:
                cells.append("n/a")
            elif failed:
                cells.append("diverged")
            else:
                cells.append("…")
        t = f"{np.mean(times):.2f}" if times else "–"
        lines.append(f"| {LABELS.get(m, m)} | " + " | ".join(cells) + f" | {t} |")
    return "\n".join(lines) + "\n"


def _plot(runs, models, samples, seeds, path, title):
    runs = [r for r in runs if r["seed"] in seeds]
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for m in models:
        xs, ys = [], []
        for n in samples:
            errs = [r["test_error"] for r in runs if r["model"] == m and r["n_train"] == n
                    and r.get("test_error") is not None]
            if errs:
                xs.append(n)
                ys.append(np.mean(errs))
        if xs:
            ax.loglog(xs, ys, "o-", label=LABELS.get(m, m))
    ax.set_xlabel("training samples N")
    ax.set_ylabel("relative L2 test error (mean over seeds)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def sweep(pde, dim, grid, samples=DEFAULT_SAMPLES, models=DEFAULT_MODELS, seeds=(0, 1, 2),
          test_samples=200, out="sweep", options=None, resume=True, quiet=False, **train_opts):
    """Run the low-data table; writes ``results.json``, ``table.md`` and ``errors.png`` into ``out``.

    Training sets are nested: for a seed, the N-sample set is the first N
    samples of one set of ``max(samples)``. ``results.json`` is rewritten
    after every run, and with ``resume`` the runs already in it are kept, so
    an interrupted sweep continues where it stopped. Returns the list of runs.
    """
    from .experiment import train_model

    options = dict(options or {})
    for s in seeds:
        _check_seed(s)
    samples = sorted(set(int(n) for n in samples))
    os.makedirs(out, exist_ok=True)
    res_path = os.path.join(out, "results.json")
    config = {"pde": pde, "dim": dim, "grid": grid, "options": options, "test_samples": test_samples,
              "train_opts": train_opts}
    runs = []
    if resume and os.path.exists(res_path):
        with open(res_path) as f:
            old = json.load(f)
        if old.get("config") == _json_ready(config):
            runs = old["runs"]
    done = {(r["model"], r["n_train"], r["seed"]) for r in runs}
    todo = [(s, n, m) for s in seeds for n in samples for m in models if (m, n, s) not in done]
    test = None
    bar = Progress(len(todo), f"sweep {pde} {dim}-D", enabled=not quiet and bool(todo))
    from .data import make_dataset
    # the discretisation, without the sample count and seed of this (empty) set
    describe = re.sub(r", \d+ samples? from seed \d+$", "",
                      make_dataset(pde, dim=dim, grid=grid, n_samples=0, seed=0, **options).describe())
    for s in seeds:
        mine = [(n, m) for (s_, n, m) in todo if s_ == s]
        if not mine:
            continue
        full = make_dataset(pde, dim=dim, grid=grid, n_samples=max(samples), seed=s, **options)
        if test is None:
            test = make_dataset(pde, dim=dim, grid=grid, n_samples=test_samples, seed=TEST_SEED, **options)
        for n, m in mine:
            tr = full[:n]
            try:
                res = train_model(m, tr, test, seed=s, progress=False, **train_opts)
            except ValueError as exc:
                # e.g. nhss-linear below the sample count of rank 1, the oracle on a nonlinear PDE
                runs.append({"model": m, "n_train": n, "seed": s, "skipped": str(exc)})
            else:
                runs.append(_summary(res, pde, dim, grid, n, test_samples, s, options, describe))
            bar.update(1, note=f"{m}, N={n}, seed {s}")
            with open(res_path, "w") as f:
                json.dump({"config": _json_ready(config), "runs": _json_ready(runs)}, f, indent=1)
    bar.close()
    title = f"{pde}, {dim}-D, grid {grid}"
    table = _table(runs, models, samples, seeds)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(f"### {title}\n\n{describe}\n\nMean relative L2 test error on {test_samples} test samples, "
                f"mean over seeds {list(seeds)}; n/a: the model cannot be built from so few samples "
                "(see results.json).\n\n")
        f.write(table)
    plotted = _plot(runs, models, samples, seeds, os.path.join(out, "errors.png"), title)
    print(f"### {title}\n")
    print(table)
    print(f"written: {res_path}, {os.path.join(out, 'table.md')}"
          + (f", {os.path.join(out, 'errors.png')}" if plotted else " (no plot: matplotlib is not installed)"))
    return runs


# -- demo -------------------------------------------------------------------------------------

def demo(grid=32, samples=10, test_samples=200, steps=500, seed=0, quiet=False):
    """Neural-HSS against FNO and least squares on 2-D Poisson from ``samples`` samples."""
    from .experiment import train_model

    t0 = time.perf_counter()
    _say(f"2-D Poisson, {grid} x {grid} grid: {samples} training and {test_samples} test samples", quiet)
    tr, te = _datasets("poisson", 2, grid, samples, test_samples, seed, {})
    results = []
    for m in ("nhss-linear", "fno", "lstsq"):
        _say(f"training {LABELS[m]}", quiet)
        results.append(train_model(m, tr, te, seed=seed, steps=steps, progress=None if not quiet else False))
    print(f"neural-hss demo: learn the solution operator of -Δu = f (2-D, Dirichlet, {grid} x {grid} grid)")
    print(f"from {samples} random-field right-hand sides; error on {test_samples} new ones\n")
    print(f"  {'model':24s} {'test error':>11s} {'parameters':>11s} {'training':>10s}")
    for r in results:
        print(f"  {LABELS[r['name']]:24s} {r['test_error']:11.3e} {r['n_params']:11d} {r['train_time']:9.1f}s")
    print()
    nh = results[0]
    for other in results[1:]:
        verdict = "lower" if nh["test_error"] < other["test_error"] else "NOT lower"
        print(f"Neural-HSS's test error is {verdict} than {LABELS[other['name']]}'s "
              f"(ratio {other['test_error'] / nh['test_error']:.2f})")
    print(f"Neural-HSS: HSS rank {nh['details']['rank']} and cutoff {nh['details']['rcond']:g}, chosen by "
          "cross-validation on the training samples")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return results


# -- argument parsing ---------------------------------------------------------------------------

def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _int_list(text):
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return values


def _model_list(text):
    from .experiment import MODELS
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in names if t not in MODELS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"expected comma-separated models from {', '.join(MODELS)}, got {text!r}")
    return names


def _option(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _problem_args(p, grid_default):
    from .data import PDES
    p.add_argument("--pde", choices=PDES, default="poisson", help="the PDE (default poisson)")
    p.add_argument("--dim", type=int, choices=(1, 2, 3), default=2, help="space dimension (default 2)")
    p.add_argument("--grid", type=_positive_int, default=grid_default,
                   help=f"interior grid points per dimension (default {grid_default})")
    p.add_argument("--test-samples", type=_positive_int, default=200, help="test samples (default 200)")
    p.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="PDE option passed to hssalg_nn.data.make_dataset (repeatable), e.g. kappa=5")


def _train_args(p):
    from .experiment import DEFAULTS
    p.add_argument("--rank", type=_positive_int, default=None,
                   help=f"HSS rank (nhss, oracle) or the largest rank nhss-linear may select "
                        f"(default {DEFAULTS['rank']})")
    p.add_argument("--leaf-size", type=_positive_int, default=None,
                   help=f"leaf size of the HSS trees (default {DEFAULTS['leaf_size']})")
    p.add_argument("--steps", type=_positive_int, default=None,
                   help=f"Adam steps of the gradient-trained models (default {DEFAULTS['steps']})")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help=f"Adam minibatch size (default {DEFAULTS['batch_size']})")
    p.add_argument("--lr", type=float, default=None, help=f"Adam step size (default {DEFAULTS['lr']})")


def build_parser():
    from importlib.metadata import PackageNotFoundError, version
    try:
        ver = version("hssalg")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        ver = "unknown"
    from .experiment import MODELS

    parser = argparse.ArgumentParser(
        prog="neural-hss", description="Neural-HSS PDE solvers: train, compare with baselines, reproduce.")
    parser.add_argument("--version", action="version", version=f"neural-hss (hssalg {ver})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train one model on one PDE dataset",
                       description="Generate data, train one model, write params.npz and summary.json.")
    _problem_args(t, 32)
    t.add_argument("--samples", type=_positive_int, default=10, help="training samples (default 10)")
    t.add_argument("--model", choices=MODELS, default="nhss-linear", help="model (default nhss-linear)")
    _train_args(t)
    t.add_argument("--seed", type=int, default=0, help="seed of the training data and the model (default 0)")
    t.add_argument("--out", default=None, help="directory for params.npz and summary.json (default: none)")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress output on stderr")

    s = sub.add_parser("sweep", help="test error against training samples, for several models",
                       description="The low-data table of docs/reproduction.md for one PDE: writes "
                                   "results.json, table.md and errors.png; resumes an interrupted run.")
    _problem_args(s, 32)
    s.add_argument("--samples", type=_int_list, default=list(DEFAULT_SAMPLES),
                   help="comma-separated training-set sizes (default 1,2,5,10,20,50,100)")
    s.add_argument("--models", type=_model_list, default=list(DEFAULT_MODELS),
                   help=f"comma-separated models (default {','.join(DEFAULT_MODELS)})")
    s.add_argument("--seeds", type=_positive_int, default=3, help="number of seeds, 0..S-1 (default 3)")
    _train_args(s)
    s.add_argument("--out", default=None, help="output directory (default sweep-<pde>-<dim>d-<grid>)")
    s.add_argument("--no-resume", action="store_true", help="start over even if results.json exists")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress output on stderr")

    d = sub.add_parser("demo", help="Neural-HSS vs FNO on 2-D Poisson from 10 samples (about 2 minutes)",
                       description="Train Neural-HSS, FNO and the least-squares operator on 2-D Poisson "
                                   "from a few samples and print their test errors.")
    d.add_argument("--grid", type=_positive_int, default=32, help="grid points per dimension (default 32)")
    d.add_argument("--samples", type=_positive_int, default=10, help="training samples (default 10)")
    d.add_argument("--test-samples", type=_positive_int, default=200, help="test samples (default 200)")
    d.add_argument("--steps", type=_positive_int, default=500, help="FNO's Adam steps (default 500)")
    d.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress output on stderr")
    return parser


def _train_opts(args):
    names = {"rank": "rank", "leaf_size": "leaf_size", "steps": "steps", "batch_size": "batch_size", "lr": "lr"}
    return {k: getattr(args, a) for a, k in names.items() if getattr(args, a) is not None}


def main(argv=None):
    """Entry point of the ``neural-hss`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "train":
            train(args.pde, args.dim, args.grid, args.samples, args.model, test_samples=args.test_samples,
                  seed=args.seed, out=args.out, options=dict(args.option), quiet=args.quiet,
                  **_train_opts(args))
        elif args.command == "sweep":
            out = args.out or f"sweep-{args.pde}-{args.dim}d-{args.grid}"
            sweep(args.pde, args.dim, args.grid, samples=args.samples, models=args.models,
                  seeds=tuple(range(args.seeds)), test_samples=args.test_samples, out=out,
                  options=dict(args.option), resume=not args.no_resume, quiet=args.quiet,
                  **_train_opts(args))
        elif args.command == "demo":
            demo(grid=args.grid, samples=args.samples, test_samples=args.test_samples, steps=args.steps,
                 seed=args.seed, quiet=args.quiet)
    except ValueError as exc:
        # bad combinations the parser cannot see (dimension of a PDE, too few samples, ...)
        print(f"neural-hss {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0
