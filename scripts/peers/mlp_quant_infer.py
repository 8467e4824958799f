#!/usr/bin/env python3
"""Inference of the 784 -> 512 -> 512 -> 10 ReLU MLP at batch 256 in PyTorch: the f32 model and
torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8) (int8 weights per
tensor by default, dynamic u8 activations, fbgemm on x86), interleaved window by window.
The ember side is crates/ember-nn/examples/quant_mlp_infer.rs (same shapes, same protocol).
    mlp_quant_infer.py --threads T [--windows 7] [--steps 20]
Prints one JSON object per model: median and best ms per batch over the timed windows."""
import argparse, json, statistics, time

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--windows", type=int, default=7)
ap.add_argument("--steps", type=int, default=20)
a = ap.parse_args()

import torch
from torch import nn
torch.set_num_threads(a.threads)
torch.manual_seed(0)
m = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)).eval()
q = torch.ao.quantization.quantize_dynamic(m, {nn.Linear}, dtype=torch.qint8)
x = torch.rand(256, 784)
times = {"f32": [], "int8-dynamic": []}
with torch.inference_mode():
    for w in range(a.windows + 2):
        for name, model in (("f32", m), ("int8-dynamic", q)):
            t = time.perf_counter()
            for _ in range(a.steps):
                model(x)
            if w >= 2:
                times[name].append((time.perf_counter() - t) * 1e3 / a.steps)
for name, t in times.items():
    print(json.dumps({"impl": "torch", "model": name, "threads": a.threads, "batch": 256,
                      "ms_per_batch": round(statistics.median(t), 4), "ms_best": round(min(t), 4),
                      "engine": torch.backends.quantized.engine, "version": torch.__version__}))
