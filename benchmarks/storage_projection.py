"""How much memory two other storage schemes would need for the same from_kernel builds.

Run:  python benchmarks/storage_projection.py [--threads 1]

hssalg stores orthonormal bases and, for symmetric kernels, U = V and R = W once,
but D and B21 whole. STRUMPACK and H2Pack keep *interpolative* bases
U = Pi [I; T] (only T and the skeleton indices), and H2Pack keeps one block of
every symmetric pair. This script builds the issue-4 problems with
``HSSMatrix.from_kernel`` (rtol 1e-6, leaf 64, seed 0), records the shapes of the
interpolation matrices the build makes before it orthonormalises them (by
wrapping the private ``_orthonormal_bases``), and counts, for the very same
skeletons and ranks:

- *now*: the bytes of the built matrix (``H.nbytes``);
- *symmetric D and B*: D as lower triangles, B21 not stored (it is B12ᵀ);
- *+ interpolative bases*: U and R replaced by the non-identity rows of every
  interpolation matrix, (rows - k) x k numbers, plus k skeleton indices (int64).

Neither scheme is implemented: these are the sizes they would have, not
measurements of code that exists.
"""

import _common

args = _common.setup(__doc__.splitlines()[0])

import numpy as np                   # noqa: E402  (thread counts are pinned first)

import hssalg as hs                  # noqa: E402
import hssalg._from_kernel as _fk    # noqa: E402
from hssalg import kernels           # noqa: E402

CASES = [("2-D Gaussian", 16384), ("2-D Gaussian", 65536), ("3-D Laplace", 8192), ("3-D Laplace", 16384)]


def main():
    print(f"# storage_projection\n\n{_common.machine_line(args.threads)}\n")
    shapes = {}
    orthonormalise = _fk._orthonormal_bases

    def recording(tree, interp):
        shapes["interp"] = [None if P is None else P.shape for P in interp]
        return orthonormalise(tree, interp)

    _fk._orthonormal_bases = recording
    try:
        print("| problem | n | max rank | now MB | symmetric D and B MB | + interpolative bases MB |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, n in CASES:
            rng = np.random.default_rng(0)
            if name.startswith("2-D"):
                kernel, points = kernels.Gaussian(0.1, shift=1.0), rng.random((n, 2))
            else:
                kernel, points = kernels.Laplace(), rng.random((n, 3))
            H = hs.HSSMatrix.from_kernel(kernel, points, leaf_size=64, rtol=1e-6, seed=0)
            bufs, _ = H.generator_buffers()
            if bufs["U"] is not bufs["V"]:
                raise SystemExit(f"{name}: expected shared bases for a symmetric kernel")
            tree = H.tree
            sizes = (tree.stop - tree.start)[tree.is_leaf]
            d_tri = int(np.sum(sizes * (sizes + 1) // 2)) * 8
            sym = H.nbytes - bufs["D"].nbytes + d_tri - bufs["B21"].nbytes
            interp = sum(((r - k) * k + k) * 8 for s in shapes["interp"] if s is not None for r, k in [s])
            sym_id = sym - bufs["U"].nbytes - bufs["R"].nbytes + interp
            print(f"| {name} | {n} | {H.max_rank} | {H.nbytes / 1e6:.1f} | {sym / 1e6:.1f} | {sym_id / 1e6:.1f} |",
                  flush=True)
    finally:
        _fk._orthonormal_bases = orthonormalise


if __name__ == "__main__":
    main()
