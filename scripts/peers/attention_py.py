#!/usr/bin/env python3
"""Attention peer: PyTorch's F.scaled_dot_product_attention and nn.TransformerEncoderLayer on the
CPU, the same shapes and protocol as `ember bench attention`:
    attention_py.py --threads 1 [--lengths 128,512] [--min-time 0.5]
prints one JSON object per case: SDPA f32 [N 32, H 4, T, Dh 32] forward and forward + backward
(sum(out * g) backpropagated to q, k, v), and one pre-norm encoder block (d 128, 4 heads, ff 512,
gelu, dropout 0, N 32, T 128) forward + backward of sum(y), each the median wall time per call
(warm up; inner repeats so a sample is >= 2 ms; samples until --min-time, at least 5) and, at one
thread, the median thread CPU time of 5 calls."""
import argparse, json, os, time


def time_it(f, min_time):
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
    s = []
    for _ in range(5):
        t = time.thread_time()
        f()
        s.append(time.thread_time() - t)
    s.sort()
    return s[2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=int(os.environ.get("PEER_THREADS", "1")))
    ap.add_argument("--lengths", default="128,512")
    ap.add_argument("--min-time", type=float, default=0.5)
    a = ap.parse_args()
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    n, h, dh = 32, 4, 32
    for t in [int(x) for x in a.lengths.split(",") if x]:
        q, k, v, g = (torch.randn(n, h, t, dh) for _ in range(4))
        fwd = lambda: F.scaled_dot_product_attention(q, k, v)
        qv, kv, vv = (x.clone().requires_grad_(True) for x in (q, k, v))

        def both():
            o = F.scaled_dot_product_attention(qv, kv, vv)
            o.backward(g)
            qv.grad = kv.grad = vv.grad = None

        with torch.no_grad():
            t_fwd = time_it(fwd, a.min_time)
            c_fwd = cpu_per_call(fwd) if a.threads == 1 else None
        t_all = time_it(both, a.min_time)
        c_all = cpu_per_call(both) if a.threads == 1 else None
        print(json.dumps({"peer": "torch", "version": torch.__version__, "op": "sdpa", "n": n,
                          "heads": h, "t": t, "dh": dh, "threads": a.threads,
                          "fwd_ms": round(t_fwd * 1e3, 3), "fwd_bwd_ms": round(t_all * 1e3, 3),
                          "cpu_fwd_ms": c_fwd and round(c_fwd * 1e3, 3),
                          "cpu_fwd_bwd_ms": c_all and round(c_all * 1e3, 3)}), flush=True)
    d, heads, ff, t = 128, 4, 512, 128
    block = torch.nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, activation="gelu",
                                             batch_first=True, norm_first=True)
    block.train()
    x = torch.randn(32, t, d, requires_grad=True)

    def step():
        block(x).sum().backward()
        block.zero_grad(set_to_none=True)
        x.grad = None

    t_step = time_it(step, a.min_time)
    c_step = cpu_per_call(step) if a.threads == 1 else None
    print(json.dumps({"peer": "torch", "op": "encoder_block", "n": 32, "t": t, "d": d,
                      "heads": heads, "ff": ff, "threads": a.threads,
                      "fwd_bwd_ms": round(t_step * 1e3, 3),
                      "cpu_fwd_bwd_ms": c_step and round(c_step * 1e3, 3)}), flush=True)


if __name__ == "__main__":
    main()
