"""Precondition GMRES and CG on a dense kernel system with a low-accuracy HSS factorisation.

The system is kernel ridge regression on scattered points in the unit square,

    (K + lam I) x = b,   K[i, j] = exp(-|p_i - p_j| / ell)   (exponential kernel),

solved with the *dense* matrix as the operator (so the answer is the exact
one), once without a preconditioner and then with the inverse of a cheap HSS
approximation of K + lam I: compressed at a loose tolerance, factorised, and
handed to scipy as ``F.aslinearoperator()``. GMRES takes the general ULV
factorisation; CG needs a symmetric positive definite preconditioner and takes
Cholesky-ULV, which refuses (with the node where it failed) an approximation
too loose to stay positive definite.

Run:  python docs/examples/precondition_gmres.py [n]
"""

import sys
import time

import numpy as np
from scipy.sparse.linalg import LinearOperator, cg, gmres

import hssalg as hs


class Counter:
    """Counts the iterations a scipy Krylov solver reports through its callback."""

    def __init__(self):
        self.n = 0

    def __call__(self, _):
        self.n += 1


def solve(method, A, b, M=None):
    count = Counter()
    t0 = time.perf_counter()
    if method == "gmres":
        x, info = gmres(A, b, M=M, rtol=1e-10, atol=0.0, restart=50, maxiter=2000,
                        callback=count, callback_type="pr_norm")
    else:
        x, info = cg(A, b, M=M, rtol=1e-10, atol=0.0, maxiter=20000, callback=count)
    return x, info, count.n, time.perf_counter() - t0


def main(n=4096, ell=0.2, lam=1e-2, seed=0):
    rng = np.random.default_rng(seed)
    pts = rng.random((n, 2))
    kernel = hs.kernels.Exponential(ell, shift=lam)
    K = kernel.matrix(pts)                              # dense reference system, n x n
    b = rng.standard_normal(n)
    A = LinearOperator(K.shape, matvec=lambda v: K @ v, dtype=K.dtype)
    print(f"exponential kernel, length {ell}, lambda {lam}, {n} random points in the unit square")
    print(f"dense matrix: {K.nbytes / 2**20:.0f} MiB\n")
    rows = []
    plans = {"gmres": (False, (1e-1, 1e-2, 1e-3)), "cg": (True, (1e-2, 1e-3, 1e-4))}
    for method, (spd, tolerances) in plans.items():
        x, info, its, t = solve(method, A, b)
        res = np.linalg.norm(K @ x - b) / np.linalg.norm(b)
        rows.append((method, "none", "", "", its, f"{t:.2f}", f"{res:.1e}", info))
        for rtol in tolerances:
            name = f"{'Cholesky-ULV' if spd else 'ULV'}, rtol {rtol:g}"
            t0 = time.perf_counter()
            H = hs.HSSMatrix.from_kernel(kernel, pts, leaf_size=64, rtol=rtol)
            try:
                F = H.factorize(spd=spd)
            except np.linalg.LinAlgError as err:
                rows.append((method, name, f"{H.max_rank}", "", "-", "-", "-", "refused: " + str(err)[:48]))
                continue
            t_pre = time.perf_counter() - t0
            x, info, its, t = solve(method, A, b, M=F.aslinearoperator())
            res = np.linalg.norm(K @ x - b) / np.linalg.norm(b)
            rows.append((method, name, f"{H.max_rank}", f"{t_pre:.2f}", its, f"{t:.2f}", f"{res:.1e}", info))
    header = ("solver", "preconditioner", "max rank", "build+factor s", "iterations", "solve s",
              "residual", "info")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4096)
