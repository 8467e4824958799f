#!/bin/bash
# For T threads: 3 rounds x {f32, bf16}: ember (gemm / gemm_widen on bf16 copies) vs numpy's OpenBLAS sgemm
# in one process, alternating blocks, 5 blocks each, timed by process CPU time / T (CLOCK=wall: the wall clock).
cd "$(dirname "$0")/../../.."
LIB=$(find ~/.venvs/np -name 'libscipy_openblas*.so*' | head -1)
for r in 1 2 3; do
 for dt in f32 bf16; do
  echo "{\"note\":\"round $r dtype $dt threads $T clock ${CLOCK:-cpu}\",\"utc\":\"$(date -u +%T)\",\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=$T ./target/release/examples/sgemm_vs_blas --lib $LIB --threads $T --rounds 5 --gap-ms 50 --clock ${CLOCK:-cpu} --ember-dtype $dt --shapes 512,1024,2048,256x784x512,256x512x10,256x512x1
 done
done
