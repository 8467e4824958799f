#!/bin/bash
# Interleaved rounds of issue 15's sequence benchmarks beside PyTorch (BENCHMARKS.md, "Sequential
# MNIST", "Character LSTM" and "Attention"): each round runs ember then the peer, so both see the
# same load; compare medians over rounds.
#   scripts/peers/seq-pair.sh EMBER_BINARY [ROUNDS] [PYTHON]
# Needs ../shared/peers/seq_cnn_peers.py beside the repository (or SEQ_PEERS=path), data/mnist,
# and data/text/kjv.txt.gz; PYTHON is a venv with torch (default /work/venv-torch/bin/python).
# Per round it prints:
#   lstm 1 thread: ember `bench lstm` (wall samples/s and samples per CPU-second) and the peer's
#     epoch of 60 batches under scripts/peers/cpu_clock.py (samples per process CPU-second),
#     then the peer's wall samples/s at 1 and 2 threads and ember's at 2 threads;
#   attention: ember `bench attention` (T 128 and the encoder block) and attention_py.py;
#   char LM, 1 thread: process CPU seconds of `ember train` (40 batches of 64 windows of 100)
#     and the peer's training loop over the same 40 batches (windows per CPU-second).
set -u
EMBER=${1:?usage: seq-pair.sh EMBER_BINARY [ROUNDS] [PYTHON]}
ROUNDS=${2:-3}
PY=${3:-/work/venv-torch/bin/python}
PEERS=${SEQ_PEERS:-../shared/peers/seq_cnn_peers.py}
cd "$(dirname "$0")/../.."
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r, load $(cut -d' ' -f1-3 /proc/loadavg)"
  "$EMBER" bench lstm --threads 1 --min-time 2 2>&1 | grep '^lstm'
  "$PY" scripts/peers/cpu_clock.py "$PEERS" --framework torch --task lstm --threads 1 \
    --epochs 1 --max-batches 60 --data data 2>/dev/null | tail -1 | sed 's/^/peer-cpu /'
  "$EMBER" bench lstm --threads 2 --min-time 2 2>&1 | grep '^lstm'
  for th in 1 2; do
    "$PY" "$PEERS" --framework torch --task lstm --threads $th --epochs 1 --max-batches 60 \
      --data data 2>/dev/null | tail -1 | sed "s/^/peer-wall-$th /"
  done
  "$EMBER" bench attention --threads 1 2>&1 | grep -E 'T128|encoder'
  "$PY" scripts/peers/attention_py.py --threads 1 --lengths 128 2>/dev/null
  /usr/bin/time -f "ember-charlm cpu_s %U %S" "$EMBER" train --data data/text/kjv.txt.gz --task lm \
    --model examples/models/char_lm.toml --epochs 1 --threads 1 --train-chars 256100 \
    --val-chars 2000 --json 2>&1 | grep -E 'cpu_s' 
  "$PY" scripts/peers/cpu_clock.py "$PEERS" --framework torch --task charlm --threads 1 \
    --epochs 1 --max-batches 40 --data ../shared/data 2>/dev/null | tail -1 | sed 's/^/peer-charlm /'
done
