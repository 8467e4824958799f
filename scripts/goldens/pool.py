"""PyTorch goldens for ember's pooling, upsampling, padding and batch-norm ops.

Run once with PyTorch (CPU, from PyPI) and commit the output:

    /work/venv-torch/bin/python scripts/goldens/pool.py > crates/ember-core/tests/goldens/pool.txt

Inputs are not stored: both this script and the Rust test (crates/ember-core/tests/pool.rs)
build them from the same exact formula (`inputs`), in float64 rounded to float32, so they are
bit-identical on both sides. Every case is run in float32; the file holds, per case, the output
and the gradients of sum(y * w) (w from `weights`) with respect to each input, as lines
`<case> <tensor> <values...>`.
"""

import torch
import torch.nn.functional as F

torch.set_num_threads(1)


def inputs(shape, salt=0):
    n = 1
    for d in shape:
        n *= d
    # k = (i·7919 + salt) mod n visits every residue once when gcd(7919, n) = 1: distinct values.
    vals = [((i * 7919 + salt) % n) / n * 4.0 - 2.0 for i in range(n)]
    return torch.tensor(vals, dtype=torch.float64).to(torch.float32).reshape(shape)


def weights(n):
    return torch.tensor([((i * 53) % 17) / 17.0 - 0.4 for i in range(n)], dtype=torch.float64).to(
        torch.float32
    )


def emit(case, name, t):
    vals = " ".join(repr(float(v)) for v in t.detach().reshape(-1).tolist())
    print(f"{case} {name} {vals}")


def run(case, f, *shapes_and_params):
    xs = [p.clone().requires_grad_(True) for p in shapes_and_params]
    y = f(*xs)
    emit(case, "y", y)
    w = weights(y.numel()).reshape(y.shape)
    (y * w).sum().backward()
    for i, x in enumerate(xs):
        emit(case, f"d{i}", x.grad)


run("max_k3s2p1_ceil", lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True), inputs((2, 3, 7, 8)))
run("max_2x2", lambda x: F.max_pool2d(x, 2), inputs((2, 2, 6, 6)))
run("max_2x2_odd", lambda x: F.max_pool2d(x, 2), inputs((2, 2, 7, 9)))
run("max_dil2", lambda x: F.max_pool2d(x, 2, 1, 1, dilation=2), inputs((1, 2, 7, 7)))
run("avg_k3s2p1_ceil_incl", lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True), inputs((2, 3, 7, 8)))
run(
    "avg_k3s2p1_ceil_excl",
    lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
    inputs((2, 3, 7, 8)),
)
run("avg_k2", lambda x: F.avg_pool2d(x, (2, 3), (1, 2)), inputs((1, 2, 5, 7)))
run("adaptive_3x2", lambda x: F.adaptive_avg_pool2d(x, (3, 2)), inputs((2, 3, 7, 8)))
run("global", lambda x: F.adaptive_avg_pool2d(x, 1), inputs((2, 3, 5, 6)))
run("upsample_2x3", lambda x: F.interpolate(x, scale_factor=(2, 3), mode="nearest"), inputs((1, 2, 3, 4)))
run("pad_reflect", lambda x: F.pad(x, (2, 1, 1, 2), mode="reflect"), inputs((1, 2, 4, 5)))
run("pad_const", lambda x: F.pad(x, (1, 2, 0, 3), value=0.5), inputs((1, 2, 4, 5)))
run("max1d", lambda x: F.max_pool1d(x, 3, 2, 1), inputs((2, 3, 11)))
run("avg1d", lambda x: F.avg_pool1d(x, 4, 3, 2, count_include_pad=False), inputs((2, 3, 11)))

# Batch norm, training: output, gradients of x, weight, bias, and the running statistics after
# one update (momentum 0.1) from mean 0.25, var 1.5.
x = inputs((4, 3, 5, 5))
wt = inputs((3,), 1) * 0.5 + 1.0
bs = inputs((3,), 2) * 0.25
rm = torch.full((3,), 0.25)
rv = torch.full((3,), 1.5)
run("bn_train", lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5), x, wt, bs)
emit("bn_train", "running_mean", rm)
emit("bn_train", "running_var", rv)
run(
    "bn_eval",
    lambda x, w, b: F.batch_norm(x, torch.tensor([0.1, -0.2, 0.3]), torch.tensor([0.5, 1.5, 2.0]), w, b, training=False, eps=1e-5),
    x,
    wt,
    bs,
)
run("bn_train_2d", lambda x: F.batch_norm(x, None, None, training=True), inputs((6, 4)))
