"""PyTorch's max pooling 2x2/2 on the MNIST CNN shape (N 64, C 32, 26x26, f32): forward with
indices (what training runs) and the backward, at 1 and 2 threads. The ember side is
`cargo bench -p ember-cpu --bench pool`; run both interleaved.

    /work/venv-torch/bin/python scripts/peers/pool.py [repeats]

Prints one JSON object per (op, threads): the median, min and max of `repeats` wall-clock
timings, each the mean of a batch of 50 calls, in microseconds, and the median process CPU time
per call (at 1 thread, the op's own CPU time: comparable on a loaded machine, where wall time
is not).
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
    """Wall and process-CPU microseconds per call, one value per batch of `calls` calls."""
    for _ in range(5):
        f()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(calls):
            f()
        wall.append((time.perf_counter() - t0) / calls * 1e6)
        cpu.append((time.process_time() - c0) / calls * 1e6)
    return wall, cpu


for threads in (1, 2):
    torch.set_num_threads(threads)
    for name, f in (("forward", fwd), ("backward", bwd)):
        t, cpu = timed(f)
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
                    "median_cpu_us": round(statistics.median(cpu), 1),
                }
            )
        )
