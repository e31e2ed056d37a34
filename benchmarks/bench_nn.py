"""HSSLinear forward and forward+backward against a dense linear layer, both under autograd.

Run:  python benchmarks/bench_nn.py [--threads 1] [--max-log2n 18] [--repeat 7] [--clock wall|cpu] [--malloc keep|default]

For n = 2^12 ... 2^min(max, 18), batch 32, rank 16, leaf 64 (random init):
the median time of the layer's forward product ``layer.apply(params, X)`` and of
forward+backward (``autograd.grad`` of <G, layer.apply(params, X)> with respect to
all generator buffers), their ratio, forward+backward when the gradient with
respect to the input X is wanted too (a hidden layer of a model: one more
transposed product), the hssalg matvec ``H @ X.T`` of the exported
matrix as a reference, and the same two timings for a dense linear layer
(``autograd.numpy`` matmul, gradient with respect to the n x n weight) where
n <= 2^13, with the dense/HSS ratios. Targets (issue 5): forward+backward <= 4x
forward; >= 50x faster than dense at n = 2^13; <= 15 ms forward and <= 45 ms
forward+backward at n = 2^16.

``--threads 2`` runs the layer's sweeps on two numba threads (subtrees in
parallel) and the dense layer on two BLAS threads, and pauses 0.5 s after each
dense measurement, so that OpenBLAS's spinning threads are not timed as part of
the next HSS product (see the comment there).

``--malloc keep`` (the default) first calls ``hssalg_nn.keep_freed_memory()``,
as ``hssalg_nn.fit`` does: glibc then keeps large freed blocks for the next call
instead of unmapping them, so a repeated product does not fault in fresh pages.
``--malloc default`` leaves malloc's settings alone.

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
_known = _extra.parse_known_args()[0]
CLOCK, MALLOC = _known.clock, _known.malloc

import numpy as np                 # noqa: E402  (thread counts are pinned first)
import autograd.numpy as anp       # noqa: E402
from autograd import grad          # noqa: E402

import hssalg as hs                # noqa: E402
from hssalg_nn import keep_freed_memory  # noqa: E402
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


def main():
    kept = MALLOC == "keep" and keep_freed_memory()
    print(f"# bench_nn\n\n{_common.machine_line(args.threads)}\n")
    print(f"HSSLinear, batch {BATCH}, rank {RANK}, leaf {LEAF}; medians of {args.repeat} runs after a warm-up "
          f"({CLOCK} clock); malloc keeps freed blocks: {'yes' if kept else 'no'} (--malloc {MALLOC})\n")
    rng = np.random.default_rng(0)
    rows = []
    compile_s = None
    for log2n in range(12, min(args.max_log2n, 18) + 1):
        n = 2**log2n
        layer = HSSLinear(hs.ClusterTree.balanced(n, LEAF), RANK)
        params = layer.init(seed=0)
        X = rng.standard_normal((BATCH, n))
        G = rng.standard_normal((BATCH, n))
        loss_grad = grad(lambda p: anp.sum(layer.apply(p, X) * G))
        loss_grad_x = grad(lambda px: anp.sum(layer.apply(px[0], px[1]) * G))
        if compile_s is None:
            compile_s = _common.first_call_time(lambda: loss_grad(params))
        t_f = median_time(lambda: layer.apply(params, X), args.repeat)
        t_fb = median_time(lambda: loss_grad(params), args.repeat)
        t_fbx = median_time(lambda: loss_grad_x((params, X)), args.repeat)
        H = layer.to_hss(params)
        XT = np.ascontiguousarray(X.T)
        t_mv = median_time(lambda: H @ XT, args.repeat)
        d_f = d_fb = None
        if log2n <= DENSE_MAX_LOG2N:
            Wd = rng.standard_normal((n, n)) / np.sqrt(n)
            dense_grad = grad(lambda W: anp.sum(anp.dot(X, W.T) * G))
            d_f = median_time(lambda: anp.dot(X, Wd.T), args.repeat)
            d_fb = median_time(lambda: dense_grad(Wd), args.repeat)
            del Wd
            if args.threads > 1:
                # OpenBLAS's threads spin for about 0.1 s after a call before they sleep; on a
                # machine with as many cores as threads they would take a core from the next
                # size's HSS products (measured: a forward at n = 2^14 on 2 threads took
                # 7 ms right after a 2-thread dense product, 3 ms from 0.1 s on)
                time.sleep(0.5)
        rows.append([n, f"{t_f * 1e3:.2f}", f"{t_fb * 1e3:.2f}", f"{t_fb / t_f:.2f}", f"{t_fbx * 1e3:.2f}",
                     f"{t_mv * 1e3:.2f}",
                     f"{d_f * 1e3:.1f}" if d_f else "", f"{d_fb * 1e3:.1f}" if d_fb else "",
                     f"{d_f / t_f:.1f}x" if d_f else "", f"{d_fb / t_fb:.1f}x" if d_fb else "",
                     int(layer.n_params)])
    print(f"first forward+backward in this process (numba cache load or compile): {compile_s:.2f} s\n")
    _common.table(["n", "HSS fwd ms", "HSS fwd+bwd ms", "fwd+bwd / fwd", "fwd+bwd incl. dX ms", "hssalg H@X ms",
                   "dense fwd ms", "dense fwd+bwd ms", "dense/HSS fwd", "dense/HSS fwd+bwd", "params"], rows)


if __name__ == "__main__":
    main()
