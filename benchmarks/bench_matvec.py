"""HSS matvec against dense numpy and against the bytes-read bound; from_dense against LU.

Run:  python benchmarks/bench_matvec.py [--threads 1] [--max-log2n 20]

Table 1, for random_hss (rank 16, leaf 64) at n = 2^12 ... 2^max and 1 and 16
right-hand sides: the median HSS product time, the dense numpy product time
(n <= 2^14), the bytes-read bound (generator bytes / bandwidth measured here
with np.add), and their ratios; time growth per doubling of n; milliseconds
per MB of generators (comparable with other codes' per-byte speed).
Table 2: from_dense on toeplitz_inverse_distance(8192) at rtol 1e-8 against
scipy.linalg.lu_factor of the same matrix, in the same run.
"""

import _common

args = _common.setup(__doc__.splitlines()[0])

import numpy as np            # noqa: E402  (thread counts are pinned first)
import scipy.linalg as sla    # noqa: E402

import hssalg as hs           # noqa: E402


def main():
    print(f"# bench_matvec\n\n{_common.machine_line(args.threads)}\n")
    bw = _common.bandwidth()
    print(f"memory bandwidth (np.add, 2 reads + 1 write): {bw / 1e9:.1f} GB/s\n")
    rng = np.random.default_rng(0)
    rows = []
    prev = {}
    compile_s = None
    for log2n in range(12, args.max_log2n + 1):
        n = 2**log2n
        H = hs.gallery.random_hss(hs.ClusterTree.balanced(n, 64), 16, seed=0)
        bound = H.nbytes / bw
        A = H.todense() if n <= 2**14 else None
        for s in (1, 16):
            X = rng.standard_normal((n, s)) if s > 1 else rng.standard_normal(n)
            if compile_s is None:
                compile_s = _common.first_call_time(lambda: H @ X)
            t = _common.median_time(lambda: H @ X, repeat=args.repeat)
            td = _common.median_time(lambda: A @ X, repeat=args.repeat) if A is not None else None
            growth = f"{t / prev[s]:.2f}" if s in prev else ""
            prev[s] = t
            rows.append([n, s, f"{t * 1e3:.3f}", f"{td * 1e3:.2f}" if td else "",
                         f"{td / t:.0f}x" if td else "", f"{bound * 1e3:.3f}", f"{t / bound:.2f}",
                         growth, f"{t * 1e3 / (H.nbytes / 1e6):.4f}", f"{H.nbytes / 2**20:.1f}"])
        del A
    print(f"first HSS product in this process (numba cache load or compile): {compile_s:.2f} s\n")
    _common.table(["n", "rhs", "HSS ms", "dense ms", "dense/HSS", "bound ms", "HSS/bound",
                   "growth per 2x n", "ms per MB", "MiB"], rows)

    print("\n## from_dense against LU (toeplitz_inverse_distance(8192), rtol 1e-8, leaf 64)\n")
    A = hs.gallery.toeplitz_inverse_distance(8192)
    t_lu = _common.median_time(lambda: sla.lu_factor(A, check_finite=False), repeat=3, warmup=1)
    holder = {}

    def build():
        holder["H"] = hs.HSSMatrix.from_dense(A, leaf_size=64, rtol=1e-8)

    t_fd = _common.median_time(build, repeat=3, warmup=1)
    H = holder["H"]
    x = rng.standard_normal(8192)
    err = np.linalg.norm(H @ x - A @ x) / np.linalg.norm(A @ x)
    _common.table(["from_dense s", "lu_factor s", "LU / from_dense", "max rank", "MiB", "rel. error (matvec)"],
                  [[f"{t_fd:.2f}", f"{t_lu:.2f}", f"{t_lu / t_fd:.2f}x", H.max_rank,
                    f"{H.nbytes / 2**20:.1f}", f"{err:.1e}"]])


if __name__ == "__main__":
    main()
