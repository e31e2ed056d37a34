"""The ``hssalg`` command (also ``python -m hssalg``).

``hssalg demo`` compresses a 1-D kernel matrix with ``HSSMatrix.from_kernel``
(never forming it) and reports what HSS buys: build time, ranks, memory and
matvec time against dense, and the error of the fast product against the
exact one.
"""

import argparse
import sys
import time

import numpy as np

from ._timing import median_time

# a dense matrix is formed for the comparison only up to this size (2 GiB)
DENSE_MAX = 16384

KERNELS = {
    # name: (description, kernel for n points)
    "inverse-multiquadric": ("1 / sqrt((x - y)^2 + c^2), c = 1/n",
                             lambda n: _kernels().InverseMultiquadric(1.0 / n)),
    "gaussian": ("exp(-(x - y)^2 / (2 h^2)), h = 0.01", lambda n: _kernels().Gaussian(0.01)),
    "matern": ("Matern-3/2, length 0.1", lambda n: _kernels().Matern(1.5, 0.1)),
}


def _kernels():
    from . import kernels
    return kernels


def _step(msg, quiet):
    if not quiet:
        sys.stderr.write(f"... {msg}\n")
        sys.stderr.flush()


def _bandwidth():
    """Bytes per second of a large ``np.add`` (two arrays read, one written)."""
    a = np.ones(2**24)
    b = np.ones(2**24)
    c = np.empty_like(a)
    return 3 * a.nbytes / median_time(lambda: np.add(a, b, out=c), repeat=3)


