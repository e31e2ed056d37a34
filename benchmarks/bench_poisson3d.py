"""3-D Poisson from at most 20 samples: Neural-HSS (linear) against least squares, 32^3 ... 128^3.

Run:  python benchmarks/bench_poisson3d.py [--grids 32,64] [--samples 20] [--test-samples 100]
                                            [--leaf-size 8] [--rank 16] [--finetune 20]

For every grid g (n = g^3 unknowns; the paper's headline is 128^3 = 2,097,152):

* data: ``make_dataset("poisson", dim=3)`` -- random-field right-hand sides, exact
  discrete solutions by the sine transform; time to generate the training and
  test sets;
* Neural-HSS, linear (``hssalg_nn.experiment.train_model("nhss-linear")``): the
  constructive fit with cross-validated rank and L-BFGS refinement; training
  time and mean relative L2 test error;
* the baseline in the same run, the minimum-norm least-squares operator, applied
  in factored form ``X_test X^+ Y`` (its n x n matrix would need 512 GiB at 64^3);
* one epoch of gradient training of the same layer (Adam, minibatches of 10, the
  ``fit`` loop) -- the cost per epoch of training by gradient at that size;
* peak resident memory of the process so far (``ru_maxrss``), and the bytes of
  the trained generators.

Everything runs on the threads pinned by ``--threads`` (default 1).
"""

import _common
import argparse
import resource
import sys
import time

args = _common.setup(__doc__.splitlines()[0])
p = argparse.ArgumentParser()
p.add_argument("--grids", default="32,64", help="comma-separated grid sizes (default 32,64; 128 is the headline)")
p.add_argument("--samples", type=int, default=20, help="training samples (default 20)")
p.add_argument("--test-samples", type=int, default=100, help="test samples (default 100)")
p.add_argument("--leaf-size", type=int, default=8, help="leaf size (default 8: 2 x 2 x 2 points)")
p.add_argument("--rank", type=int, default=16, help="largest rank the selection may pick (default 16)")
p.add_argument("--finetune", type=int, default=20, help="L-BFGS refinement iterations (default 20)")
p.add_argument("--folds", type=int, default=4, help="cross-validation folds of the rank selection (default 4)")
p.add_argument("--fixed", default=None, metavar="K,RCOND",
               help="skip the cross-validation: fit at rank K with cutoff RCOND (for the largest grids)")
opts, _ = p.parse_known_args()

import numpy as np                              # noqa: E402  (thread counts are pinned first)

from hssalg_nn import HSSLinear, fit, fit_linear_exact   # noqa: E402
from hssalg_nn.data import make_dataset         # noqa: E402
from hssalg_nn.experiment import test_error, train_model   # noqa: E402


def peak_rss_gib():
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def least_squares_error(X, Y, Xt, Yt):
    """Test error of A = Y^T (X^T)^+ without forming A: predictions Xt X^+ Y."""
    U, s, Vt = np.linalg.svd(X, full_matrices=False)          # X = U S V^T, (N, n)
    keep = s > s[0] * max(X.shape) * np.finfo(float).eps
    # Xt X^+ = Xt V S^-1 U^T
    C = (Xt @ Vt[keep].T) / s[keep]
    P = (C @ U[:, keep].T) @ Y
    return float(np.mean(np.linalg.norm(P - Yt, axis=1) / np.linalg.norm(Yt, axis=1)))


def main():
    print(f"# bench_poisson3d\n\n{_common.machine_line(args.threads)}\n")
    print(f"3-D Poisson, {opts.samples} training and {opts.test_samples} test samples; leaf {opts.leaf_size}, "
          f"ranks up to {opts.rank} ({opts.folds}-fold cross-validation), L-BFGS refinement "
          f"{opts.finetune} iterations\n")
    head = ("| grid | n | data (s) | NHSS fit (s) | rank, cutoff | NHSS test error | LSQ test error | LSQ / NHSS "
            "| Adam epoch (s) | generators (MiB) | peak RSS (GiB) |")
    print(head)
    print("|" + "---|" * 11)
    for g in [int(t) for t in opts.grids.split(",")]:
        t0 = time.perf_counter()
        train = make_dataset("poisson", dim=3, grid=g, n_samples=opts.samples, seed=0)
        test = make_dataset("poisson", dim=3, grid=g, n_samples=opts.test_samples, seed=1_000_003)
        t_data = time.perf_counter() - t0
        if opts.fixed:
            k, rc = opts.fixed.split(",")
            k, rc = int(k), float(rc)
            t1 = time.perf_counter()
            tree = train.tree(opts.leaf_size)
            H = fit_linear_exact(train.X, train.Y, tree, k, sym_tol=np.inf, rcond=rc)
            model = HSSLinear(tree, k, symmetric=True)
            params = model.init_from_hss(H)
            del H
            if opts.finetune:
                params, _ = fit(model, params, train.X, train.Y, epochs=opts.finetune, optimizer="lbfgs",
                                loss="relative_mse", progress=False)
            res = {"model": model, "params": params, "train_time": time.perf_counter() - t1,
                   "test_error": test_error(model, params, test.X, test.Y),
                   "details": {"rank": k, "rcond": rc}}
        else:
            res = train_model("nhss-linear", train, test, rank=opts.rank, leaf_size=opts.leaf_size,
                              finetune=opts.finetune, folds=opts.folds, progress=False)
        e_ls = least_squares_error(train.X, train.Y, test.X, test.Y)
        model, params = res["model"], res["params"]
        t0 = time.perf_counter()
        fit(model, params, train.X, train.Y, epochs=1, batch_size=10, lr=1e-6, progress=False)
        t_epoch = time.perf_counter() - t0
        gen_mib = sum(np.asarray(v).nbytes for v in params.values()) / 2**20
        e_nh = res["test_error"]
        assert abs(e_nh - test_error(model, params, test.X, test.Y)) <= 1e-12 * max(e_nh, 1.0)
        print(f"| {g}^3 | {train.n} | {t_data:.1f} | {res['train_time']:.1f} | {res['details']['rank']}, {res['details']['rcond']:g} "
              f"| {e_nh:.2e} | {e_ls:.2e} | {e_ls / e_nh:.1f} | {t_epoch:.2f} | {gen_mib:.0f} "
              f"| {peak_rss_gib():.2f} |", flush=True)
        del train, test, res, model, params
    return 0


if __name__ == "__main__":
    sys.exit(main())
