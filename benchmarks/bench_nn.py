"""HSSLinear forward and forward+backward against a dense linear layer, both under autograd.

Run:  python benchmarks/bench_nn.py [--threads 1] [--max-log2n 18] [--repeat 7] [--rounds 3]
                                    [--backward vjp|loss] [--dtype float64|float32]
                                    [--clock wall|cpu] [--malloc keep|default] [--plot FILE]

For n = 2^12 ... 2^min(max, 18), batch 32, rank 16, leaf 64 (random init):
the median time of the layer's forward product ``layer.apply(params, X)`` and of
forward+backward, their ratio, forward+backward when the gradient with respect to
the input X is wanted too (a hidden layer of a model: one more transposed
product), the hssalg matvec ``H @ X.T`` of the exported matrix as a reference,
and the same two timings for a dense linear layer (``autograd.numpy`` matmul,
gradient with respect to the n x n weight) where n <= 2^13, with the dense/HSS
ratios. Targets (issue 5): forward+backward <= 4x forward; >= 50x faster than
dense at n = 2^13; <= 15 ms forward and <= 45 ms forward+backward at n = 2^16.

A second table compares the layer with ``StackedHSSLinear``
(:mod:`hssalg_nn.baselines.stacked`): the same product written the
straightforward way, one autograd.numpy ``matmul`` per level on stacked blocks.
The issue sized its targets against such a version ("71 ms forward and 270 ms
forward+backward at n = 2^16 on a machine of this kind"); it is timed here at
every n, in the same rounds as the layer, and its output is checked against the
layer's (largest difference relative to the largest entry).

Forward+backward (``--backward vjp``, the default) is what backpropagation does
in one layer: the forward product, then the vector-Jacobian product of a given
cotangent G of the output (``autograd.make_vjp``), giving the gradients with
respect to all generator buffers (and to X in the "incl. dX" column).
``--backward loss`` times ``autograd.grad`` of the scalar <G, layer(X)> instead,
as tables before 2026-11-27 (eighth session) did: the same products plus the
elementwise product, the sum and their VJPs, which a network pays once per step
and not once per layer (about 0.8 ms on a 32 x 8192 batch here, for the HSS
and the dense layer alike).

The timings of a size are taken ``--rounds`` times in turn (HSS, then dense
where n <= 2^13, then stacked), and each baseline/HSS ratio is the median of
the rounds' ratios: on a shared machine a burst of load then falls on both
sides of a ratio rather than on one. The times reported are the medians over
the rounds; the rounds' ratios are printed under the tables (for the stacked
version at n = 2^16 only).

``--dtype float32`` runs the layer (``HSSLinear(..., dtype=float32)``), the batch,
the cotangent and the dense layer in single precision; the targets are for the
default, double precision.

``--threads 2`` runs the layer's sweeps on two numba threads (subtrees in
parallel) and the dense layer on two BLAS threads, and pauses 0.5 s after each
dense measurement, so that OpenBLAS's spinning threads are not timed as part of
the next HSS product (see the comment there).

``--malloc keep`` (the default) first calls ``hssalg_nn.keep_freed_memory()``,
as ``hssalg_nn.fit`` does: glibc then keeps large freed blocks for the next call
instead of unmapping them, so a repeated product does not fault in fresh pages.
``--malloc default`` leaves malloc's settings alone.

``--plot FILE`` also draws the medians against n on log-log axes (PNG; needs
matplotlib, the ``plot`` extra), with the targets at n = 2^16 marked.

``--clock cpu`` times with the CPU time of the calling thread instead of wall
time. With one thread everything measured runs on that thread, so on a machine
shared with other jobs this leaves out the time the process waits for a core
(it still includes what sharing caches and memory bandwidth costs).
"""

import argparse
import time

import _common

args = _common.setup(__doc__.splitlines()[0])
_extra = argparse.ArgumentParser()
_extra.add_argument("--clock", choices=["wall", "cpu"], default="wall")
_extra.add_argument("--malloc", choices=["keep", "default"], default="keep")
_extra.add_argument("--backward", choices=["vjp", "loss"], default="vjp")
_extra.add_argument("--rounds", type=int, default=3)
_extra.add_argument("--dtype", choices=["float64", "float32"], default="float64")
_extra.add_argument("--plot", metavar="FILE", default=None)
_known = _extra.parse_known_args()[0]
CLOCK, MALLOC, BACKWARD, ROUNDS = _known.clock, _known.malloc, _known.backward, max(1, _known.rounds)
DTYPE = _known.dtype
PLOT = _known.plot

