#!/usr/bin/env bash
# ember vs numpy's OpenBLAS SGEMM in ONE process, alternating blocks of calls (see
# examples/sgemm_vs_blas.rs for why and how): the cleanest comparison on a noisy machine.
#
#   scripts/sgemm-paired.sh [ROUNDS] [SHAPES] [THREADS]     e.g. scripts/sgemm-paired.sh 30 512,1024 1
#
# - Puts numpy in a venv OUTSIDE the repo (~/.venvs/np; override with NP_VENV) only to get its
#   OpenBLAS shared library; numpy is a benchmark aid, not a dependency.
# - Unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (they can pin a slower kernel); the JSON
#   names the kernel OpenBLAS chose (`blas_core`).
# - One thread is the clean case: with more, two thread pools compete for the cores.
# Prints one JSON line per shape (raw) and a table; OUT (default target/sgemm-paired.jsonl)
# keeps the JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-30}
SHAPES=${2:-512,1024,2048,256x784x512,256x512x512,256x512x10,256x512x1}
THREADS=${3:-1}
NP_VENV=${NP_VENV:-$HOME/.venvs/np}
OUT=${OUT:-target/sgemm-paired.jsonl}
if [ ! -x "$NP_VENV/bin/python" ]; then
  python3 -m venv "$NP_VENV"
  "$NP_VENV/bin/pip" install --quiet numpy threadpoolctl
fi
LIB=$(find "$NP_VENV" -name 'libscipy_openblas*.so*' -o -name 'libopenblas*.so*' | head -1)
[ -n "$LIB" ] || { echo "no OpenBLAS library found under $NP_VENV" >&2; exit 1; }
cargo build --release --example sgemm_vs_blas >&2
mkdir -p "$(dirname "$OUT")"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS="$THREADS" \
  ./target/release/examples/sgemm_vs_blas --lib "$LIB" --threads "$THREADS" \
  --rounds "$ROUNDS" --shapes "$SHAPES" > "$OUT"
python3 - "$OUT" <<'PY'
import json, sys
print(f"{'shape MxKxN':>16} thr   ember best/p10/median     BLAS best/p10/median   ratio median [range]   ember ahead")
for line in open(sys.argv[1]):
    d = json.loads(line)
    s = f"{d['m']}x{d['k']}x{d['n']}"
    print(f"{s:>16} {d['threads']:>3}   {d['ember_best']:6.1f} {d['ember_p10']:6.1f} {d['ember_median']:6.1f}"
          f"    {d['blas_best']:6.1f} {d['blas_p10']:6.1f} {d['blas_median']:6.1f}"
          f"   {d['ratio_median']:.3f} [{d['ratio_min']:.2f}, {d['ratio_max']:.2f}]"
          f"   {d['rounds_ember_ahead']:>3}/{d['rounds']}   ({d['blas_core']})")
PY
