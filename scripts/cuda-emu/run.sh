#!/usr/bin/env bash
# run.sh: builds the CPU emulations of kernels/pool.cu, conv.cu and qgemm.cu (cuda_emu.h) with g++
# and runs them; each prints its failures and "N failures", and exits non-zero on any.
# Usage: scripts/cuda-emu/run.sh [pool|conv|qgemm|all] [FILTER]
#   FILTER runs only the conv specs whose name contains it (e.g. depthwise). The full conv run
#   takes minutes on 2 loaded cores (the emulator switches 256 fibers at every barrier).
# Build products go to ${TMPDIR:-/tmp}/ember-cuda-emu.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="${TMPDIR:-/tmp}/ember-cuda-emu"
mkdir -p "$out"
what="${1:-all}"
status=0
for k in pool conv qgemm; do
  [ "$what" = all ] || [ "$what" = "$k" ] || continue
  g++ -std=c++20 -O2 -Wall -Wno-unused-function -Wno-unknown-pragmas "$here/${k}_emu.cpp" -o "$out/${k}_emu"
  echo "== $k"
  "$out/${k}_emu" ${2:+"$2"} || status=1
done
exit $status
