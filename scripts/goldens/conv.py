"""Golden values for ember's convolutions, computed by PyTorch (CPU, float32).

Run: /work/venv-torch/bin/python scripts/goldens/conv.py
Writes crates/ember-core/tests/goldens/conv.txt, read by crates/ember-core/tests/conv_goldens.rs.

Inputs come from a fixed formula (the Rust test rebuilds them the same way, so only outputs
are stored): the i-th element (row-major) of the tensor with seed s is
    sin(0.37 * i + s) * 0.8, computed in float64 and rounded to float32.
The loss is sum(y * gy) with gy[i] = cos(0.11 * i) (float64, rounded to float32), so the
stored gradients are the vector-Jacobian products for that upstream gradient.

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


# name, kind, x shape, w shape, bias?, kwargs (PyTorch's)
CASES = [
    ("stride2_pad1", "conv2d", [2, 3, 7, 6], [4, 3, 3, 3], True, dict(stride=2, padding=1)),
    ("same_dil2_groups2", "conv2d", [1, 4, 6, 7], [4, 2, 3, 3], True,
     dict(padding="same", dilation=2, groups=2)),
    ("depthwise", "conv2d", [2, 3, 5, 5], [3, 1, 3, 3], False, dict(padding=1, groups=3)),
    ("conv1d", "conv1d", [2, 4, 9], [6, 2, 3], True, dict(stride=2, padding=1, groups=2)),
    ("transpose_s2_op1", "conv_transpose2d", [2, 3, 4, 4], [3, 2, 4, 4], True,
     dict(stride=2, padding=1, output_padding=1)),
    ("transpose_groups_dil", "conv_transpose2d", [1, 4, 3, 3], [4, 1, 3, 3], False,
     dict(stride=2, groups=2, dilation=2)),
]

FNS = {"conv2d": F.conv2d, "conv1d": F.conv1d, "conv_transpose2d": F.conv_transpose2d}


def main():
    torch.set_num_threads(1)
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "..", "..", "crates", "ember-core", "tests", "goldens", "conv.txt")
    lines = [f"# written by scripts/goldens/conv.py with torch {torch.__version__}"]

    def emit(case, name, t):
        t = t.detach().to(torch.float32).contiguous()
        shape = ",".join(str(d) for d in t.shape)
        vals = " ".join("%.9g" % v for v in t.reshape(-1).tolist())
        lines.append(f"{case} {name} {shape} {vals}")

    for case, kind, xs, ws, has_bias, kw in CASES:
        x = fill(xs, 0.1).requires_grad_()
        w = fill(ws, 0.7).requires_grad_()
        if has_bias:
            cout = ws[1] * kw.get("groups", 1) if kind == "conv_transpose2d" else ws[0]
            b = fill([cout], 1.3).requires_grad_()
        else:
            b = None
        y = FNS[kind](x, w, b, **kw)
        (y * upstream(list(y.shape))).sum().backward()
        emit(case, "y", y)
        emit(case, "dx", x.grad)
        emit(case, "dw", w.grad)
        if b is not None:
            emit(case, "db", b.grad)
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}: {len(lines) - 1} tensors")


if __name__ == "__main__":
    main()
