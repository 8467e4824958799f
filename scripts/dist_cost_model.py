#!/usr/bin/env python3
"""The ring all-reduce cost model of docs/DISTRIBUTED.md, as a Markdown table.

usage: scripts/dist_cost_model.py FLOPS_PER_RANK [LATENCY_S]

For p ranks, a ring all-reduce of S bytes over links of B bytes/s takes
    T_comm = 2(p-1)/p * S/B + 2(p-1) * alpha
and a training step on b samples per rank takes T_comp = b * flops_per_sample / F.
Communication hides behind compute (with perfect overlap) once T_comp >= T_comm, i.e. at
    b* = T_comm * F / flops_per_sample   samples per rank.
flops_per_sample is forward + backward: 3x the forward multiply-adds (2 flops each).
"""
import sys

F = float(sys.argv[1]) if len(sys.argv) > 1 else 50e9
ALPHA = float(sys.argv[2]) if len(sys.argv) > 2 else 20e-6

def fwd_cnn():
    # Conv2d 1->32 3x3 valid on 28x28 (26x26 out), pool 2 (13x13), Conv2d 32->64 3x3 (11x11),
    # pool 2 (5x5), Dense 1600->128, Dense 128->10.
    return 2 * (26 * 26 * 32 * 9 * 1 + 11 * 11 * 64 * 32 * 9 + 1600 * 128 + 128 * 10)

MODELS = [
    ("MLP 784-512-512-1", 784 * 512 + 512 + 512 * 512 + 512 + 512 + 1,
     3 * 2 * (784 * 512 + 512 * 512 + 512)),
    ("MNIST CNN (examples/models/mnist_cnn.toml)", 320 + 18496 + 204928 + 1290, 3 * fwd_cnn()),
    ("100M-parameter dense model", 100_000_000, 6 * 100_000_000),
]

print(f"F = {F / 1e9:.1f} GFLOP/s per rank, alpha = {ALPHA * 1e6:.0f} us per message\n")
print("| model | params | gradient (f32) | FLOP/sample | link | p | T_comm | b* per rank |")
print("|---|---:|---:|---:|---|---:|---:|---:|")
for name, params, flops in MODELS:
    size = 4 * params
    for gbps in (10, 25, 100):
        bw = gbps * 1e9 / 8
        for p in (2, 8, 64):
            t = 2 * (p - 1) / p * size / bw + 2 * (p - 1) * ALPHA
            b = t * F / flops
            print(f"| {name} | {params:,} | {size / 1e6:.2f} MB | {flops / 1e6:.1f} M | "
                  f"{gbps} Gb/s | {p} | {t * 1e3:.2f} ms | {b:.0f} |")
