#!/usr/bin/env bash
# gpu-check.sh: run ember's CUDA tests, a memory check and the kernel lab on a GPU machine from
# binaries built elsewhere (the GPU machine needs no Rust toolchain, no network, and at the
# least only an NVIDIA driver).
#
# 1. On the build machine (any Linux x86-64 with Rust; no GPU, no CUDA needed):
#        scripts/gpu-check.sh --collect .cache/gpu-bin
#    builds `cargo test --release -p ember-cuda --no-run` (and ember-core's `cuda` test), the
#    `cuda_bench`, `conv_bench` and `precompile` examples and, when the root package builds
#    (skip with EMBER_COLLECT_CLI=0), the `ember` binary, and fills .cache/gpu-bin with:
#      tests/  the test executables, stripped of debug info
#      bin/    ember, cuda_bench, conv_bench
#      cubin.tar.xz  every kernel module precompiled for sm_80 and sm_90a (<module>.<arch>.cubin,
#              for EMBER_CUDA_KERNEL_DIR), so the GPU machine needs no NVRTC; xz-compressed
#              (12 MB of CUBINs pack into under 1 MB), unpacked by the run side
#      lib/    nvrtc.tar.xz: libnvrtc.so.13 and its builtins from the PyPI wheel, xz-compressed
#              (113 MB raw would not fit the device tool's 64 MiB carry; skip with
#              EMBER_COLLECT_NVRTC=0)
#      MANIFEST.txt  the commit, the dirty state and what was built
#    NVRTC for the precompile step comes from scripts/cuda-wheels.sh (PyPI). .cache is
#    git-ignored: carry the folder to the GPU machine, e.g. the device tool's
#    `carry: [".cache/gpu-bin"]`.
# 2. On the GPU machine, from the repository root:
#        scripts/gpu-check.sh .cache/gpu-bin
#    prints the device, driver and library locations; finds NVRTC (CUDA toolkit, pip's
#    nvidia/cu13/lib, else the bundled copy, unpacked with the CUBINs under
#    ${TMPDIR:-/tmp}/ember-gpu-check) and sets EMBER_CUDA_KERNEL_DIR to the CUBINs when no
#    system NVRTC exists (EMBER_GPU_CHECK_CUBIN=1 sets it anyway); runs every test binary with
#    EMBER_REQUIRE_GPU=1 EMBER_REQUIRE_NVRTC=1 (a skip is a failure there; NVRTC is only
#    required when NVRTC and cuobjdump were found); runs compute-sanitizer memcheck over the GEMM tests
#    (forced 128x128/64x64 tiles), the empty-tensor tests and the conv and pool tests when
#    compute-sanitizer exists;
#    `ember train --device cuda` (steps per second); then the kernel lab (`ember bench --device
#    cuda --json`, or `cuda_bench --json`); the convolution timings (`conv_bench`); and ends with
#    a summary table.
#    Every step runs under `timeout`, and the whole run under a budget (EMBER_GPU_CHECK_BUDGET,
#    default 570 s): a step gets at most what is left, so one hung step cannot eat the GPU time.
#    Logs go under $OUT (if set) or ./gpu-check-logs. EMBER_BENCH_QUICK=1 runs the lab with
#    small sizes (`--quick`, a smoke test); EMBER_BENCH_SUITE=gemm|elementwise|loss|all picks a
#    suite. EMBER_REQUIRE_GPU=0 lets the GPU tests skip (a dry run on a machine without one).
# Exit status: 0 when every test binary passed, memcheck found nothing, and train and bench
# ran; 1 otherwise.
set -uo pipefail

ARCHS="sm_80 sm_90a"
NVRTC_LIBS="libnvrtc.so.13 libnvrtc-builtins.so.13.0"

