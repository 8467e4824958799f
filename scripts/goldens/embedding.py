"""Golden values for ember's embedding lookup, computed by PyTorch (CPU, float32).

Run: /work/venv-torch/bin/python scripts/goldens/embedding.py
Writes crates/ember-core/tests/goldens/embedding.txt, read by
crates/ember-core/tests/embedding.rs.

The table's i-th element (row-major) is sin(0.37 * i + 0.7) * 0.8 (float64, rounded to
float32); the ids are fixed lists with repeats; the loss is sum(y * gy) with
gy[i] = cos(0.11 * i), so the stored table gradient is the vector-Jacobian product for that
upstream gradient (repeated ids summed, the padding row zero).

File format: one line per tensor, `case name d0,d1,... v0 v1 ...` (values as %.9g).
"""
import math
import os

import torch
import torch.nn.functional as F


def fill(shape, seed):
    n = math.prod(shape)
    v = [math.sin(0.37 * i + seed) * 0.8 for i in range(n)]
    return torch.tensor(v, dtype=torch.float64).to(torch.float32).reshape(shape)


def upstream(shape):
    n = math.prod(shape)
    v = [math.cos(0.11 * i) for i in range(n)]
    return torch.tensor(v, dtype=torch.float64).to(torch.float32).reshape(shape)


# name, table shape [V, D], ids (nested lists), padding_idx
CASES = [
    ("repeats", [7, 5], [[3, 1, 3, 0], [6, 3, 2, 1]], None),
    ("padding", [6, 4], [[0, 2, 2, 5, 0], [1, 0, 2, 4, 4]], 0),
    ("flat", [4, 3], [2, 2, 2, 1, 3], 2),
]


def main():
    torch.set_num_threads(1)
    lines = []
    for name, ts, ids, pad in CASES:
        w = fill(ts, 0.7).requires_grad_(True)
        idx = torch.tensor(ids, dtype=torch.long)
        y = F.embedding(idx, w, padding_idx=pad)
        (y * upstream(list(y.shape))).sum().backward()
        for tname, t in (("y", y), ("dw", w.grad)):
            shape = ",".join(str(d) for d in t.shape)
            vals = " ".join("%.9g" % v for v in t.detach().reshape(-1).tolist())
            lines.append(f"{name} {tname} {shape} {vals}")
    out = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "ember-core", "tests",
                       "goldens", "embedding.txt")
    with open(out, "w") as f:
        f.write("# written by scripts/goldens/embedding.py (PyTorch %s)\n" % torch.__version__)
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
