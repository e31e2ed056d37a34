"""HSS addition and multiplication followed by recompression, against dense numpy.

Run:  python benchmarks/bench_arith.py [--threads 1] [--max-log2n 18] [--repeat 7]

For n = 2^12 ... 2^max, leaf size 64, two pairs of operands on one balanced tree:
random_hss rank 16 (seeds 0 and 1: the sum and the product have exact rank 32)
and poisson1d_green_hss (rank 2) with itself (G + G has rank 4 before and 2 after
recompression, G @ G has rank 4 = 2 x the half bandwidth of its inverse).
Table 1: ``H + G`` and ``recompress(rtol=1e-8)`` of the sum; table 2: ``H @ G``
and its recompression. Columns: the median time of each step and of both,
numpy's ``A + B`` / ``A @ B`` on the dense matrices (n <= 2^13; the dense
product is timed fewer times, it takes seconds), their ratio, time growth per
doubling of n (linear complexity: 2.0), max rank before and after
recompression, and the relative error of the recompressed result measured by
products with 4 random vectors against the exact operands, ||(R - op(H, G)) X||_F
/ ||op(H, G) X||_F (no dense matrix needed). The HSS functions are pure
Python/LAPACK (no numba compilation to report).
"""

import _common

args = _common.setup(__doc__.splitlines()[0])

import numpy as np            # noqa: E402  (thread counts are pinned first)

import hssalg as hs           # noqa: E402

RTOL = 1e-8
DENSE_MAX = 2**13


def operands(kind, n):
    tree = hs.ClusterTree.balanced(n, 64)
    if kind == "random_hss k=16":
        return hs.gallery.random_hss(tree, 16, seed=0), hs.gallery.random_hss(tree, 16, seed=1)
    G = hs.gallery.poisson1d_green_hss(n, tree=tree)
    return G, G


def run(op_name, op, dense_op, exact_apply):
    rows = []
    for kind in ("random_hss k=16", "poisson1d_green_hss"):
        prev = None
        for log2n in range(12, args.max_log2n + 1):
            n = 2**log2n
            H, G = operands(kind, n)
            holder = {}

            def do_op():
                holder["S"] = op(H, G)

            t_op = _common.median_time(do_op, repeat=args.repeat)
            S = holder["S"]

            def do_rec():
                holder["R"] = S.recompress(rtol=RTOL)

            # recompression costs ~100x the operation: fewer repetitions at large n
            t_rec = _common.median_time(do_rec, repeat=args.repeat if n <= 2**14 else 3)
            R = holder["R"]
            total = t_op + t_rec
            td = None
            if n <= DENSE_MAX:
                A, B = H.todense(), G.todense()
                slow = op_name == "multiply"
                td = _common.median_time(lambda: dense_op(A, B), repeat=3 if slow else args.repeat,
                                         warmup=0 if slow else 1)
                del A, B
            X = np.random.default_rng(0).standard_normal((n, 4))
            Y = exact_apply(H, G, X)
            err = np.linalg.norm(R @ X - Y) / np.linalg.norm(Y)
            rows.append([kind, n, f"{t_op * 1e3:.1f}", f"{t_rec * 1e3:.0f}", f"{total * 1e3:.0f}",
                         f"{td * 1e3:.0f}" if td is not None else "",
                         f"{td / total:.1f}x" if td is not None else "",
                         f"{total / prev:.2f}" if prev else "", f"{S.max_rank} -> {R.max_rank}",
                         f"{err:.1e}"])
            prev = total
    return rows


def main():
    print(f"# bench_arith\n\n{_common.machine_line(args.threads)}\n")
    header = ["matrix", "n", "{op} ms", "recompress ms", "total ms", "dense {dop} ms",
              "dense / total", "growth per 2x n", "max rank", "rel. error"]

    print(f"## H + G, then recompress(rtol={RTOL:g})\n")
    rows = run("add", lambda H, G: H + G, lambda A, B: A + B,
               lambda H, G, X: H @ X + G @ X)
    _common.table([h.format(op="add", dop="A + B") for h in header], rows)

    print(f"\n## H @ G, then recompress(rtol={RTOL:g})\n")
    rows = run("multiply", lambda H, G: H @ G, lambda A, B: A @ B,
               lambda H, G, X: H @ (G @ X))
    _common.table([h.format(op="multiply", dop="A @ B") for h in header], rows)


if __name__ == "__main__":
    main()