if [ "${1:-}" = "--collect" ]; then
  dest="${2:?usage: gpu-check.sh --collect DIR}"
  cd "$(dirname "$0")/.."
  mkdir -p "$dest"/{tests,bin,lib}
  rm -rf "$dest"/tests/* "$dest"/bin/* "$dest/cubin" "$dest/cubin.tar.xz" "$dest/MANIFEST.txt"
  find "$dest/lib" -type f ! -name nvrtc.tar.xz -delete
  blog="$dest/build.log"
  : > "$blog"
  fail() { echo "collect: $*" >&2; tail -30 "$blog" >&2; exit 1; }
  # NVRTC (PyPI wheel) for the precompile step; without it the cubins are missing (warned below).
  # shellcheck source=scripts/cuda-wheels.sh
  source scripts/cuda-wheels.sh >> "$blog" 2>&1 || echo "collect: warning: the NVRTC wheel could not be installed" >&2

  # ember-cuda's tests, and ember-core's GPU-vs-CPU test (tensors, autograd and Adam on CUDA).
  { nice -n 10 cargo test --release -p ember-cuda --no-run --message-format=json 2>> "$blog" &&
    nice -n 10 cargo test --release -p ember-core --test cuda --no-run --message-format=json 2>> "$blog"; } |
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
' > "$dest/tests.list" || fail "cargo test --no-run failed"
  while read -r exe; do
    name=$(basename "$exe" | sed 's/-[0-9a-f]\{16\}$//')
    cp "$exe" "$dest/tests/$name"
  done < "$dest/tests.list"
  rm -f "$dest/tests.list"
  nice -n 10 cargo build --release -p ember-cuda --example cuda_bench --example precompile \
    --example conv_bench -q >> "$blog" 2>&1 ||
    fail "building the cuda_bench, conv_bench and precompile examples failed"
  cp target/release/examples/cuda_bench target/release/examples/conv_bench "$dest/bin/"
  # The CLI (root package) is optional: EMBER_COLLECT_CLI=0 skips it.
  if [ "${EMBER_COLLECT_CLI:-1}" = 1 ]; then
    if nice -n 10 cargo build --release --bin ember -q >> "$blog" 2>&1; then
      cp target/release/ember "$dest/bin/"
    else
      echo "collect: warning: the ember CLI did not build (see $blog); the lab will use cuda_bench" >&2
    fi
  fi
  for f in "$dest"/tests/* "$dest"/bin/*; do strip --strip-debug "$f" 2>/dev/null || true; done

  # Every kernel module as a CUBIN per target arch (NVRTC here, no GPU).
  # shellcheck disable=SC2086
  if target/release/examples/precompile "$dest/cubin" $ARCHS; then
    tar -C "$dest/cubin" -cJf "$dest/cubin.tar.xz" . && rm -rf "$dest/cubin"
  else
    echo "collect: warning: no precompiled kernels (NVRTC missing?): the GPU machine will need NVRTC" >&2
  fi

  # NVRTC itself, for a GPU machine with only a driver (the nvrtc_compile tests and any arch
  # without a CUBIN need it). Compressed once; reused while the wheel's library is unchanged.
  wl=.cache/cuda-wheels/nvidia/cu13/lib
  tarball="$dest/lib/nvrtc.tar.xz"
  if [ "${EMBER_COLLECT_NVRTC:-1}" = 1 ] && [ -e "$wl/libnvrtc.so.13" ]; then
    if [ ! -e "$tarball" ] || [ "$wl/libnvrtc.so.13" -nt "$tarball" ]; then
      echo "collect: compressing NVRTC (about a minute)" >&2
      # shellcheck disable=SC2086
      XZ_OPT="-6 -T2" tar -C "$wl" -cJf "$tarball.tmp" $NVRTC_LIBS && mv "$tarball.tmp" "$tarball" ||
        { rm -f "$tarball.tmp"; echo "collect: warning: could not pack NVRTC" >&2; }
    fi
  else
    rm -f "$tarball"
  fi

  {
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (plus uncommitted changes)')"
    echo "built:  $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
    echo "tests:  $(ls "$dest/tests" | tr '\n' ' ')"
    echo "bin:    $(ls "$dest/bin" | tr '\n' ' ')"
    echo "cubin:  $(tar -tJf "$dest/cubin.tar.xz" 2>/dev/null | grep -c '\.cubin$') files for $ARCHS in cubin.tar.xz"
    echo "lib:    $(ls "$dest/lib" | tr '\n' ' ')"
  } > "$dest/MANIFEST.txt"
  cat "$dest/MANIFEST.txt"
  ls -la "$dest" "$dest"/tests "$dest"/bin "$dest"/lib
  du -sh "$dest"
  mib=$(du -sm "$dest" | cut -f1)
  if [ "$mib" -gt 58 ]; then
    echo "collect: warning: $dest is ${mib} MiB; the device tool carries at most 64 MiB together with the working tree (about 4 MiB): EMBER_COLLECT_NVRTC=0 drops NVRTC (32 MiB)" >&2
  fi
  exit 0
fi

BIN="${1:?usage: gpu-check.sh BIN_DIR   (or --collect BIN_DIR on the build machine)}"
BIN=$(cd "$BIN" && pwd) || exit 1
LOG="${OUT:-$PWD/gpu-check-logs}"
mkdir -p "$LOG"
: > "$LOG/summary.txt"
say() { echo "== $*" | tee -a "$LOG/summary.txt"; }
now() { date +%s.%N; }
T0=$(now)
BUDGET="${EMBER_GPU_CHECK_BUDGET:-570}"
status=0
rows=()

# Seconds a step may take: its own limit, capped by what is left of the budget (0: none left).
limit() {
  awk -v t0="$T0" -v t1="$(now)" -v b="$BUDGET" -v want="$1" \
    'BEGIN { left = int(b - (t1 - t0)); if (left < 5) left = 0; print (want < left ? want : left) }'
}
# run_step NAME LIMIT LOGFILE CMD...: runs CMD under timeout, sets $rc and $secs.
run_step() {
  local name=$1 want=$2 logf=$3
  shift 3
  local t
  t=$(limit "$want")
  if [ "$t" = 0 ]; then
    rc=125
    secs=0
    echo "(skipped: the ${BUDGET}s budget is spent)" > "$logf"
    return
  fi
  local s
  s=$(now)
  timeout -k 10 "$t" "$@" > "$logf" 2>&1
  rc=$?
  secs=$(awk -v a="$s" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
  [ $rc -eq 124 ] || [ $rc -eq 137 ] && echo "(killed after ${t}s)" >> "$logf"
}
row() { rows+=("$(printf '%-32s %-12s %7ss  %s' "$1" "$2" "$3" "$4")"); }

say "gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), budget ${BUDGET}s"
[ -e "$BIN/MANIFEST.txt" ] && sed 's/^/   /' "$BIN/MANIFEST.txt" | tee -a "$LOG/summary.txt"
say "nvidia-smi"
if command -v nvidia-smi > /dev/null; then
  timeout 20 nvidia-smi 2>&1 | tee "$LOG/nvidia-smi.txt"
  timeout 20 nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total,clocks.max.sm \
    --format=csv 2>&1 | tee -a "$LOG/summary.txt"
else
  echo "(nvidia-smi not found: no NVIDIA driver here)" | tee -a "$LOG/summary.txt"
fi

say "libraries"
ldconfig -p 2>/dev/null | grep -E 'libcuda\.so|libnvrtc|libcublas' | tee "$LOG/ldconfig.txt"
# libnvrtc.so.13 and libcublas.so.13: the toolkit, then any pip nvidia/cu13/lib folder.
extra=""
nvrtc=""
ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so\.13' && nvrtc="system (linker cache)"
pydirs=$(timeout 20 python3 -c 'import site; print(" ".join(site.getsitepackages()+[site.getusersitepackages()]))' 2>/dev/null)
for d in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 \
         $(echo "$pydirs" | tr ' ' '\n' | sed -n 's|.\+|&/nvidia/cu13/lib|p'); do
  for lib in libnvrtc.so.13 libcublas.so.13 libcublasLt.so.13; do
    if [ -e "$d/$lib" ]; then
      echo "found $d/$lib" | tee -a "$LOG/summary.txt"
      [ "$lib" = libnvrtc.so.13 ] && [ -z "$nvrtc" ] && nvrtc="system ($d)"
      case ":$extra:" in *":$d:"*) ;; *) extra="$extra:$d" ;; esac
    fi
  done
done
# The bundled pieces are unpacked outside BIN, so BIN stays small enough to carry again.
UNPACK="${TMPDIR:-/tmp}/ember-gpu-check"
if [ -z "$nvrtc" ] && [ -e "$BIN/lib/nvrtc.tar.xz" ]; then
  nl="$UNPACK/lib"
  rm -rf "$nl" && mkdir -p "$nl"
  if tar -C "$nl" -xJf "$BIN/lib/nvrtc.tar.xz" 2>> "$LOG/summary.txt"; then
    nvrtc="bundled ($nl)"
    extra="$nl$extra"
  fi
fi
export LD_LIBRARY_PATH="${extra#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cubins=""
if [ -e "$BIN/cubin.tar.xz" ]; then
  cubins="$UNPACK/cubin"
  rm -rf "$cubins" && mkdir -p "$cubins" && tar -C "$cubins" -xJf "$BIN/cubin.tar.xz" || cubins=""
fi
say "precompiled kernels: ${cubins:-<none>} ($(ls "${cubins:-/nonexistent}" 2>/dev/null | grep -c '\.cubin$') CUBINs)"
say "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
say "NVRTC: ${nvrtc:-none}"
if [ -z "$nvrtc" ] || [ "${nvrtc%% *}" != system ] || [ "${EMBER_GPU_CHECK_CUBIN:-0}" = 1 ]; then
  [ -n "$cubins" ] && export EMBER_CUDA_KERNEL_DIR="$cubins"
fi
say "EMBER_CUDA_KERNEL_DIR=${EMBER_CUDA_KERNEL_DIR:-<unset: kernels compiled by NVRTC>}"
for c in "$(command -v cuobjdump 2>/dev/null)" /usr/local/cuda/bin/cuobjdump; do
  if [ -n "$c" ] && [ -x "$c" ]; then export EMBER_CUOBJDUMP="$c"; break; fi
done
say "EMBER_CUOBJDUMP=${EMBER_CUOBJDUMP:-<none>}"
sanitizer=""
for c in "$(command -v compute-sanitizer 2>/dev/null)" /usr/local/cuda/bin/compute-sanitizer \
         /usr/local/cuda-*/bin/compute-sanitizer; do
  if [ -n "$c" ] && [ -x "$c" ]; then sanitizer="$c"; break; fi
