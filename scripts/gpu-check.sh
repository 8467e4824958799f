#!/usr/bin/env bash
# gpu-check.sh: run ember's CUDA tests and kernel lab on a GPU machine from binaries built
# elsewhere (the GPU machine has no Rust toolchain and no network).
#
# 1. On the build machine (any Linux x86-64 with Rust; no GPU, no CUDA needed):
#        scripts/gpu-check.sh --collect .cache/gpu-bin
#    builds `cargo test --release -p ember-cuda --no-run` (and ember-core's `cuda` test), the
#    `cuda_bench` example and, when the
#    root package builds (skip with EMBER_COLLECT_CLI=0), the `ember` binary; copies the executables, stripped, into
#    .cache/gpu-bin/{tests,bin}. (.cache is git-ignored: carry it to the GPU machine, e.g. with
#    the device tool's `carry: [".cache/gpu-bin"]`.)
# 2. On the GPU machine, from the repository root:
#        scripts/gpu-check.sh .cache/gpu-bin
#    prints the device, driver and library locations, runs every test binary with
#    EMBER_REQUIRE_GPU=1 EMBER_REQUIRE_NVRTC=1 (a skip is a failure there), then `ember train
#    --device cuda` (the main job on the GPU, with its steps per second), then the kernel lab
#    (`ember bench --device cuda --json`, or `cuda_bench --json`), and ends with a short table.
#    Logs go under $OUT (if set) or ./gpu-check-logs. EMBER_BENCH_QUICK=1 runs the lab with
#    small sizes (a smoke test); EMBER_BENCH_SUITE=gemm|elementwise|loss|all picks a suite.
# Exit status: 0 when every test binary passed and the bench ran, 1 otherwise.
set -uo pipefail

