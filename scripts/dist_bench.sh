#!/usr/bin/env bash
# Scaling of the 784-512-512-1 MLP on this machine (docs/DISTRIBUTED.md): 1 process x 2
# threads (plain fit) against 2 MPI ranks x 1 thread (plain all-reduce and tree), interleaved,
# REPS times. Needs `cargo build --release --features mpi` and Open MPI.
# usage: scripts/dist_bench.sh [REPS] [ROWS]
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
rows=${2:-2560}
bin=target/release/ember
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 - "$dir/wide.csv" "$rows" <<'PY'
import random, sys
random.seed(1)
path, rows = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    f.write(",".join(f"f{j}" for j in range(784)) + ",label\n")
    for _ in range(rows):
        v = [random.random() for _ in range(784)]
        f.write(",".join(f"{x:.3f}" for x in v) + f",{int(sum(v) > 392)}\n")
PY
common=(train --data "$dir/wide.csv" --hidden 512,512 --epochs 2 --batch-size 64 --validation-split 0 --test-split 0.2)
mpi=(mpirun --allow-run-as-root --oversubscribe --bind-to none --mca btl self,vader,tcp)
for rep in $(seq "$reps"); do
    for mode in "1x2" "2x1-plain" "2x1-tree" "1x2-tree"; do
        case $mode in
            1x2) out=$("$bin" "${common[@]}" --threads 2) ;;
            2x1-plain) out=$("${mpi[@]}" -np 2 "$bin" "${common[@]}" --threads 1 --distributed --allreduce plain) ;;
            2x1-tree) out=$("${mpi[@]}" -np 2 "$bin" "${common[@]}" --threads 1 --distributed --allreduce tree) ;;
            1x2-tree) out=$("${mpi[@]}" -np 1 "$bin" "${common[@]}" --threads 2 --distributed --allreduce tree) ;;
        esac
        trained=$(grep '^Trained' <<<"$out")
        secs=$(sed -E 's/.* in ([0-9.]+) s.*/\1/' <<<"$trained")
        comm=$(grep '^Distributed' <<<"$out" | sed -E 's/.*: ([0-9.]+) s of.*\(([0-9.]+)%\)/\1 s (\2%)/' || true)
        echo "rep $rep $mode: $(python3 -c "print(f'{2*int($rows*0.8)/$secs:.0f}')") samples/s (train ${secs} s) comm ${comm:--}"
    done
done
