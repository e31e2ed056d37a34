"""ULV and Cholesky-ULV factor / solve against dense LU and Cholesky (scipy) on the same matrices.

Run:  python benchmarks/bench_solve.py [--threads 1] [--max-log2n 20] [--max-dense-log2n 14]

Table 1: poisson1d_green_hss(n).shift(1.0) (HSS rank 2, leaf 64) at n = 2^12 ... 2^max:
median times of H.factorize(), F.solve(b), H.factorize(spd=True) and its solve;
scipy.linalg.lu_factor / lu_solve and cho_factor / cho_solve on the same dense
matrix (poisson1d_green(n) + I) for n <= 2^max-dense; the ratios; the growth of
the factor times per doubling of n; the backward error of the ULV solve,
||H x - b|| / (||H||_F ||x||).
Table 2: the 1-D kernel matrix 1 / (1 + |i - j|) (toeplitz_inverse_distance,
symmetric positive definite) compressed by from_dense at rtol 1e-6, leaf 64, for
n <= 2^max-dense, the same columns plus the max rank and the relative distance
of the HSS solution from the dense one (which includes the compression error).
Dense baselines are timed once per n from 2^13 on (they take minutes there).
"""

import _common

args = _common.setup(__doc__.splitlines()[0])

import argparse               # noqa: E402

import numpy as np            # noqa: E402  (thread counts are pinned first)
import scipy.linalg as sla    # noqa: E402

import hssalg as hs           # noqa: E402

_extra = argparse.ArgumentParser()
_extra.add_argument("--max-dense-log2n", type=int, default=14)
MAX_DENSE = _extra.parse_known_args()[0].max_dense_log2n


def shifted(H, sigma):
    """H + sigma I: H.shift where hssalg.arithmetic provides it, else through the generators."""
    try:
        return H.shift(sigma)
    except (AttributeError, ImportError):
        g = H.generators()
        g["D"] = [None if d is None else d + sigma * np.eye(d.shape[0]) for d in g["D"]]
        return hs.HSSMatrix.from_generators(H.tree, **g)


def dense_times(A, b, n):
    """Median times of lu_factor, lu_solve, cho_factor, cho_solve (once each from 2^13 on)."""
    reps = 3 if n < 2**13 else 1
    warm = 1 if n < 2**13 else 0
    hold = {}

    def lu():
        hold["lu"] = sla.lu_factor(A, check_finite=False)

    def cho():
        hold["cho"] = sla.cho_factor(A, check_finite=False)

    t_lu = _common.median_time(lu, repeat=reps, warmup=warm)
    t_lus = _common.median_time(lambda: sla.lu_solve(hold["lu"], b, check_finite=False), repeat=args.repeat)
    t_ch = _common.median_time(cho, repeat=reps, warmup=warm)
    t_chs = _common.median_time(lambda: sla.cho_solve(hold["cho"], b, check_finite=False), repeat=args.repeat)
    x_dense = sla.lu_solve(hold["lu"], b, check_finite=False)
    return t_lu, t_lus, t_ch, t_chs, x_dense


def hss_times(H, b):
    hold = {}

    def ulv():
        hold["F"] = H.factorize()

    def chol():
        hold["C"] = H.factorize(spd=True)

    t_f = _common.median_time(ulv, repeat=args.repeat)
    F = hold["F"]
    t_s = _common.median_time(lambda: F.solve(b), repeat=args.repeat)
    t_c = _common.median_time(chol, repeat=args.repeat)
    C = hold["C"]
    t_cs = _common.median_time(lambda: C.solve(b), repeat=args.repeat)
    x = F.solve(b)
    return t_f, t_s, t_c, t_cs, x


def fro_norm(H):
    # ||H||_F^2 = sum of ||H e_j||^2 would be O(n^2); the trace estimate with 8 Gaussian
    # probes is enough for a backward-error column
    Z = np.random.default_rng(1).standard_normal((H.shape[0], 8))
    return np.linalg.norm(H @ Z) / np.sqrt(8)


def run(label, sizes, make, dense_of, with_error):
    rows = []
    prev = None
    for n in sizes:
        H = make(n)
        b = np.random.default_rng(0).standard_normal(n)
        t_f, t_s, t_c, t_cs, x = hss_times(H, b)
        berr = np.linalg.norm(H @ x - b) / (fro_norm(H) * np.linalg.norm(x))
        dense = ""
        row = [n, H.max_rank, f"{t_f * 1e3:.1f}", f"{t_s * 1e3:.2f}", f"{t_c * 1e3:.1f}", f"{t_cs * 1e3:.2f}"]
        if n <= 2**MAX_DENSE:
            A = dense_of(n)
            t_lu, t_lus, t_ch, t_chs, x_dense = dense_times(A, b, n)
            del A
            dense = [f"{t_lu:.2f}", f"{t_lus * 1e3:.2f}", f"{t_ch:.2f}", f"{t_chs * 1e3:.2f}",
                     f"{t_lu / t_f:.0f}x", f"{t_ch / t_c:.0f}x", f"{t_lus / t_s:.1f}x"]
            fwd = np.linalg.norm(x - x_dense) / np.linalg.norm(x_dense)
        else:
            dense = [""] * 7
            fwd = None
        growth = f"{t_f / prev[0]:.2f} / {t_c / prev[1]:.2f}" if prev else ""
        prev = (t_f, t_c)
        row += dense + [growth, f"{berr:.1e}"]
        if with_error:
            row.append(f"{fwd:.1e}" if fwd is not None else "")
        rows.append(row)
        print(f"  done n = {n}", flush=True)
    header = ["n", "max rank", "ULV factor ms", "ULV solve ms", "Chol-ULV factor ms", "Chol-ULV solve ms",
              "lu_factor s", "lu_solve ms", "cho_factor s", "cho_solve ms", "LU / ULV", "cho / Chol-ULV",
              "lu_solve / ULV solve", "growth per 2x n (ULV / Chol)", "backward error"]
    if with_error:
        header.append("|x - x_dense| / |x_dense|")
    print(f"\n## {label}\n")
    _common.table(header, rows)


def main():
    print(f"# bench_solve\n\n{_common.machine_line(args.threads)}\n")
    H = shifted(hs.gallery.poisson1d_green_hss(4096), 1.0)
    t_first = _common.first_call_time(lambda: H.factorize().solve(np.ones(4096)))
    t_first_c = _common.first_call_time(lambda: H.factorize(spd=True).solve(np.ones(4096)))
    print(f"first ULV factor + solve in this process (numba cache load or compile): {t_first:.2f} s, "
          f"Cholesky-ULV: {t_first_c:.2f} s\n", flush=True)

    def green_dense(n):
        A = hs.gallery.poisson1d_green(n)
        A[np.diag_indices_from(A)] += 1.0
        return A

    run("poisson1d_green_hss(n).shift(1.0), leaf 64 (HSS rank 2)", [2**p for p in range(12, args.max_log2n + 1)],
        lambda n: shifted(hs.gallery.poisson1d_green_hss(n, leaf_size=64), 1.0), green_dense, False)

    cache = {}

    def kernel_hss(n):
        cache[n] = hs.gallery.toeplitz_inverse_distance(n)
        return hs.HSSMatrix.from_dense(cache[n], leaf_size=64, rtol=1e-6)

    run("1 / (1 + |i - j|) compressed by from_dense (rtol 1e-6, leaf 64)",
        [2**p for p in range(12, min(args.max_log2n, MAX_DENSE) + 1)], kernel_hss, lambda n: cache.pop(n), True)


if __name__ == "__main__":
    main()
