#!/usr/bin/env bash
# ember's conv2d beside PyTorch's, interleaved: for each round and thread count, `ember bench
# conv` then scripts/peers/conv_py.py, so both see the same machine load. Prints the JSON lines
# (ember's and torch's) and a median table; OUT (default target/conv-paired.jsonl) keeps them.
#
#   scripts/conv-paired.sh [ROUNDS] [THREADS...]      e.g. scripts/conv-paired.sh 3 1 2
#
# TORCH_PY (default /work/venv-torch/bin/python) is a Python with torch installed. On a shared
# machine compare the one-thread `cpu_fwd_bwd_ms` (thread/process CPU time, which other
# processes do not inflate); wall times are printed too.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
shift || true
THREADS=${*:-1 2}
TORCH_PY=${TORCH_PY:-/work/venv-torch/bin/python}
OUT=${OUT:-target/conv-paired.jsonl}
cargo build --release --bin ember >&2
mkdir -p "$(dirname "$OUT")"
: > "$OUT"
for r in $(seq "$ROUNDS"); do
  for t in $THREADS; do
    echo "# round $r, $t thread(s), load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    ./target/release/ember bench conv --threads "$t" --min-time 0.5 --json | grep '"bench":"conv"' \
      | sed 's/^{/{"lib":"ember",/' >> "$OUT"
    "$TORCH_PY" scripts/peers/conv_py.py --threads "$t" --min-time 0.5 \
      | sed 's/^{/{"lib":"torch",/' >> "$OUT"
  done
done
python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
key = lambda r: (r["shape"], r["threads"])
print(f"{'shape':<12} {'thr':>3} {'lib':<6} {'fwd+bwd wall ms':>16} {'GFLOP/s':>8} {'cpu ms (1 thr)':>15} {'GFLOP/s':>8}")
for k in sorted({key(r) for r in rows}):
    for lib in ("ember", "torch"):
        rs = [r for r in rows if key(r) == k and r["lib"] == lib]
        if not rs:
            continue
        wall = statistics.median(r["fwd_bwd_ms"] for r in rs)
        gw = statistics.median(r["fwd_bwd_gflops"] for r in rs)
        cpu = [r["cpu_fwd_bwd_ms"] for r in rs if r.get("cpu_fwd_bwd_ms") is not None]
        gc = [r["cpu_fwd_bwd_gflops"] for r in rs if r.get("cpu_fwd_bwd_gflops") is not None]
        c = f"{statistics.median(cpu):15.2f} {statistics.median(gc):8.1f}" if cpu else f"{'-':>15} {'-':>8}"
        print(f"{k[0]:<12} {k[1]:>3} {lib:<6} {wall:16.2f} {gw:8.1f} {c}")
PY
