#!/usr/bin/env bash
# Gradient buckets (docs/DISTRIBUTED.md): the 784-512-512-1 MLP on 2 MPI ranks x 1 thread,
# `--allreduce tree` and `plain`, each with one bucket (`--bucket-mb 25`, the default: the whole
# 2.66 MB gradient exchanged once backward ends, as before buckets existed), two buckets
# (`--bucket-mb 0.5`: layers 1-2, then layer 0) and one bucket per parameter tensor
# (`--bucket-mb 0`: six), interleaved, REPS times. Prints samples/s and rank 0's time inside
# collectives. Needs `cargo build --release --features mpi` and Open MPI.
# usage: scripts/dist_bucket_bench.sh [REPS] [ROWS]
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
common=(train --data "$dir/wide.csv" --hidden 512,512 --epochs 2 --batch-size 64 --validation-split 0 --test-split 0.2 --threads 1 --distributed)
mpi=(mpirun --allow-run-as-root --oversubscribe --bind-to none --mca btl self,vader,tcp -np 2)
for rep in $(seq "$reps"); do
    for mode in tree plain; do
        for mb in 25 0.5 0; do
            out=$("${mpi[@]}" "$bin" "${common[@]}" --allreduce "$mode" --bucket-mb "$mb")
            trained=$(grep '^Trained' <<<"$out")
            secs=$(sed -E 's/.* in ([0-9.]+) s.*/\1/' <<<"$trained")
            comm=$(grep '^Distributed' <<<"$out" | sed -E 's/.*: ([0-9.]+) s of.*\(([0-9.]+)%\)/\1 s (\2%)/')
            echo "rep $rep $mode bucket-mb $mb: $(python3 -c "print(f'{2*int($rows*0.8)/$secs:.0f}')") samples/s (train ${secs} s) comm ${comm}"
        done
    done
done
