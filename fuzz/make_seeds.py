#!/usr/bin/env python3
"""Writes the committed seed corpora under fuzz/corpus/<target>/ from small slices of data/.

Run from the repository root: python3 fuzz/make_seeds.py. Each seed starts with the target's
mode bytes (see the doc comment of each fuzz target), then the payload. Deterministic: the same
data/ gives the same files.
"""
import gzip
import json
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def head_lines(path, n):
    with open(os.path.join(ROOT, "data", path), "rb") as f:
        return b"".join(f.readlines()[:n])


def csv_seeds():
    for name in ["iris.csv", "wine.csv", "breast_cancer.csv", "digits.csv"]:
        text = head_lines(name, 6)
        stem = name[:-4]
        write("csv_loader", f"{stem}_last", b"\x00\x00" + text)
        write("csv_loader", f"{stem}_index0", b"\x01\x00" + text)
        write("csv_loader", f"{stem}_name2", b"\x02\x02" + text)
    # Quoting, blank lines, spaces and a ragged row: the reader's other paths.
    write("csv_loader", "quoted", b'\x00\x00"a","b c",y\n1, 2 ,0\n\n"3",4,1\n')
    write("csv_loader", "ragged", b"\x00\x00a,b,y\n1,2,0\n3,1\n")


def idx_bytes(dims, values):
    return struct.pack(">BBBB", 0, 0, 8, len(dims)) + b"".join(
        struct.pack(">I", d) for d in dims) + bytes(values)


def idx_seeds():
    mnist = os.path.join(ROOT, "data", "mnist")
    with gzip.open(os.path.join(mnist, "t10k-images-idx3-ubyte.gz")) as f:
        images = f.read(16 + 3 * 28 * 28)
    with gzip.open(os.path.join(mnist, "t10k-labels-idx1-ubyte.gz")) as f:
        labels = f.read(8 + 3)
    # The first three test images and labels, their headers rewritten to say 3.
    img = idx_bytes([3, 28, 28], images[16:])
    lab = idx_bytes([3], labels[8:])
    small = idx_bytes([2, 2, 3], range(12))
    write("idx_reader", "raw_images3", b"\x00" + img)
    write("idx_reader", "raw_labels3", b"\x00" + lab)
    write("idx_reader", "gzip_in_input", b"\x00" + gzip.compress(small, mtime=0))
    write("idx_reader", "gzipped_by_target", b"\x01" + small)
    write("idx_reader", "mnist_pair", b"\x02" + struct.pack("<H", len(img)) + img + lab)
    write("idx_reader", "mnist_pair_gz", b"\x02" + struct.pack("<H", len(gzip.compress(img, mtime=0)))
          + gzip.compress(img, mtime=0) + lab)


def safetensors(tensors, metadata):
    """tensors: list of (name, shape, dtype, bytes)."""
    header, offset, blob = {}, 0, b""
    for name, shape, dtype, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blob += data
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def f32(n, start=0.0):
    return b"".join(struct.pack("<f", start + 0.01 * i) for i in range(n))


def checkpoint_seeds():
    # The tensors of ember_fuzz::small_model(): Dense(3->4), BatchNorm1d(4), Dense(4->2).
    params = [("layers.0.weight", [4, 3]), ("layers.0.bias", [4]),
              ("batchnorm1d.0.weight", [4]), ("batchnorm1d.0.bias", [4]),
              ("layers.1.weight", [2, 4]), ("layers.1.bias", [2])]
    buffers = [("batchnorm1d.0.running_mean", [4]), ("batchnorm1d.0.running_var", [4])]
    count = lambda s: s[0] * (s[1] if len(s) > 1 else 1)
    weights = [(n, s, "F32", f32(count(s))) for n, s in params + buffers]
    adam = [(f"optimizer.{n}.{b}", s, "F32", f32(count(s), 1.0)) for n, s in params for b in "mv"]
    meta = {"format": "pt"}
    write("checkpoint_loader", "weights_only", b"\x00" + safetensors(weights, meta))
    opt_meta = dict(meta, **{"ember.optimizer": "adam", "ember.optimizer.iterations": "5"})
    write("checkpoint_loader", "with_adam", b"\x00" + safetensors(weights + adam, opt_meta))
    write("checkpoint_loader", "with_adam_no_opt", b"\x01" + safetensors(weights + adam, opt_meta))
    sgd_meta = dict(meta, **{"ember.optimizer": "sgd", "ember.optimizer.iterations": "1"})
    write("checkpoint_loader", "other_optimizer", b"\x00" + safetensors(weights, sgd_meta))
    bad = [(n, s[::-1], "F32", d) for n, s, _, d in weights]
    write("checkpoint_loader", "wrong_shapes", b"\x00" + safetensors(bad, meta))
    f64w = [(n, s, "F64", d + d) for n, s, _, d in weights]
    write("checkpoint_loader", "wrong_dtype", b"\x00" + safetensors(f64w, meta))


def cli_seeds():
    argvs = [
        [],
        ["--hidden", "4,3", "--activation", "tanh", "--optimizer", "sgd", "--lr", "0.1",
         "--epochs", "2", "--batch-size", "4"],
        ["--two-class", "--dropout", "0.5", "--l1", "0.01", "--l2", "0.01", "--positive-class", "0"],
        ["--target", "a", "--validation-split", "0", "--test-split", "0.5", "--seed", "42"],
        ["--target", "3", "--hidden", "", "--optimizer", "rmsprop", "--activation", "gelu_tanh"],
        ["--optimizer", "adagrad", "--batch-size", "100", "--validation-split", "0.9"],
    ]
    for i, argv in enumerate(argvs):
        write("cli_args", f"argv{i}", "\0".join(argv).encode())


if __name__ == "__main__":
    csv_seeds()
    idx_seeds()
    checkpoint_seeds()
    cli_seeds()