done
say "compute-sanitizer: ${sanitizer:-<none>}"

export EMBER_REQUIRE_GPU="${EMBER_REQUIRE_GPU:-1}"
# NVRTC is required only where the compile tests can run in full (they also need cuobjdump);
# else they skip with a SKIPPED line: they already passed on the build machine.
if [ -n "$nvrtc" ] && [ -n "${EMBER_CUOBJDUMP:-}" ]; then
  export EMBER_REQUIRE_NVRTC=1
else
  unset EMBER_REQUIRE_NVRTC
fi
say "EMBER_REQUIRE_GPU=$EMBER_REQUIRE_GPU EMBER_REQUIRE_NVRTC=${EMBER_REQUIRE_NVRTC:-0}"

# Tests, cheapest and most telling first; nvrtc_compile (already run on the build machine) last.
order="ember_cuda discovery kernel_dir gpu_empty gpu_gemm gpu_elementwise gpu_reduce gpu_index gpu_loss_optim conv pool cuda nvrtc_compile"
tests=()
for n in $order; do [ -x "$BIN/tests/$n" ] && tests+=("$BIN/tests/$n"); done
for t in "$BIN"/tests/*; do
  case " $order " in *" $(basename "$t") "*) ;; *) [ -x "$t" ] && tests+=("$t") ;; esac
done
for t in "${tests[@]}"; do
  name=$(basename "$t")
  lf="$LOG/test-$name.log"
  args=(--test-threads=1)
  # kernel_dir's NVRTC half (precompiling both archs again, ~20 s) ran on the build machine.
  [ "$name" = kernel_dir ] && args+=(--skip precompile_writes_a_cubin_per_module_and_arch)
  run_step "$name" "${EMBER_GPU_CHECK_TEST_LIMIT:-150}" "$lf" "$t" "${args[@]}"
  # Counts from libtest's own summary (a SKIPPED line on stderr can split a "... ok" line).
  passed=$(sed -n 's/^test result: .* \([0-9]\+\) passed.*/\1/p' "$lf" | tail -1)
  failed=$(sed -n 's/^test result: .* \([0-9]\+\) failed.*/\1/p' "$lf" | tail -1)
  passed=${passed:-0} failed=${failed:-0}
  skips=$(grep -o 'SKIPPED:' "$lf" | wc -l)
  case $rc in
    0) r=PASS ;;
    124 | 137) r=TIMEOUT; status=1 ;;
    125) r=NOT-RUN; status=1 ;;
    *) r=FAIL; status=1 ;;
  esac
  row "test $name" "$r" "$secs" "$passed ok, $failed failed, $skips skipped"
  say "test $name: $r ($passed ok, $failed failed, $skips skipped, ${secs}s)"
  if [ "$r" != PASS ] && [ "$r" != NOT-RUN ]; then
    grep -E "panicked|EMBER_REQUIRE|Error|error" "$lf" | head -8
    tail -5 "$lf"
  fi
