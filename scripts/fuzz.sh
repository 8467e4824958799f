#!/usr/bin/env bash
# Builds ember's fuzz targets (fuzz/, cargo-fuzz + libFuzzer, AddressSanitizer, overflow checks
# on) and runs each for SECONDS_PER_TARGET seconds (default 15) from its committed seed corpus,
# fuzz/corpus/<target>/. New inputs go to fuzz/corpus-work/<target>/ (ignored by git), so a run
# never edits the committed corpus; a crash leaves its input in fuzz/artifacts/<target>/ and
# makes this script exit non-zero after the remaining targets ran.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default: every target)
# Needs a nightly toolchain and cargo-fuzz; installs both when absent (about 2 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-15}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(csv_loader idx_reader checkpoint_loader cli_args)
fi

# Without a way to install the tools (rustup's server unreachable, say), say so and skip,
# unless EMBER_REQUIRE_FUZZ=1 makes that a failure.
skip() {
    echo "SKIPPED: fuzz: $1" >&2
    if [ "${EMBER_REQUIRE_FUZZ:-0}" = 1 ]; then exit 1; fi
    exit 0
}
if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal ||
        skip "no nightly toolchain and rustup could not install one"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked || skip "cargo-fuzz is absent and could not be installed"
fi

cd fuzz
cargo +nightly fuzz build
failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus-work/$t"
    log="corpus-work/$t.log"
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: over 2 GiB is a leak or
    # an unbounded allocation. Both count as crashes.
    if cargo +nightly fuzz run "$t" "corpus-work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        status=ok
    else
        status=CRASH
        failed+=("$t")
    fi
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    printf 'fuzz %-18s %-5s %s executions in %s s, %s\n' "$t" "$status" "$execs" "$secs" "${cov:-cov: ?}"
    if [ "$status" = CRASH ]; then
        grep -E 'panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|Test unit written' "$log" | head -5 | sed 's/^/    /'
    fi
done
# The targets that read files through a path leave one scratch folder per process.
rm -rf corpus-work/scratch-*
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes in ${failed[*]} (inputs in fuzz/artifacts/, logs in fuzz/corpus-work/)" >&2
    exit 1
fi
