"""Golden values for ember's recurrent layers, computed by PyTorch (CPU, float32).

Run: /work/venv-torch/bin/python scripts/goldens/rnn.py
Writes crates/ember-nn/tests/goldens/rnn.txt, read by crates/ember-nn/tests/recurrent.rs.

Every tensor comes from a fixed formula (the Rust test rebuilds them the same way, so only
outputs are stored): the i-th element (row-major) of the tensor with seed s is
    sin(0.37 * i + s) * scale, computed in float64 and rounded to float32.
The input x [N, T, F] has seed 1 and scale 0.8; the j-th parameter in PyTorch's
named_parameters() order has seed 10 + j and scale 0.5. Layers are batch_first.

The loss is sum(out * gy * m) with gy[i] = cos(0.11 * i) over the output sequence
[N, T, D*H] and m the padding mask broadcast over features (all ones for unmasked cases).
Masked cases run PyTorch on a packed sequence (pack_padded_sequence with the lengths below):
PyTorch leaves padded outputs at zero where ember carries the state, so the mask in the loss
keeps the comparison to the real steps; final states agree (each row's state after its last
real step; the reverse direction starts at each row's last real step).

Stored per case: `out` (the sequence, masked cases with padded steps zeroed), `last` (the
final states of the last layer, directions concatenated: ember's return_sequences=false
output), `cn` for LSTMs (the last layer's final cell states, concatenated likewise), `dx` and
`d.<name>` for every parameter.

File format: one line per tensor, `case name d0,d1,... v0 v1 ...` (values as %.9g).
"""
import math
import os

import torch
from torch import nn


def fill(shape, seed, scale):
    n = math.prod(shape)
    v = [math.sin(0.37 * i + seed) * scale for i in range(n)]
    return torch.tensor(v, dtype=torch.float64).to(torch.float32).reshape(shape)


def upstream(shape):
    n = math.prod(shape)
    v = [math.cos(0.11 * i) for i in range(n)]
    return torch.tensor(v, dtype=torch.float64).to(torch.float32).reshape(shape)


N, T, F, H = 2, 5, 3, 4
# case, module class, kwargs, lengths (None: unmasked)
CASES = [
    ("rnn_tanh", nn.RNN, dict(nonlinearity="tanh"), None),
    ("rnn_relu", nn.RNN, dict(nonlinearity="relu"), None),
    ("lstm", nn.LSTM, dict(), None),
    ("gru", nn.GRU, dict(), None),
    ("lstm_bi2", nn.LSTM, dict(bidirectional=True, num_layers=2), None),
    ("gru_bi_masked", nn.GRU, dict(bidirectional=True), [5, 3]),
    ("lstm_masked", nn.LSTM, dict(), [2, 5]),
]


def main():
    torch.set_num_threads(1)
    here = os.path.dirname(os.path.abspath(__file__))
    out_path = os.path.join(here, "..", "..", "crates", "ember-nn", "tests", "goldens", "rnn.txt")
    lines = [f"# written by scripts/goldens/rnn.py with torch {torch.__version__}"]

    def emit(case, name, t):
        t = t.detach().to(torch.float32).contiguous()
        shape = ",".join(str(d) for d in t.shape)
        vals = " ".join("%.9g" % v for v in t.reshape(-1).tolist())
        lines.append(f"{case} {name} {shape} {vals}")

    for case, cls, kw, lengths in CASES:
        m = cls(F, H, batch_first=True, **kw)
        with torch.no_grad():
            for j, (name, p) in enumerate(m.named_parameters()):
                p.copy_(fill(list(p.shape), 10 + j, 0.5))
        d = 2 if kw.get("bidirectional") else 1
        x = fill([N, T, F], 1.0, 0.8).requires_grad_(True)
        if lengths is None:
            mask = torch.ones(N, T)
            res = m(x)
            out = res[0]
        else:
            mask = torch.tensor([[1.0 if t < L else 0.0 for t in range(T)] for L in lengths])
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            res = m(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(res[0], batch_first=True, total_length=T)
        hn = res[1][0] if cls is nn.LSTM else res[1]
        last = torch.cat([hn[-d + k] for k in range(d)], dim=1)
        gy = upstream([N, T, d * H])
        loss = (out * gy * mask.unsqueeze(2)).sum()
        loss.backward()
        emit(case, "out", out)
        emit(case, "last", last)
        if cls is nn.LSTM:
            cn = res[1][1]
            emit(case, "cn", torch.cat([cn[-d + k] for k in range(d)], dim=1))
        emit(case, "dx", x.grad)
        for name, p in m.named_parameters():
            emit(case, "d." + name, p.grad)
    with open(out_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {len(lines) - 1} tensors to {os.path.normpath(out_path)}")


if __name__ == "__main__":
    main()
