#!/usr/bin/env bash
# Runs one benchmark command and records its output, with the machine it ran on, under
# benches/results/<short commit>/ (see benches/results/README.md).
#
#   scripts/record-bench.sh NAME COMMAND [ARGS...]
#   e.g. scripts/record-bench.sh gemm-1t.jsonl ./target/release/ember bench gemm --threads 1 --json
#
# - NAME is the file the command's stdout goes to (stderr stays on the terminal).
# - machine.json in that directory gets an entry for NAME (command, UTC time) and, the first
#   time, the machine: CPU, ISA path ember chooses, cores, caches, FMA peak, OS, toolchain.
# - Uncommitted changes outside benches/results make the entry say "dirty": true; measure
#   committed code, so the directory's name says what was measured.
# - RESULTS_DIR overrides the directory (for a trial run that should not land in the tree).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,14p' "$0" >&2; exit 2; }
NAME=$1; shift
case $NAME in */*|.*|machine.json) echo "record-bench: NAME must be a plain file name" >&2; exit 2;; esac
DIR=${RESULTS_DIR:-benches/results/$(git rev-parse --short=7 HEAD)}
mkdir -p "$DIR"
[ ! -e "$DIR/$NAME" ] || { echo "record-bench: $DIR/$NAME exists; choose another NAME" >&2; exit 1; }
EMBER=./target/release/ember
cargo build --release --bin ember >&2   # so ember info/peak describe this commit
DIRTY=false
[ -z "$(git status --porcelain -- . ':!benches/results')" ] || DIRTY=true
START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
"$@" > "$DIR/$NAME"
END=$(date -u +%H:%M:%SZ)

INFO=$("$EMBER" info 2>&1 || true)
PEAK=""
if [ ! -f "$DIR/machine.json" ]; then   # the machine is measured once per directory
  PEAK=$(for t in 1 "$(nproc)"; do "$EMBER" bench peak --threads "$t" --json --min-time 0.3; done)
fi
python3 - "$DIR/machine.json" "$NAME" "$*" "$START-$END" "$DIRTY" "$INFO" "$PEAK" <<'PY'
import json, os, platform, subprocess, sys
path, name, cmd, when, dirty, info, peak = sys.argv[1:]
def sh(*a):
    try:
        return subprocess.run(a, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""
rec = json.load(open(path)) if os.path.exists(path) else {}
if "machine" not in rec:
    cpu = {}
    for line in open("/proc/cpuinfo") if os.path.exists("/proc/cpuinfo") else []:
        k, _, v = line.partition(":")
        cpu.setdefault(k.strip(), v.strip())
    flags = cpu.get("flags", "").split()
    lscpu = {k.strip(): v.strip() for k, _, v in (l.partition(":") for l in sh("lscpu").splitlines())}
    osrel = dict(l.split("=", 1) for l in open("/etc/os-release").read().split("\n") if "=" in l) \
        if os.path.exists("/etc/os-release") else {}
    rec.update({
        "commit": sh("git", "rev-parse", "HEAD"),
        "date": when[:10],
        "measured_at": "the code of this commit",
        "machine": {
            "cpu": f"{cpu.get('model name', platform.processor())} (family {cpu.get('cpu family', '?')} model {cpu.get('model', '?')})",
            "cores": f"{os.cpu_count()} logical CPUs, {lscpu.get('Thread(s) per core', '?')} thread(s) per core",
            "caches": ", ".join(f"{k} {lscpu[k]}" for k in ("L1d cache", "L2 cache", "L3 cache") if k in lscpu),
            "simd": " ".join(f for f in ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl") if f in flags) or platform.machine(),
            "hypervisor": lscpu.get("Hypervisor vendor", "none reported"),
            "ember_info": info,
            "peak": [json.loads(l) for l in peak.splitlines() if l.startswith("{")],
            "os": f"{osrel.get('PRETTY_NAME', '?').strip(chr(34))}, {platform.system()} {platform.release()}",
            "toolchain": sh("rustc", "-V"),
        },
        "files": {},
    })
rec.setdefault("files", {})[name] = {"command": cmd, "when_utc": when, "dirty": dirty == "true"}
with open(path, "w") as f:
    json.dump(rec, f, indent=1, ensure_ascii=False)
    f.write("\n")
PY
echo "recorded $DIR/$NAME" >&2
