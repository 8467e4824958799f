"""PyTorch goldens for ember's layer norm, scaled dot-product attention and attention layers.

Run once with PyTorch (CPU, from PyPI) and commit the output:

    /work/venv-torch/bin/python scripts/goldens/attention.py

It writes two files:
- crates/ember-core/tests/goldens/attention.txt: F.layer_norm and
  F.scaled_dot_product_attention (causal, boolean masks) outputs and input gradients;
- crates/ember-nn/tests/goldens/attention_layers.txt: nn.LayerNorm, nn.MultiheadAttention
  (batch_first, with a key padding mask) and nn.TransformerEncoderLayer (norm_first, gelu,
  batch_first, eval mode) outputs and the gradients of their parameters.

Inputs and parameters are not stored: both sides build them from one formula, element i of seed
s is sin(0.37·i + s)·0.8 rounded to float32 (`fill`); the upstream gradient is cos(0.11·i)
(`upstream`); every case backpropagates sum(y · upstream). Lines are
`<case> <tensor> <shape,comma,separated> <values...>`.
"""

import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)
ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def fill(shape, seed):
    n = math.prod(shape)
    v = [math.sin(0.37 * i + seed) * 0.8 for i in range(n)]
    return torch.tensor(v, dtype=torch.float64).to(torch.float32).reshape(shape)


def upstream(shape):
    n = math.prod(shape)
    v = [math.cos(0.11 * i) for i in range(n)]
    return torch.tensor(v, dtype=torch.float64).to(torch.float32).reshape(shape)


class Out:
    def __init__(self, path):
        self.path = path
        self.lines = [f"# written by scripts/goldens/attention.py with torch {torch.__version__}"]

    def emit(self, case, name, t):
        t = t.detach()
        shape = ",".join(str(d) for d in t.shape) or "1"
        vals = " ".join(repr(float(v)) for v in t.reshape(-1).tolist())
        self.lines.append(f"{case} {name} {shape} {vals}")

    def save(self):
        with open(self.path, "w") as f:
            f.write("\n".join(self.lines) + "\n")


core = Out(os.path.join(ROOT, "crates/ember-core/tests/goldens/attention.txt"))


def run_core(case, f, *inputs):
    xs = [x.clone().requires_grad_(True) for x in inputs]
    y = f(*xs)
    core.emit(case, "y", y)
    (y * upstream(y.shape)).sum().backward()
    for i, x in enumerate(xs):
        core.emit(case, f"d{i}", x.grad)


# layer norm over the last axis, affine, x [2, 5, 7]
run_core(
    "ln_affine",
    lambda x, w, b: F.layer_norm(x, [7], w, b, 1e-5),
    fill([2, 5, 7], 0.1) * 3.0 + 1.0,
    fill([7], 0.7) + 1.0,
    fill([7], 1.3),
)
run_core("ln_plain", lambda x: F.layer_norm(x, [6], None, None, 1e-5), fill([4, 6], 0.2))

# SDPA [N, H, T, D]
q, k, v = fill([2, 3, 5, 4], 0.1), fill([2, 3, 7, 4], 0.7), fill([2, 3, 7, 6], 1.3)
run_core("sdpa_plain", lambda q, k, v: F.scaled_dot_product_attention(q, k, v), q, k, v)
qc, kc, vc = fill([2, 3, 6, 4], 0.1) * 2, fill([2, 3, 6, 4], 0.7) * 2, fill([2, 3, 6, 5], 1.3)
run_core(
    "sdpa_causal",
    lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    qc,
    kc,
    vc,
)
# key keep-mask [N, Tk]: example 0 keeps keys 0..5, example 1 keeps 0..3 (True = attend in torch)
keep = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0, 0]], dtype=torch.bool)
run_core(
    "sdpa_mask_scale",
    lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, attn_mask=keep[:, None, None, :], scale=0.3
    ),
    q,
    k,
    v,
)
run_core(
    "sdpa_3d",
    lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
    fill([3, 5, 4], 0.4),
    fill([3, 9, 4], 0.5),
    fill([3, 9, 2], 0.6),
)
core.save()

# ---- layers ----
layers = Out(os.path.join(ROOT, "crates/ember-nn/tests/goldens/attention_layers.txt"))


def set_params(module, seed0):
    """Every parameter, in named_parameters order, from fill(shape, seed0 + 0.1·i)·0.5."""
    with torch.no_grad():
        for i, (name, p) in enumerate(module.named_parameters()):
            p.copy_(fill(list(p.shape), seed0 + 0.1 * i) * 0.5)


def run_layer(case, module, x, f):
    module.eval()
    module.zero_grad(set_to_none=True)  # each case's gradients alone
    x = x.clone().requires_grad_(True)
    y = f(module, x)
    layers.emit(case, "y", y)
    (y * upstream(y.shape)).sum().backward()
    layers.emit(case, "dx", x.grad)
    for name, p in module.named_parameters():
        layers.emit(case, "d." + name, p.grad)


E = 8
mha = nn.MultiheadAttention(E, 2, batch_first=True)
set_params(mha, 2.0)
x = fill([2, 5, E], 0.3)
# ember's keep mask: example 1 has 2 padded steps at the end; torch's key_padding_mask is True = ignore
pad = torch.tensor([[0, 0, 0, 0, 0], [0, 0, 0, 1, 1]], dtype=torch.bool)
run_layer("mha_self_mask", mha, x, lambda m, x: m(x, x, x, key_padding_mask=pad, need_weights=False)[0])
causal = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
run_layer("mha_causal", mha, x, lambda m, x: m(x, x, x, attn_mask=causal, need_weights=False)[0])

enc = nn.TransformerEncoderLayer(
    E, 2, dim_feedforward=16, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
)
set_params(enc, 3.0)
run_layer("encoder_block", enc, x, lambda m, x: m(x))
run_layer("encoder_block_causal", enc, x, lambda m, x: m(x, src_mask=causal, is_causal=True))
layers.save()
