"""PyTorch's max pooling 2x2/2 on the MNIST CNN shape (N 64, C 32, 26x26, f32): forward with
indices (what training runs) and the backward, at 1 and 2 threads. The ember side is
`cargo bench -p ember-cpu --bench pool`; run both interleaved.

    /work/venv-torch/bin/python scripts/peers/pool.py [repeats]

Prints one JSON object per (op, threads): the median, min and max of `repeats` timings, each
the mean of a batch of 50 calls, in microseconds.
"""

import json
import statistics
import sys
import time

import torch

repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 15
x = (torch.arange(64 * 32 * 26 * 26) * 7919 % 10007).float().mul(1e-3).sub(5.0).reshape(64, 32, 26, 26)
y, idx = torch.ops.aten.max_pool2d_with_indices(x, [2, 2], [2, 2])
g = y.clone()


def fwd():
    torch.ops.aten.max_pool2d_with_indices(x, [2, 2], [2, 2])


def bwd():
    torch.ops.aten.max_pool2d_with_indices_backward(g, x, [2, 2], [2, 2], [0, 0], [1, 1], False, idx)


def timed(f, calls=50):
    for _ in range(5):
        f()
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            f()
        t.append((time.perf_counter() - t0) / calls * 1e6)
    return t


for threads in (1, 2):
    torch.set_num_threads(threads)
    for name, f in (("forward", fwd), ("backward", bwd)):
        t = timed(f)
        print(
            json.dumps(
                {
                    "peer": f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()})",
                    "op": f"max_pool2d_2x2 {name}",
                    "shape": [64, 32, 26, 26],
                    "threads": threads,
                    "median_us": round(statistics.median(t), 1),
                    "min_us": round(min(t), 1),
                    "max_us": round(max(t), 1),
                }
            )
        )