if [ "${1:-}" = "--collect" ]; then
  dest="${2:?usage: gpu-check.sh --collect DIR}"
  cd "$(dirname "$0")/.."
  mkdir -p "$dest/tests" "$dest/bin"
  rm -f "$dest"/tests/* "$dest"/bin/*
  # ember-cuda's tests, and ember-core's GPU-vs-CPU test (tensors, autograd and Adam on CUDA).
  { cargo test --release -p ember-cuda --no-run --message-format=json 2>/dev/null &&
    cargo test --release -p ember-core --test cuda --no-run --message-format=json 2>/dev/null; } |
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    exe = m.get("executable")
    if m.get("reason") == "compiler-artifact" and exe and m.get("profile", {}).get("test"):
        print(exe)
' > "$dest/tests.list" || { echo "cargo test --no-run failed" >&2; exit 1; }
  while read -r exe; do
    name=$(basename "$exe" | sed 's/-[0-9a-f]\{16\}$//')
    cp "$exe" "$dest/tests/$name"
  done < "$dest/tests.list"
  rm -f "$dest/tests.list"
  cargo build --release -p ember-cuda --example cuda_bench -q && cp target/release/examples/cuda_bench "$dest/bin/"
  # The CLI (root package) is optional: EMBER_COLLECT_CLI=0 skips it.
  if [ "${EMBER_COLLECT_CLI:-1}" = 1 ] && cargo build --release --bin ember -q 2>/dev/null; then
    cp target/release/ember "$dest/bin/"
  fi
  for f in "$dest"/tests/* "$dest"/bin/*; do strip --strip-debug "$f" 2>/dev/null || true; done
  ls -la "$dest/tests" "$dest/bin"
  du -sh "$dest"
  exit 0
fi

BIN="${1:?usage: gpu-check.sh BIN_DIR   (or --collect BIN_DIR on the build machine)}"
LOG="${OUT:-$PWD/gpu-check-logs}"
mkdir -p "$LOG"
say() { echo "== $*" | tee -a "$LOG/summary.txt"; }
: > "$LOG/summary.txt"

say "gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
say "nvidia-smi"
nvidia-smi 2>&1 | tee "$LOG/nvidia-smi.txt" || echo "(nvidia-smi failed)"
nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total,clocks.max.sm --format=csv 2>&1 | tee -a "$LOG/summary.txt"

say "libraries"
ldconfig -p 2>/dev/null | grep -E 'libcuda\.so|libnvrtc|libcublas' | tee "$LOG/ldconfig.txt"
# Find libnvrtc.so.13 and libcublas.so.13: the toolkit, then any pip nvidia/cu13/lib folder.
extra=""
for d in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 \
         $(python3 -c 'import site,sys; print(" ".join(site.getsitepackages()+[site.getusersitepackages()]))' 2>/dev/null | tr ' ' '\n' | sed 's|$|/nvidia/cu13/lib|'); do
  for lib in libnvrtc.so.13 libcublas.so.13 libcublasLt.so.13; do
    if [ -e "$d/$lib" ]; then
      echo "found $d/$lib" | tee -a "$LOG/summary.txt"
      case ":$extra:" in *":$d:"*) ;; *) extra="$extra:$d" ;; esac
    fi
  done
done
export LD_LIBRARY_PATH="${extra#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
say "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
for c in /usr/local/cuda/bin/cuobjdump "$(command -v cuobjdump 2>/dev/null)"; do
  if [ -n "$c" ] && [ -x "$c" ]; then export EMBER_CUOBJDUMP="$c"; break; fi
done
say "EMBER_CUOBJDUMP=${EMBER_CUOBJDUMP:-<none>}"

export EMBER_REQUIRE_GPU=1 EMBER_REQUIRE_NVRTC=1
status=0
results=()
for t in "$BIN"/tests/*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  start=$(date +%s.%N)
  if "$t" --test-threads=1 > "$LOG/test-$name.log" 2>&1; then r=PASS; else r=FAIL; status=1; fi
  secs=$(python3 -c "import time; print(f'{time.time()-$start:.1f}')" 2>/dev/null || echo "?")
  passed=$(grep -c '\.\.\. ok$' "$LOG/test-$name.log")
  failed=$(grep -c '\.\.\. FAILED$' "$LOG/test-$name.log")
  results+=("$(printf '%-22s %-5s %4s ok %4s failed %7ss' "$name" "$r" "$passed" "$failed" "$secs")")
  say "test $name: $r ($passed ok, $failed failed, ${secs}s)"
  [ "$r" = FAIL ] && tail -40 "$LOG/test-$name.log"
done

# The main job on the GPU: the seed model trained end to end with CUDA tensors (batch losses
# stay on the device until each epoch ends); its last line gives optimizer steps per second.
if [ -x "$BIN/bin/ember" ]; then
  if "$BIN/bin/ember" train --device cuda > "$LOG/train-cuda.log" 2>&1; then
    say "ember train --device cuda: $(grep -E 'accuracy|Trained' "$LOG/train-cuda.log" | tail -2 | tr '\n' ' ')"
  else
    status=1
    say "ember train --device cuda failed:"
    tail -5 "$LOG/train-cuda.log"
  fi
fi

suite="${EMBER_BENCH_SUITE:-all}"
quick=""
[ "${EMBER_BENCH_QUICK:-0}" = 1 ] && quick="--quick"
say "kernel lab ($suite $quick)"
if [ -x "$BIN/bin/ember" ] && "$BIN/bin/ember" bench --help 2>/dev/null | grep -q -- --device; then
  "$BIN/bin/ember" bench --device cuda "$suite" --json > "$LOG/bench.jsonl" 2> "$LOG/bench.err"
else
  "$BIN/bin/cuda_bench" "$suite" --json $quick > "$LOG/bench.jsonl" 2> "$LOG/bench.err"
fi
brc=$?
[ $brc -ne 0 ] && { status=1; say "bench failed (rc $brc):"; cat "$LOG/bench.err"; }

say "summary"
{
  printf '%s\n' "${results[@]}"
  echo
  python3 - "$LOG/bench.jsonl" <<'PY' 2>/dev/null || cat "$LOG/bench.jsonl"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'kernel':<14} {'version':<9} {'dtype':<5} {'shape':<16} {'ms':>9} {'rate':>13} {'% of ceiling':>18}")
for r in rows:
    rate = f"{r['tflops']:.2f} TFLOP/s" if r.get("tflops") is not None else (
        f"{r['gbps']:.0f} GB/s" if r.get("gbps") is not None else "-")
    pct = f"{r['pct_of_ceiling']:.1f}% {r['ceiling']}" if r.get("pct_of_ceiling") is not None else "-"
    print(f"{r['kernel']:<14} {r['version']:<9} {r['dtype']:<5} {r['shape']:<16} {r['time_ms']:>9.4f} {rate:>13} {pct:>18}")
PY
} | tee -a "$LOG/summary.txt"
say "logs in $LOG; exit $status"
exit $status
