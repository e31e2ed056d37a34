"""HSSLinear forward and forward+backward against a dense linear layer, both under autograd.

Run:  python benchmarks/bench_nn.py [--threads 1] [--max-log2n 18] [--repeat 7]

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
"""

import _common

args = _common.setup(__doc__.splitlines()[0])

import numpy as np                 # noqa: E402  (thread counts are pinned first)
import autograd.numpy as anp       # noqa: E402
from autograd import grad          # noqa: E402

import hssalg as hs                # noqa: E402
from hssalg_nn.layers import HSSLinear   # noqa: E402

BATCH, RANK, LEAF = 32, 16, 64
DENSE_MAX_LOG2N = 13


def main():
    print(f"# bench_nn\n\n{_common.machine_line(args.threads)}\n")
    print(f"HSSLinear, batch {BATCH}, rank {RANK}, leaf {LEAF}; medians of {args.repeat} runs after a warm-up\n")
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
        t_f = _common.median_time(lambda: layer.apply(params, X), repeat=args.repeat)
        t_fb = _common.median_time(lambda: loss_grad(params), repeat=args.repeat)
        t_fbx = _common.median_time(lambda: loss_grad_x((params, X)), repeat=args.repeat)
        H = layer.to_hss(params)
        XT = np.ascontiguousarray(X.T)
        t_mv = _common.median_time(lambda: H @ XT, repeat=args.repeat)
        d_f = d_fb = None
        if log2n <= DENSE_MAX_LOG2N:
            Wd = rng.standard_normal((n, n)) / np.sqrt(n)
            dense_grad = grad(lambda W: anp.sum(anp.dot(X, W.T) * G))
            d_f = _common.median_time(lambda: anp.dot(X, Wd.T), repeat=args.repeat)
            d_fb = _common.median_time(lambda: dense_grad(Wd), repeat=args.repeat)
            del Wd
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
