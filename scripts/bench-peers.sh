#!/usr/bin/env bash
# Side-by-side SGEMM: ember vs numpy (OpenBLAS), interleaved rounds at 1 and 2 threads, medians.
#
#   scripts/bench-peers.sh [ROUNDS] [SHAPES]      e.g. scripts/bench-peers.sh 5 512,1024,2048
#
# - Builds `ember` in release (default flags: no target-cpu, what a user gets).
# - Puts numpy + threadpoolctl in a venv OUTSIDE the repo (~/.venvs/np; override with NP_VENV);
#   numpy is a benchmark aid, not a dependency. The peer is scripts/peers/sgemm_py.py (PEER=...).
# - Runs the numpy peer with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (they can pin a
#   slower kernel) and records the OpenBLAS kernel it reports (`blas_core`).
# - Each shape runs ember then numpy back to back, so machine noise hits both alike; also runs
#   `ember bench peak` each round. Raw JSON lines go to $OUT (default target/bench-peers.jsonl)
#   and a table of medians is printed at the end, then each shape's paired ember/numpy ratio
#   (geometric mean over rounds, bootstrap 95 % interval).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
SHAPES=${2:-256,512,1024,2048,256x784x512,256x512x512,256x512x1,10x10x10,10x10x5,10x5x1}
NP_VENV=${NP_VENV:-$HOME/.venvs/np}
OUT=${OUT:-target/bench-peers.jsonl}
PEER=${PEER:-scripts/peers/sgemm_py.py}
[ -f "$PEER" ] || { echo "peer script not found: $PEER (set PEER=...)" >&2; exit 1; }

if [ ! -x "$NP_VENV/bin/python" ]; then
  python3 -m venv "$NP_VENV"
  "$NP_VENV/bin/pip" install --quiet numpy threadpoolctl
fi
cargo build --release --bin ember >&2
mkdir -p "$(dirname "$OUT")"
: > "$OUT"
for r in $(seq 1 "$ROUNDS"); do
  for t in 1 2; do
    echo "round $r/$ROUNDS, $t thread(s)" >&2
    ./target/release/ember bench peak --threads "$t" --json --min-time 0.3 \
      | sed "s/^{/{\"round\":$r,\"impl\":\"ember\",/" >> "$OUT"
    # Shape by shape, ember then numpy, so a slow spell of the shared machine hits both.
    for shape in ${SHAPES//,/ }; do
      ./target/release/ember bench gemm --threads "$t" --json --min-time 0.3 --sizes "$shape" \
        | sed "s/^{/{\"round\":$r,\"impl\":\"ember\",/" >> "$OUT"
      env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$NP_VENV/bin/python" "$PEER" \
        --impl numpy --threads "$t" --shapes "$shape" --min-time 0.3 \
        | sed "s/^{/{\"round\":$r,/" >> "$OUT"
    done
  done
done
"$NP_VENV/bin/python" - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peak = {}
for r in rows:
    if r.get("bench") == "peak" and r.get("kind") == "fma_f32":
        peak.setdefault((r["isa"], r["threads"]), []).append(r["gflops"])
g = {}
best = {}
core = set()
for r in rows:
    if r.get("bench") in ("gemm", "sgemm"):
        key = (r["impl"], r["threads"], r["m"], r["k"], r["n"])
        g.setdefault(key, []).append(r["gflops"])
        best.setdefault(key, []).append(r.get("gflops_best", r["gflops"]))
        if r.get("blas_core"):
            core.add(r["blas_core"])
print("OpenBLAS kernel(s):", ", ".join(sorted(core)) or "?")
for (isa, t), v in sorted(peak.items()):
    print(f"FMA peak {isa} {t} thr: median {statistics.median(v):.1f} GFLOP/s over {len(v)} rounds")
# Medians over rounds, and the best single sample of all rounds (the least disturbed run:
# noise on a shared machine only ever slows a sample down, so the best is the steadier figure).
print(f"{'shape MxKxN':>16} {'thr':>3} {'ember':>8} {'numpy':>8} {'ratio':>6} {'%peak':>6}"
      f" {'best e':>8} {'best n':>8} {'ratio':>6}")
shapes = sorted({(m, k, n, t) for (_, t, m, k, n) in g}, key=lambda s: (s[3], -s[0] * s[1] * s[2]))
for (m, k, n, t) in shapes:
    e = g.get(("ember", t, m, k, n)); p = g.get(("numpy", t, m, k, n))
    em = statistics.median(e) if e else float("nan"); pm = statistics.median(p) if p else float("nan")
    pk = statistics.median(peak.get(("avx2", t), [float("nan")]))
    eb = max(best.get(("ember", t, m, k, n), [float("nan")]))
    nb = max(best.get(("numpy", t, m, k, n), [float("nan")]))
    print(f"{f'{m}x{k}x{n}':>16} {t:>3} {em:8.1f} {pm:8.1f} {em / pm:6.2f} {100 * em / pk:6.1f}"
          f" {eb:8.1f} {nb:8.1f} {eb / nb:6.2f}")
# Paired ratios: ember's and numpy's samples of the same round ran back to back, so their
# ratio cancels most of a slow spell. Geometric mean over rounds with a bootstrap 95 % interval
# (resampling rounds, fixed seed): an interval that holds 1.0 means "level within this run's
# noise"; one wholly above or below 1.0 is a difference the run can show.
import math, random
random.seed(0)
pairs = {}
for r in rows:
    if r.get("bench") in ("gemm", "sgemm"):
        key = (r["threads"], r["m"], r["k"], r["n"], r["round"])
        pairs.setdefault(key, {})[r["impl"]] = r["gflops"]
ratios = {}
for (t, m, k, n, _), v in pairs.items():
    if "ember" in v and "numpy" in v:
        ratios.setdefault((m, k, n, t), []).append(math.log(v["ember"] / v["numpy"]))
print()
print(f"{'shape MxKxN':>16} {'thr':>3} {'rounds':>6} {'paired ratio':>12} {'95% interval':>14}")
for (m, k, n, t) in shapes:
    lg = ratios.get((m, k, n, t))
    if not lg:
        continue
    boot = sorted(statistics.mean(random.choices(lg, k=len(lg))) for _ in range(4000))
    lo, hi = math.exp(boot[100]), math.exp(boot[3899])
    print(f"{f'{m}x{k}x{n}':>16} {t:>3} {len(lg):>6} {math.exp(statistics.mean(lg)):12.3f}"
          f" {lo:7.3f}–{hi:.3f}")
PY
