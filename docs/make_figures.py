"""Regenerate the figures of docs/primer.md.

Run from the repository root (needs matplotlib: ``pip install hssalg[plot]``)::

    python docs/make_figures.py

Writes docs/img/tree.png, docs/img/ranks.png and docs/img/ranks_gaussian.png.
"""

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import hssalg as hs  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "img"
DPI = 100


def save(ax, name):
    OUT.mkdir(exist_ok=True)
    ax.figure.savefig(OUT / name, dpi=DPI, bbox_inches="tight")
    plt.close(ax.figure)
    print("wrote", OUT / name)


def main():
    # a balanced cluster tree: 64 indices, leaves of 8
    save(hs.plot_tree(hs.ClusterTree.balanced(64, 8)), "tree.png")

    # the 1/(1 + |i - j|) Toeplitz matrix, compressed at rtol 1e-8
    A = hs.gallery.toeplitz_inverse_distance(1024)
    H = hs.HSSMatrix.from_dense(A, leaf_size=64, rtol=1e-8)
    save(hs.plot_ranks(H), "ranks.png")

    # a Gaussian kernel on 1024 random points of the unit square, geometric tree
    pts = np.random.default_rng(0).random((1024, 2))
    K = hs.gallery.gaussian_kernel_matrix(pts, 0.2)
    tree = hs.ClusterTree.from_points(pts, leaf_size=64)
    H = hs.HSSMatrix.from_dense(K, tree=tree, rtol=1e-8)
    save(hs.plot_ranks(H), "ranks_gaussian.png")


if __name__ == "__main__":
    main()