done

# compute-sanitizer memcheck over the GEMM kernels (forced 128x128 and 64x64 tiles on ragged
# shapes), the empty-tensor tests, and the convolution and pooling kernels (ragged specs with
# padding, stride, dilation, groups, split-K): any out-of-bounds or misaligned access is an error.
if [ -n "$sanitizer" ]; then
  for spec in "gpu_gemm forced_tiles" "gpu_empty" "conv" "pool"; do
    set -- $spec
    exe="$BIN/tests/$1"
    [ -x "$exe" ] || continue
    lf="$LOG/memcheck-$1.log"
    run_step "memcheck $1" "${EMBER_GPU_CHECK_SANITIZER_LIMIT:-150}" "$lf" \
      "$sanitizer" --tool memcheck --error-exitcode 99 --print-limit 30 "$exe" --test-threads=1 ${2:-}
    summary=$(grep -E 'ERROR SUMMARY' "$lf" | tail -1)
    if grep -qiE 'not supported|unsupported device' "$lf"; then
      r=UNSUPPORTED
    else
      case $rc in
        0) r=PASS ;;
        99) r=ERRORS; status=1 ;;
        124 | 137) r=TIMEOUT ;;
        125) r=NOT-RUN ;;
        *) r=FAIL; status=1 ;;
      esac
    fi
    row "memcheck $1 ${2:-}" "$r" "$secs" "${summary:-see $(basename "$lf")}"
    say "memcheck $1 ${2:-}: $r ${summary:-} (${secs}s)"
    [ "$r" = ERRORS ] || [ "$r" = FAIL ] && grep -E '=========' "$lf" | head -30
  done
