#!/usr/bin/env python3
"""Runs a peer script with `time.perf_counter` replaced by the process CPU clock, so a
throughput it reports (e.g. seq_cnn_peers.py's samples_per_s) becomes per CPU-second: the
figure to compare on a loaded machine at 1 thread (the CPU clock of a 2-thread run counts
both threads, so it says nothing about the 2-thread wall speed).

  cpu_clock.py PEER_SCRIPT [ARGS...]
  e.g. cpu_clock.py ../shared/peers/seq_cnn_peers.py --framework torch --task lstm \
           --threads 1 --epochs 1 --max-batches 60 --data data
"""
import runpy
import sys
import time

if len(sys.argv) < 2:
    sys.exit(__doc__)
time.perf_counter = time.process_time
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
