#!/usr/bin/env python3
"""Which testament is a verse from? The Transformer classifier of issue 15 in PyTorch, beside a
bag-of-characters logistic regression, on data/text/kjv_verses.csv.gz.

    verse_transformer.py [--epochs 2] [--threads 2] [--max-len 128] [--d 128] [--heads 4]
                         [--ff 256] [--blocks 2] [--batch 64] [--lr 1e-3] [--seed 0]

Model (the same as examples/models/verse_transformer.toml in ember): characters → Embedding(V, d)
(id 0 = padding, 1 = a character unseen in training) + a learned positional embedding → `blocks`
pre-norm Transformer encoder blocks (d, heads, feed-forward `ff`, GELU, dropout 0.1) → mean over
the real (unpadded) steps → Linear(d, 2); Adam, cross-entropy. Verses are cut to `max-len`
characters. Split: stratified by testament, 20 % test, from `--seed`. The vocabulary is built
from the training verses only. Prints one JSON object per epoch and one for the baseline.

Baseline: logistic regression on each verse's character frequencies (counts / length), full-batch
L-BFGS with a small L2 penalty — what a linear model can read from letters alone.
"""
import argparse, csv, gzip, io, json, math, os, time

import numpy as np
import torch
from torch import nn

ap = argparse.ArgumentParser()
ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "data", "text",
                                               "kjv_verses.csv.gz"))
ap.add_argument("--epochs", type=int, default=2)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--max-len", type=int, default=128)
ap.add_argument("--d", type=int, default=128)
ap.add_argument("--heads", type=int, default=4)
ap.add_argument("--ff", type=int, default=256)
ap.add_argument("--blocks", type=int, default=2)
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)

rows = list(csv.DictReader(io.TextIOWrapper(gzip.open(a.data), encoding="utf-8")))
texts = [r["text"] for r in rows]
labels = np.array([int(r["testament"]) for r in rows])

# Stratified split: 20 % of each class to the test set.
rng = np.random.default_rng(a.seed)
test_idx = []
for c in (0, 1):
    idx = np.flatnonzero(labels == c)
    rng.shuffle(idx)
    test_idx.extend(idx[: round(0.2 * len(idx))])
test_mask = np.zeros(len(rows), bool)
test_mask[test_idx] = True
train_i, test_i = np.flatnonzero(~test_mask), np.flatnonzero(test_mask)

vocab = sorted(set("".join(texts[i] for i in train_i)))
ix = {ch: k + 2 for k, ch in enumerate(vocab)}
V = len(vocab) + 2


def encode(i):
    ids = [ix.get(ch, 1) for ch in texts[i][: a.max_len]]
    return ids + [0] * (a.max_len - len(ids))


X = torch.tensor([encode(i) for i in range(len(rows))], dtype=torch.long)
Y = torch.from_numpy(labels)

# --- baseline: bag of characters, logistic regression ---------------------------------------
counts = np.zeros((len(rows), V))
for i, t in enumerate(texts):
    for ch in t:
        counts[i, ix.get(ch, 1)] += 1
    counts[i] /= max(len(t), 1)
F = torch.tensor(counts, dtype=torch.float64)
mu, sd = F[train_i].mean(0), F[train_i].std(0) + 1e-9
F = (F - mu) / sd
w = torch.zeros(V, dtype=torch.float64, requires_grad=True)
b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")
ytr = Y[train_i].double()


def closure():
    opt.zero_grad()
    z = F[train_i] @ w + b
    loss = nn.functional.binary_cross_entropy_with_logits(z, ytr) + 1e-4 * (w * w).sum()
    loss.backward()
    return loss


opt.step(closure)
with torch.no_grad():
    acc = (((F[test_i] @ w + b) > 0).long() == Y[test_i]).double().mean().item()
print(json.dumps({"model": "bag_of_chars_logreg", "test_accuracy": acc}), flush=True)


# --- the Transformer --------------------------------------------------------------------------
class Classifier(nn.Module):
    def __init__(s):
        super().__init__()
        s.emb = nn.Embedding(V, a.d)
        s.pos = nn.Parameter(torch.randn(a.max_len, a.d) * 0.02)
        s.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(a.d, a.heads, a.ff, dropout=0.1, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(a.blocks))
        s.out = nn.Linear(a.d, 2)

    def forward(s, x):
        keep = x != 0
        h = s.emb(x) + s.pos[: x.shape[1]]
        for blk in s.blocks:
            h = blk(h, src_key_padding_mask=~keep)
        k = keep.unsqueeze(-1).to(h.dtype)
        return s.out((h * k).sum(1) / k.sum(1).clamp(min=1))


m = Classifier()
opt = torch.optim.Adam(m.parameters(), lr=a.lr)
lossf = nn.CrossEntropyLoss()
for ep in range(a.epochs):
    m.train()
    g = torch.Generator().manual_seed(a.seed + ep)
    perm = torch.from_numpy(train_i)[torch.randperm(len(train_i), generator=g)]
    t0, cpu0, tot, nb = time.perf_counter(), time.process_time(), 0.0, 0
    for s in range(0, len(perm), a.batch):
        bi = perm[s : s + a.batch]
        loss = lossf(m(X[bi]), Y[bi])
        opt.zero_grad()
        loss.backward()
        opt.step()
        tot += loss.item()
        nb += 1
    secs = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    m.eval()
    with torch.no_grad():
        pred = torch.cat([m(X[test_i[s : s + 500]]).argmax(1) for s in range(0, len(test_i), 500)])
    acc = (pred == Y[test_i]).double().mean().item()
    print(json.dumps({"model": "transformer", "framework": "torch", "version": torch.__version__,
                      "threads": a.threads, "epoch": ep + 1, "loss": tot / nb, "test_accuracy": acc,
                      "seconds": secs, "cpu_seconds": cpu, "samples_per_s": len(perm) / secs}),
          flush=True)
