"""Interpolative against orthonormal storage of the same from_kernel builds: memory, build and product time.

Run:  python benchmarks/bench_storage.py [--threads 1] [--repeat 7]

The problems of issue 4 (rtol 1e-6, leaf 64, seed 0): the 2-D Gaussian
kernel exp(-r^2 / (2 * 0.1^2)) + I on uniform points in the unit square at
n = 2^14 and 2^16, and the 3-D Laplace kernel 1/r on uniform points in the
unit cube at n = 2^13 and 2^14. Each is built twice in this process, with
``basis="interpolative"`` (the default: T of every P = Pi [I; T] and a row
order; D as packed triangles and no B21 for these symmetric kernels) and with
``basis="orthonormal"`` (the skeletons of the same IDs, orthonormalised;
U = V and R = W shared). Per form: generator MB (``H.nbytes``), build CPU
seconds (one build each, after a warm-up build at n = 2048; the process is
single-threaded, so CPU time is the reliable clock on a shared machine), the product time ``H @ X`` for 1 and 16
columns (median CPU time of --repeat calls after a warm-up), the Cholesky-ULV
factorisation ``H.factorize(spd=True)`` of the 2-D matrices (median of 3; it
reads the explicit form, which the interpolative matrix materialises for it),
and the relative difference of the two forms' products (both are the same
matrix up to rounding).
"""

import _common

args = _common.setup(__doc__.splitlines()[0])

import sys                           # noqa: E402

import numpy as np                   # noqa: E402  (thread counts are pinned first)

import hssalg as hs                  # noqa: E402
from hssalg import kernels           # noqa: E402

CASES = [("2-D Gaussian", 16384), ("2-D Gaussian", 65536), ("3-D Laplace", 8192), ("3-D Laplace", 16384)]


def main():
    print(f"# bench_storage\n\n{_common.machine_line(args.threads)}\n")
    rng = np.random.default_rng(1)
    # warm-up: the first build in a process loads (or compiles) the numba kernels
    for basis in ("interpolative", "orthonormal"):
        hs.HSSMatrix.from_kernel(kernels.Gaussian(0.1, shift=1.0), rng.random((2048, 2)), basis=basis) @ np.ones(2048)
    rows = []
    for name, n in CASES:
        prng = np.random.default_rng(0)
        if name.startswith("2-D"):
            kernel, points = kernels.Gaussian(0.1, shift=1.0), prng.random((n, 2))
        else:
            kernel, points = kernels.Laplace(), prng.random((n, 3))
        built = {}
        for basis in ("interpolative", "orthonormal"):
            H = hs.HSSMatrix.from_kernel(kernel, points, leaf_size=64, rtol=1e-6, seed=0, basis=basis)
            built[basis] = (H, H.info.cpu_time_build)
        X1, X16 = rng.standard_normal(n), rng.standard_normal((n, 16))
        # the Cholesky-ULV of the 2-D matrices (SPD: +I on the diagonal); the 3-D Laplace
        # matrix with zero diagonal is not definite
        factor = name.startswith("2-D")
        (Hi, ti), (Ho, to) = built["interpolative"], built["orthonormal"]
        if not np.array_equal(Hi.row_ranks, Ho.row_ranks):
            raise SystemExit(f"{name} n = {n}: the two builds found different ranks")
        diff = float(np.linalg.norm(Hi @ X16 - Ho @ X16) / np.linalg.norm(Ho @ X16))
        p = {}
        for basis, (H, _) in built.items():
            p[basis] = (_common.cpu_median_time(lambda: H @ X1, args.repeat),
                        _common.cpu_median_time(lambda: H @ X16, args.repeat),
                        _common.cpu_median_time(lambda: H.factorize(spd=True), 3) if factor else None)
        rows.append([name, n, Hi.max_rank,
                     f"{Hi.nbytes / 1e6:.1f}", f"{Ho.nbytes / 1e6:.1f}", f"{Hi.nbytes / Ho.nbytes:.2f}",
                     f"{ti:.2f}", f"{to:.2f}",
                     f"{p['interpolative'][0] * 1e3:.2f}", f"{p['orthonormal'][0] * 1e3:.2f}",
                     f"{p['interpolative'][1] * 1e3:.1f}", f"{p['orthonormal'][1] * 1e3:.1f}",
                     f"{p['interpolative'][2]:.2f}" if factor else "", f"{p['orthonormal'][2]:.2f}" if factor else "",
                     f"{diff:.1e}"])
        print(f"  {name} n = {n}: {Hi.nbytes / 1e6:.1f} / {Ho.nbytes / 1e6:.1f} MB", flush=True, file=sys.stderr)
        del built, Hi, Ho
    _common.table(["problem", "n", "max rank", "interp. MB", "orthon. MB", "memory ratio",
                   "build s interp. (cpu)", "build s orthon. (cpu)",
                   "H @ x ms interp.", "H @ x ms orthon.", "H @ X16 ms interp.", "H @ X16 ms orthon.",
                   "factorize(spd) s interp.", "factorize(spd) s orthon.", "rel. difference"], rows)


if __name__ == "__main__":
    main()
