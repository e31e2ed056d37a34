"""The ``hssalg`` command (also ``python -m hssalg``).

``hssalg demo`` compresses a 1-D kernel matrix and reports what HSS buys:
build time, ranks, memory and matvec time against dense, and the error of the
fast product against the exact dense one.
"""

import argparse
import sys
import time

import numpy as np

from ._timing import median_time

KERNELS = {
    # name: (description, function of the distance matrix |x_i - x_j| and n)
    "inverse-distance": ("1 / (1 + n |x - y|)", lambda r, n: 1.0 / (1.0 + n * r)),
    "gaussian": ("exp(-(x - y)^2 / (2 h^2)), h = 0.05", lambda r, n: np.exp(-(r * r) / (2 * 0.05**2))),
    "log": ("log(1e-3 + |x - y|)", lambda r, n: np.log(1e-3 + r)),
}


def _step(msg, quiet):
    if not quiet:
        sys.stderr.write(f"... {msg}\n")
        sys.stderr.flush()


def demo(n=8192, leaf_size=64, rtol=1e-8, kernel="inverse-distance", seed=0, repeat=7,
         quiet=False, out=None):
    """Run the demo and print its report; returns a dict of the measured figures."""
    import hssalg as hs

    out = out if out is not None else sys.stdout
    desc, fn = KERNELS[kernel]
    rng = np.random.default_rng(seed)
    x = rng.random(n)                                   # points in the caller's (random) order
    print(f"hssalg {hs.__version__} demo: 1-D kernel {desc} on {n} random points in [0, 1]", file=out)

    _step("forming the dense kernel matrix (the reference)", quiet)
    t0 = time.perf_counter()
    A = fn(np.abs(x[:, None] - x[None, :]), n)
    t_dense = time.perf_counter() - t0
    dense_bytes = A.nbytes

    tree = hs.ClusterTree.from_points(x, leaf_size)
    _step(f"compressing with from_dense (rtol {rtol:g}, leaf size {leaf_size})", quiet)
    t0 = time.perf_counter()
    H = hs.HSSMatrix.from_dense(A, tree=tree, rtol=rtol, progress=not quiet)
    t_build = time.perf_counter() - t0

    _step("timing products (first call loads or compiles the numba kernels)", quiet)
    v1 = rng.standard_normal(n)
    V16 = rng.standard_normal((n, 16))
    t0 = time.perf_counter()
    H @ v1
    H @ V16
    t_first = time.perf_counter() - t0
    t_h1 = median_time(lambda: H @ v1, repeat, warmup=0)
    t_h16 = median_time(lambda: H @ V16, repeat, warmup=0)
    t_d1 = median_time(lambda: A @ v1, repeat, warmup=1)
    t_d16 = median_time(lambda: A @ V16, repeat, warmup=1)
    err1 = np.linalg.norm(H @ v1 - A @ v1) / np.linalg.norm(A @ v1)
    err16 = np.linalg.norm(H @ V16 - A @ V16) / np.linalg.norm(A @ V16)

    ranks = H.ranks[1:]
    leaf_ranks = H.ranks[tree.leaves] if tree.n_nodes > 1 else np.zeros(1, int)
    mib = 2.0**20
    lines = [
        ("dense matrix", f"{n} x {n}, {dense_bytes / mib:.1f} MiB, formed in {t_dense:.2f} s"),
        ("HSS build", f"{t_build:.2f} s (from_dense, depth {tree.depth}, {tree.n_nodes} nodes)"),
        ("ranks", f"max {H.max_rank}, mean over nodes {ranks.mean() if ranks.size else 0:.1f}, "
                  f"mean over leaves {leaf_ranks.mean():.1f}"),
        ("memory", f"{H.nbytes / mib:.2f} MiB = {100 * H.nbytes / dense_bytes:.2f}% of dense "
                   f"({dense_bytes / H.nbytes:.0f}x smaller)"),
        ("matvec, 1 vector", f"{t_h1 * 1e3:.3f} ms vs dense {t_d1 * 1e3:.3f} ms ({t_d1 / t_h1:.0f}x faster)"),
        ("matvec, 16 vectors", f"{t_h16 * 1e3:.3f} ms vs dense {t_d16 * 1e3:.3f} ms ({t_d16 / t_h16:.0f}x faster)"),
        ("error vs exact product", f"{err1:.2e} (1 vector), {err16:.2e} (16 vectors), "
                                   f"relative 2-norm; rtol was {rtol:g}"),
        ("kernel load/compile", f"{t_first:.2f} s on first call (not in the times above)"),
    ]
    width = max(len(k) for k, _ in lines)
    for key, val in lines:
        print(f"  {key:<{width}}  {val}", file=out)
    return {"n": n, "build_s": t_build, "max_rank": H.max_rank, "nbytes": H.nbytes,
            "dense_nbytes": dense_bytes, "matvec1_s": t_h1, "matvec16_s": t_h16,
            "dense1_s": t_d1, "dense16_s": t_d16, "error1": err1, "error16": err16}


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _tolerance(text):
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a tolerance in [0, 1], got {text}")
    return value


def build_parser():
    import hssalg as hs

    parser = argparse.ArgumentParser(
        prog="hssalg", description="Hierarchically semi-separable matrices: tools and demos.")
    parser.add_argument("--version", action="version", version=f"hssalg {hs.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    d = sub.add_parser("demo", help="compress a 1-D kernel matrix and compare with dense",
                       description="Compress a 1-D kernel matrix on random points and report build "
                                   "time, ranks, memory and matvec time against dense, and the error.")
    d.add_argument("-n", "--n", type=_positive_int, default=8192, help="number of points (default 8192)")
    d.add_argument("--leaf-size", type=_positive_int, default=64, help="leaf size (default 64)")
    d.add_argument("--rtol", type=_tolerance, default=1e-8, help="relative tolerance (default 1e-8)")
    d.add_argument("--kernel", choices=sorted(KERNELS), default="inverse-distance",
                   help="kernel (default inverse-distance)")
    d.add_argument("--seed", type=int, default=0, help="random seed of the points (default 0)")
    d.add_argument("--repeat", type=_positive_int, default=7, help="timing repetitions, median taken")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress output on stderr")
    return parser


def main(argv=None):
    """Entry point of the ``hssalg`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "demo":
        demo(n=args.n, leaf_size=args.leaf_size, rtol=args.rtol, kernel=args.kernel,
             seed=args.seed, repeat=args.repeat, quiet=args.quiet)
        return 0
    parser.error(f"unknown command {args.command}")  # pragma: no cover - argparse rejects first
    return 2
