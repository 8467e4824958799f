#!/usr/bin/env python3
"""conv2d peer in PyTorch: the shapes and protocol of `ember bench conv` (src/cli/bench.rs).
    conv_py.py --threads T [--shapes mnist_conv1,mnist_conv2,resnet_3x3] [--min-time 0.5]
prints one JSON object per shape: forward (with bias) and forward + backward (dx, dw, db for
an upstream gradient gy) in ms, float32, NCHW, torch.set_num_threads(T). GFLOP/s count 2 flops
per multiply-add, the forward's multiply-adds once per pass (3 passes for forward + backward),
as ember's bench does. With one thread it also reports the process CPU time per forward +
backward (cpu_*), which a shared machine's other processes do not inflate."""
import argparse, json, time

SHAPES = {  # name: (batch, in, out, extent, kernel, padding)
    "mnist_conv1": (64, 1, 32, 28, 3, 0),
    "mnist_conv2": (64, 32, 64, 13, 3, 0),
    "resnet_3x3": (32, 64, 64, 56, 3, 1),
}


def time_it(f, min_time):
    """Warm up, choose inner repeats so one sample >= 2 ms, sample until min_time (>=5, <=300)."""
    t0, calls = time.perf_counter(), 0
    while calls < 3 or (time.perf_counter() - t0 < 0.05 and calls < 1000):
        f(); calls += 1
    inner = max(1, int(0.002 / ((time.perf_counter() - t0) / calls) + 0.999))
    samples, start = [], time.perf_counter()
    while len(samples) < 5 or (time.perf_counter() - start < min_time and len(samples) < 300):
        t = time.perf_counter()
        for _ in range(inner):
            f()
        samples.append((time.perf_counter() - t) / inner)
    samples.sort()
    return samples[len(samples) // 2]


def cpu_per_call(f):
    """Median process CPU seconds of 5 calls (the machine may be shared: this excludes the
    time other processes held the cores; meaningful for one thread)."""
    samples = []
    for _ in range(5):
        t = time.process_time()
        f()
        samples.append(time.process_time() - t)
    samples.sort()
    return samples[2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--min-time", type=float, default=0.5)
    a = ap.parse_args()
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(a.threads)
    for name in filter(None, a.shapes.split(",")):
        n, c, o, hw, k, p = SHAPES[name]
        x = torch.randn(n, c, hw, hw).requires_grad_()
        w = torch.randn(o, c, k, k).requires_grad_()
        b = torch.randn(o).requires_grad_()
        with torch.no_grad():
            oh = F.conv2d(x, w, b, padding=p).shape[2]
        gy = torch.randn(n, o, oh, oh)

        def fwd():
            with torch.no_grad():
                F.conv2d(x, w, b, padding=p)

        def fwd_bwd():
            x.grad = w.grad = b.grad = None
            F.conv2d(x, w, b, padding=p).backward(gy)

        t_f = time_it(fwd, a.min_time)
        t_fb = time_it(fwd_bwd, a.min_time)
        c_fb = cpu_per_call(fwd_bwd) if a.threads == 1 else None
        flops = 2.0 * n * o * oh * oh * c * k * k
        print(json.dumps({"peer": "torch", "version": torch.__version__,
                          "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                          "mkldnn": torch.backends.mkldnn.is_available(),
                          "shape": name, "threads": a.threads,
                          "fwd_ms": round(t_f * 1e3, 3), "fwd_bwd_ms": round(t_fb * 1e3, 3),
                          "fwd_gflops": round(flops / t_f / 1e9, 1),
                          "fwd_bwd_gflops": round(3 * flops / t_fb / 1e9, 1),
                          "cpu_fwd_bwd_ms": None if c_fb is None else round(c_fb * 1e3, 3),
                          "cpu_fwd_bwd_gflops": None if c_fb is None else round(3 * flops / c_fb / 1e9, 1)}))


if __name__ == "__main__":
    main()