else
  row "memcheck" "NOT-FOUND" 0 "no compute-sanitizer on PATH or under /usr/local/cuda*/bin"
fi

# The main job on the GPU: the seed model trained end to end with CUDA tensors (batch losses
# stay on the device until each epoch ends); its last line gives optimizer steps per second.
if [ -x "$BIN/bin/ember" ]; then
  lf="$LOG/train-cuda.log"
  run_step "train" "${EMBER_GPU_CHECK_TRAIN_LIMIT:-120}" "$lf" "$BIN/bin/ember" train --device cuda
  detail=$(grep -E 'accuracy|Trained' "$lf" | tail -2 | tr '\n' ' ')
  case $rc in
    0) r=PASS ;;
    125) r=NOT-RUN; status=1; detail=$(tail -1 "$lf") ;;
    *) r=FAIL; status=1; detail=$(tail -2 "$lf" | tr '\n' ' ') ;;
  esac
  row "ember train --device cuda" "$r" "$secs" "${detail:0:100}"
  say "ember train --device cuda: $r ${detail} (${secs}s)"
fi

suite="${EMBER_BENCH_SUITE:-all}"
quick=""
[ "${EMBER_BENCH_QUICK:-0}" = 1 ] && quick="--quick"
bench_limit=${EMBER_GPU_CHECK_BENCH_LIMIT:-$([ -n "$quick" ] && echo 120 || echo 300)}
help=$([ -x "$BIN/bin/ember" ] && "$BIN/bin/ember" bench --help 2>/dev/null)
if echo "$help" | grep -q -- --device && { [ -z "$quick" ] || echo "$help" | grep -q -- --quick; }; then
  lab=("$BIN/bin/ember" bench --device cuda "$suite" --json $quick)
