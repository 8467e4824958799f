#!/usr/bin/env bash
# step-instructions.sh: instructions per training step (callgrind), noise-free, for the seed
# model and 784-512-512-1 on the core API (examples/step_loop.rs). Each figure is
# (instructions of N2 steps − instructions of N1 steps) / (N2 − N1), which removes start-up.
# Usage: scripts/step-instructions.sh [BINARY]   (default: builds the release example)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-}"
if [ -z "$bin" ]; then
  cargo build --release --example step_loop -q
  bin=target/release/examples/step_loop
fi
count() { # model steps -> total instructions
  local out; out=$(mktemp)
  RAYON_NUM_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" "$1" "$2" >/dev/null 2>&1
  grep -E '^(summary|totals):' "$out" | head -1 | awk '{print $2}'
  rm -f "$out"
}
for spec in "seed 1000 3000" "784-512-512-1 2 6"; do
  set -- $spec
  a=$(count "$1" "$2"); b=$(count "$1" "$3")
  echo "$1: $(( (b - a) / ($3 - $2) )) instructions per step"
done