import numpy as np                 # noqa: E402  (thread counts are pinned first)
import autograd.numpy as anp       # noqa: E402
from autograd import grad, make_vjp  # noqa: E402

import hssalg as hs                # noqa: E402
from hssalg_nn import keep_freed_memory  # noqa: E402
from hssalg_nn.baselines import StackedHSSLinear  # noqa: E402
from hssalg_nn.layers import HSSLinear   # noqa: E402

BATCH, RANK, LEAF = 32, 16, 64
DENSE_MAX_LOG2N = 13


def median_time(fn, repeat):
    """Median time of ``fn()`` after a warm-up call, on the clock chosen by ``--clock``."""
    if CLOCK == "wall":
        return _common.median_time(fn, repeat=repeat)
    if args.threads != 1:
        raise SystemExit("--clock cpu measures the calling thread only; use it with --threads 1")
    return _common.cpu_median_time(fn, repeat=repeat)


def forward_backward(f, G):
    """A function of x timing one forward+backward of ``f`` at x (see ``--backward``)."""
    if BACKWARD == "loss":
        return grad(lambda x: anp.sum(f(x) * G))

    def run(x):
        vjp, _ = make_vjp(f)(x)
        return vjp(G)
    return run


def pause_after_blas():
    if args.threads > 1:
        # OpenBLAS's threads spin for about 0.1 s after a call before they sleep; on a
        # machine with as many cores as threads they would take a core from the next
        # HSS product (measured: a forward at n = 2^14 on 2 threads took 7 ms right
        # after a 2-thread dense product, 3 ms from 0.1 s on)
        time.sleep(0.5)