else
  lab=("$BIN/bin/cuda_bench" "$suite" --json $quick)
fi
say "kernel lab: ${lab[*]#$BIN/}"
run_step "bench" "$bench_limit" "$LOG/bench.err" "${lab[@]}"
# stdout and stderr share bench.err; the JSON records are the lines that start with '{'.
grep '^{' "$LOG/bench.err" > "$LOG/bench.jsonl"
case $rc in
  0) r=PASS ;;
  125) r=NOT-RUN; status=1 ;;
  *) r=FAIL; status=1 ;;
esac
row "bench ($suite${quick:+ quick})" "$r" "$secs" "$(wc -l < "$LOG/bench.jsonl") records; $(grep -v '^{' "$LOG/bench.err" | tail -1 | cut -c1-80)"
[ $r = FAIL ] && { say "bench failed (rc $rc):"; grep -v '^{' "$LOG/bench.err" | tail -5; }

# The convolution kernels (implicit GEMM and direct, three passes) beside cuBLAS on the same
# GEMM shape: the ResNet-like layer and the MNIST CNN's two layers (--quick: MNIST only).
# Timings only: when the budget is spent before it runs, that is reported but not a failure.
if [ -x "$BIN/bin/conv_bench" ]; then
  lf="$LOG/conv-bench.log"
  run_step "conv bench" "${EMBER_GPU_CHECK_CONV_BENCH_LIMIT:-120}" "$lf" "$BIN/bin/conv_bench" $quick
  case $rc in
    0) r=PASS ;;
    125) r=NOT-RUN ;;
    *) r=FAIL; status=1 ;;
  esac
  row "conv_bench${quick:+ quick}" "$r" "$secs" "$(grep -c 'forward\|bwd' "$lf") timings; see $(basename "$lf")"
  say "conv_bench: $r (${secs}s)"
  tee -a "$LOG/summary.txt" < "$lf"
fi

total=$(awk -v a="$T0" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }')
say "summary (${total}s of a ${BUDGET}s budget)"
{
  printf '%-32s %-12s %8s  %s\n' step result time detail
  printf '%s\n' "${rows[@]}"
  echo
  python3 - "$LOG/bench.jsonl" <<'PY' 2>/dev/null || cat "$LOG/bench.jsonl"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
if rows:
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