def demo(n=65536, leaf_size=64, rtol=1e-8, kernel="inverse-multiquadric", seed=0, repeat=7,
         quiet=False, out=None):
    """Run the demo and print its report; returns a dict of the measured figures.

    Up to ``DENSE_MAX`` points the dense kernel matrix is formed and its numpy
    products are the baseline. Above, it would not fit in memory (n = 65,536
    needs 32 GiB): the baseline is then the exact product with the kernel
    evaluated on the fly (``Kernel.matmat``), and the report adds the time a
    stored dense matrix would need just to be read once at the measured
    memory bandwidth.
    """
    import hssalg as hs

    out = out if out is not None else sys.stdout
    desc, make = KERNELS[kernel]
    k = make(n)
    rng = np.random.default_rng(seed)
    x = rng.random(n)                                   # points in the caller's (random) order
    print(f"hssalg {hs.__version__} demo: 1-D kernel {desc} on {n} random points in [0, 1]", file=out)
    dense_bytes = n * n * 8

    # a small build first loads (or, on a first run, compiles) the numba kernels of the
    # construction, so that the timed build below measures the algorithm only
    t0 = time.perf_counter()
    small = np.random.default_rng(seed + 1).random(min(n, 4 * leaf_size + 3))
    hs.HSSMatrix.from_kernel(k, small, leaf_size=leaf_size, rtol=rtol, seed=seed)
    t_compile_build = time.perf_counter() - t0
    _step(f"compressing with from_kernel (rtol {rtol:g}, leaf size {leaf_size})", quiet)
    t0 = time.perf_counter()
    H = hs.HSSMatrix.from_kernel(k, x, leaf_size=leaf_size, rtol=rtol, seed=seed, progress=not quiet)
    t_build = time.perf_counter() - t0

    v1 = rng.standard_normal(n)
    V16 = rng.standard_normal((n, 16))
    if n <= DENSE_MAX:
        _step("forming the dense kernel matrix (the baseline)", quiet)
        t0 = time.perf_counter()
        A = k.matrix(x)
        t_form = time.perf_counter() - t0
        dense_line = f"{n} x {n}, {dense_bytes / 2**20:.1f} MiB, formed in {t_form:.2f} s"
        exact1, exact16 = A @ v1, A @ V16
    else:
        _step("exact products with the kernel evaluated on the fly (the baseline)", quiet)
        t0 = time.perf_counter()
        exact1 = k.matmat(x, v1)
        t_d1 = time.perf_counter() - t0
        t0 = time.perf_counter()
        exact16 = k.matmat(x, V16)
        t_d16 = time.perf_counter() - t0
        bw = _bandwidth()
        dense_line = (f"{n} x {n} would take {dense_bytes / 2**30:.1f} GiB: not formed; a stored copy "
                      f"would need >= {dense_bytes / bw * 1e3:.0f} ms per product just to be read "
                      f"({bw / 1e9:.0f} GB/s measured)")
    base_name = "dense" if n <= DENSE_MAX else "exact on-the-fly"
    _step("timing products (first call loads or compiles the numba kernels)", quiet)
    t0 = time.perf_counter()
    H @ v1
    H @ V16
    t_first = time.perf_counter() - t0
    t_h1 = median_time(lambda: H @ v1, repeat, warmup=0)
    t_h16 = median_time(lambda: H @ V16, repeat, warmup=0)
    if n <= DENSE_MAX:
        t_d1 = median_time(lambda: A @ v1, repeat, warmup=1)
        t_d16 = median_time(lambda: A @ V16, repeat, warmup=1)
    err1 = np.linalg.norm(H @ v1 - exact1) / np.linalg.norm(exact1)
    err16 = np.linalg.norm(H @ V16 - exact16) / np.linalg.norm(exact16)

    ranks = H.ranks[1:]
    tree = H.tree
    leaf_ranks = H.ranks[tree.leaves] if tree.n_nodes > 1 else np.zeros(1, int)
    mib = 2.0**20
    lines = [
        ("dense matrix", dense_line),
        ("HSS build", f"{t_build:.2f} s (from_kernel, depth {tree.depth}, {tree.n_nodes} nodes)"),
        ("ranks", f"max {H.max_rank}, mean over nodes {ranks.mean() if ranks.size else 0:.1f}, "
                  f"mean over leaves {leaf_ranks.mean():.1f}"),
        ("memory", f"{H.nbytes / mib:.2f} MiB = {100 * H.nbytes / dense_bytes:.2f}% of dense "
                   f"({dense_bytes / H.nbytes:.0f}x smaller)"),
        ("matvec, 1 vector", f"{t_h1 * 1e3:.3f} ms vs {base_name} {t_d1 * 1e3:.3f} ms "
                             f"({t_d1 / t_h1:.0f}x faster)"),
        ("matvec, 16 vectors", f"{t_h16 * 1e3:.3f} ms vs {base_name} {t_d16 * 1e3:.3f} ms "
                               f"({t_d16 / t_h16:.0f}x faster)"),
        ("error vs exact product", f"{err1:.2e} (1 vector), {err16:.2e} (16 vectors), "
                                   f"relative 2-norm; rtol was {rtol:g}; the build estimated "
                                   f"{H.info.error_estimate:.1e}"),
        ("kernel load/compile", f"{t_compile_build:.2f} s (construction) + {t_first:.2f} s (products) "
                                f"on first calls, not in the times above"),
    ]
    width = max(len(key) for key, _ in lines)
    for key, val in lines:
        print(f"  {key:<{width}}  {val}", file=out)
    return {"n": n, "build_s": t_build, "max_rank": H.max_rank, "nbytes": H.nbytes,
            "dense_nbytes": dense_bytes, "matvec1_s": t_h1, "matvec16_s": t_h16,
            "dense1_s": t_d1, "dense16_s": t_d16, "baseline": base_name,
            "error1": err1, "error16": err16, "error_estimate": H.info.error_estimate}


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
                       description="Compress a 1-D kernel matrix on random points with from_kernel and "
                                   "report build time, ranks, memory and matvec time against dense, "
                                   "and the error against the exact product.")
    d.add_argument("-n", "--n", type=_positive_int, default=65536,
                   help=f"number of points (default 65536; the dense matrix is formed up to {DENSE_MAX})")
    d.add_argument("--leaf-size", type=_positive_int, default=64, help="leaf size (default 64)")
    d.add_argument("--rtol", type=_tolerance, default=1e-8, help="relative tolerance (default 1e-8)")
    d.add_argument("--kernel", choices=sorted(KERNELS), default="inverse-multiquadric",
                   help="kernel (default inverse-multiquadric)")
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