def main():
    kept = MALLOC == "keep" and keep_freed_memory()
    print(f"# bench_nn\n\n{_common.machine_line(args.threads)}\n")
    print(f"HSSLinear, batch {BATCH}, rank {RANK}, leaf {LEAF}; medians of {args.repeat} runs after a warm-up "
          f"({CLOCK} clock); forward+backward: --backward {BACKWARD}; {ROUNDS} "
          f"round(s) per size; {DTYPE}; malloc keeps freed blocks: {'yes' if kept else 'no'} (--malloc {MALLOC})\n")
    rng = np.random.default_rng(0)
    rows = []
    stacked_rows = []
    round_ratios = []
    stacked_ratios = {}
    curves = {}   # label -> [(n, median seconds)], for --plot
    compile_s = None
    for log2n in range(12, min(args.max_log2n, 18) + 1):
        n = 2**log2n
        layer = HSSLinear(hs.ClusterTree.balanced(n, LEAF), RANK, dtype=DTYPE)
        params = layer.init(seed=0)
        X = rng.standard_normal((BATCH, n)).astype(DTYPE)
        G = rng.standard_normal((BATCH, n)).astype(DTYPE)
        hss_fb = forward_backward(lambda p: layer.apply(p, X), G)
        hss_fbx = forward_backward(lambda px: layer.apply(px[0], px[1]), G)
        stacked = StackedHSSLinear(layer)
        stacked_fb = forward_backward(lambda p: stacked.apply(p, X), G)
        Y_hss = layer.apply(params, X)
        diff = np.abs(stacked.apply(params, X) - Y_hss).max() / np.abs(Y_hss).max()
        del Y_hss
        if compile_s is None:
            compile_s = _common.first_call_time(lambda: hss_fb(params))
        with_dense = log2n <= DENSE_MAX_LOG2N
        if with_dense:
            Wd = (rng.standard_normal((n, n)) / np.sqrt(n)).astype(DTYPE)
            dense_fb = forward_backward(lambda W: anp.dot(X, W.T), G)
        runs = []
        for _ in range(ROUNDS):
            t = [median_time(lambda: layer.apply(params, X), args.repeat),
                 median_time(lambda: hss_fb(params), args.repeat)]
            if with_dense:
                t.append(median_time(lambda: anp.dot(X, Wd.T), args.repeat))
                t.append(median_time(lambda: dense_fb(Wd), args.repeat))
                pause_after_blas()
            t.append(median_time(lambda: stacked.apply(params, X), args.repeat))
            t.append(median_time(lambda: stacked_fb(params), args.repeat))
            pause_after_blas()
            runs.append(t)
        runs = np.array(runs)
        t_f, t_fb = np.median(runs[:, 0]), np.median(runs[:, 1])
        s_f, s_fb = runs[:, -2] / runs[:, 0], runs[:, -1] / runs[:, 1]
        stacked_ratios[n] = (s_f, s_fb)
        for col, label in enumerate(["HSS fwd", "HSS fwd+bwd"] + (["dense fwd", "dense fwd+bwd"] if with_dense else [])
                                    + ["stacked fwd", "stacked fwd+bwd"]):
            curves.setdefault(label, []).append((n, np.median(runs[:, col])))
        stacked_rows.append([n, f"{t_f * 1e3:.2f}", f"{t_fb * 1e3:.2f}", f"{np.median(runs[:, -2]) * 1e3:.2f}",
                             f"{np.median(runs[:, -1]) * 1e3:.2f}", f"{np.median(s_f):.2f}x",
                             f"{np.median(s_fb):.2f}x", f"{diff:.1e}"])
        t_fbx = median_time(lambda: hss_fbx((params, X)), args.repeat)
        H = layer.to_hss(params)
        XT = np.ascontiguousarray(X.T)
        t_mv = median_time(lambda: H @ XT, args.repeat)
        cells = ["", "", "", ""]
        if with_dense:
            del Wd
            r_f, r_fb = runs[:, 2] / runs[:, 0], runs[:, 3] / runs[:, 1]
            round_ratios.append((n, r_f, r_fb))
            cells = [f"{np.median(runs[:, 2]) * 1e3:.1f}", f"{np.median(runs[:, 3]) * 1e3:.1f}",
                     f"{np.median(r_f):.1f}x", f"{np.median(r_fb):.1f}x"]
        rows.append([n, f"{t_f * 1e3:.2f}", f"{t_fb * 1e3:.2f}", f"{t_fb / t_f:.2f}", f"{t_fbx * 1e3:.2f}",
                     f"{t_mv * 1e3:.2f}", *cells, int(layer.n_params)])
    print(f"first forward+backward in this process (numba cache load or compile): {compile_s:.2f} s\n")
    _common.table(["n", "HSS fwd ms", "HSS fwd+bwd ms", "fwd+bwd / fwd", "fwd+bwd incl. dX ms", "hssalg H@X ms",
                   "dense fwd ms", "dense fwd+bwd ms", "dense/HSS fwd", "dense/HSS fwd+bwd", "params"], rows)
    for n, r_f, r_fb in round_ratios:
        print(f"\ndense/HSS by round at n = {n}: fwd {', '.join(f'{r:.1f}x' for r in r_f)}; "
              f"fwd+bwd {', '.join(f'{r:.1f}x' for r in r_fb)}")
    print("\nAgainst the straightforward version (hssalg_nn.baselines.StackedHSSLinear: one autograd.numpy "
          "matmul per level on stacked blocks; issue 5 quotes 71 ms forward and 270 ms forward+backward "
          "at n = 65536):\n")
    _common.table(["n", "HSS fwd ms", "HSS fwd+bwd ms", "stacked fwd ms", "stacked fwd+bwd ms", "stacked/HSS fwd",
                   "stacked/HSS fwd+bwd", "max rel. diff"], stacked_rows)
    for n, (r_f, r_fb) in stacked_ratios.items():
        if n == 2**16:
            print(f"\nstacked/HSS by round at n = {n}: fwd {', '.join(f'{r:.2f}x' for r in r_f)}; "
                  f"fwd+bwd {', '.join(f'{r:.2f}x' for r in r_fb)}")
    if PLOT:
        plot(curves, PLOT)


def plot(curves, path):
    """Median times against n, log-log, with issue 5's targets at n = 2^16 marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"HSS": ("C0", "HSSLinear"), "stacked": ("C1", "stacked autograd.numpy"),
              "dense": ("C3", "dense layer")}
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for label, pts in curves.items():
        kind, what = label.split(" ", 1)
        color, name = styles[kind]
        n, t = zip(*pts)
        ax.loglog(n, np.array(t) * 1e3, color=color, marker="o", ms=4,
                  linestyle="-" if what == "fwd" else "--", label=f"{name}, {what}")
    ax.plot([2**16, 2**16], [15, 45], "kx", ms=9, mew=2, label="targets at n = 2^16 (15 / 45 ms)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("n")
    ax.set_ylabel("ms per call (median)")
    ax.set_title(f"batch {BATCH}, rank {RANK}, leaf {LEAF}, {DTYPE}, {args.threads} thread(s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
