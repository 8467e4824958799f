#!/usr/bin/env python3
"""numpy's DGEMM (OpenBLAS) timed like `ember bench gemm --dtype f64 --json`, for side-by-side runs.

    scripts/dgemm-peer.py THREADS SHAPES      e.g. scripts/dgemm-peer.py 1 512,1024,256x784x512

A benchmark aid, not a dependency: run it with the venv that scripts/bench-peers.sh makes
(~/.venvs/np) and with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset, as that script does. Each
shape is timed for at least 0.3 s and 5 samples; it prints one JSON line per shape with the
median and best GFLOP/s. (scripts/peers/sgemm_py.py is f32 only.)
"""
import json
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits


def main():
    threads = int(sys.argv[1])
    shapes = sys.argv[2].split(",")
    with threadpool_limits(limits=threads):
        for s in shapes:
            dims = [int(v) for v in s.split("x")]
            m, k, n = (dims[0],) * 3 if len(dims) == 1 else dims
            rng = np.random.default_rng(0)
            a, b, c = rng.random((m, k)), rng.random((k, n)), np.empty((m, n))
            samples = []
            start = time.perf_counter()
            while time.perf_counter() - start < 0.3 or len(samples) < 5:
                t0 = time.perf_counter()
                np.matmul(a, b, out=c)
                samples.append(time.perf_counter() - t0)
            samples.sort()
            flop = 2.0 * m * n * k
            print(json.dumps({"bench": "gemm", "impl": "numpy", "dtype": "f64", "m": m, "k": k,
                              "n": n, "threads": threads,
                              "gflops": flop / samples[len(samples) // 2] / 1e9,
                              "gflops_best": flop / samples[0] / 1e9}))


if __name__ == "__main__":
    main()
